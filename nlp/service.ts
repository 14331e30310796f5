// What the /ner and /pos resources share: the three input forms, the limits,
// and tagging through a framework model handle (off the main thread, batched
// by the framework with other requests for the same model).
//
//   {"text": "..."}            one raw text, tokenized here
//   {"tokens": ["...", ...]}   one pre-tokenized text: tags for exactly these tokens
//   {"texts": ["...", ...]}    several raw texts, answered in order
import { Type, type Static } from '@sinclair/typebox'
import { badRequest, payloadTooLarge } from '../framework/errors.ts'
import type { Model } from '../framework/models.ts'
import { AbortedError } from '../framework/pool.ts'
import { Resource, type ResourceContext } from '../framework/resource.ts'
import type { ModelContract } from '../framework/tensor.ts'
import { prepare, tagBatch, tagScores, tokensFromWords, type RunScores, type TaggedToken, type TaggerConfig } from './tagger.ts'
import { isBlank, tokenize, type Token } from './tokenize.ts'
import { RequestDeadline, type AbortSignalLike } from '../framework/deadline.ts'
import type { FastifyReply } from 'fastify'

export interface TaggingLimits {
  /** Longest text, in UTF-16 code units (JS string length). */
  maxTextLength: number
  /** Most texts in one `texts` request. */
  maxBatch: number
  /** Most tokens in one `tokens` request. */
  maxTokens: number
}

export const DEFAULT_LIMITS: TaggingLimits = { maxTextLength: 10_000, maxBatch: 64, maxTokens: 2_000 }

/**
 * A resource's limits: the defaults, replaced by those given (a limit given as
 * undefined keeps its default). One that is no integer >= 1, or a name that is
 * no limit, is refused here, where the resource is made: spread over the
 * defaults as they were, undefined or NaN turned the check off without a word,
 * and GET's description of such a limit was a 500.
 */
export function taggingLimits (given: Partial<TaggingLimits> = {}): TaggingLimits {
  const limits = { ...DEFAULT_LIMITS }
  for (const [name, value] of Object.entries(given) as Array<[keyof TaggingLimits, unknown]>) {
    if (!Object.hasOwn(DEFAULT_LIMITS, name)) throw new TypeError(`limits has an unknown field '${name}' (known: ${Object.keys(DEFAULT_LIMITS).join(', ')})`)
    if (value === undefined) continue
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new TypeError(`limits.${name} must be an integer >= 1, got ${typeof value === 'number' ? String(value) : JSON.stringify(value)}`)
    }
    limits[name] = value
  }
  return limits
}

/**
 * The body schema, its descriptions stating the limits `parseInput` enforces
 * (a 413 beyond them), so that the OpenAPI document gives them. They are not
 * maxLength / maxItems keywords: validation would then answer 400, not 413,
 * and count a text's length in code points, not UTF-16 code units.
 */
export function taggingInput (limits: TaggingLimits) {
  const { maxTextLength: chars, maxTokens: tokens, maxBatch: batch } = limits
  return Type.Object({
    text: Type.Optional(Type.String({ description: `One raw text: at most ${chars} UTF-16 code units and ${tokens} tokens (413 beyond)` })),
    tokens: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: `One pre-tokenized text: at most ${tokens} tokens of at most ${chars} UTF-16 code units each (413 beyond), each with a visible character (400 for a blank one)` })),
    texts: Type.Optional(Type.Array(Type.String(), { description: `Several raw texts, answered in order: at most ${batch} texts, each of at most ${chars} UTF-16 code units and ${tokens} tokens (413 beyond)` })),
  }, { description: 'Exactly one of text, tokens or texts' })
}

export const TaggingInput = taggingInput(DEFAULT_LIMITS)

export type TaggingInput = Static<typeof TaggingInput>

export const TaggedTokenSchema = Type.Object({
  text: Type.String(),
  start: Type.Integer({ description: 'Offset of the first UTF-16 code unit' }),
  end: Type.Integer({ description: 'Offset after the last UTF-16 code unit' }),
  tag: Type.String(),
})

/** Which of the three forms a body uses, with the limits checked. */
export type Parsed =
  | { form: 'text', texts: [string] }
  | { form: 'tokens', tokens: string[] }
  | { form: 'texts', texts: string[] }

export function parseInput (body: TaggingInput, limits: TaggingLimits): Parsed {
  const given = (['text', 'tokens', 'texts'] as const).filter(k => body[k] !== undefined)
  if (given.length !== 1) {
    throw badRequest(given.length === 0
      ? 'body needs one of the fields text, tokens or texts'
      : `body has ${given.join(' and ')}; give exactly one of text, tokens or texts`)
  }
  const checkLength = (text: string, where: string) => {
    if (text.length > limits.maxTextLength) {
      throw payloadTooLarge(`${where} is ${text.length} UTF-16 code units long; at most ${limits.maxTextLength} are accepted`)
    }
  }
  if (body.text !== undefined) {
    checkLength(body.text, 'body.text')
    return { form: 'text', texts: [body.text] }
  }
  if (body.tokens !== undefined) {
    if (body.tokens.length > limits.maxTokens) throw payloadTooLarge(`body.tokens has ${body.tokens.length} tokens; at most ${limits.maxTokens} are accepted`)
    body.tokens.forEach((token, i) => {
      checkLength(token, `body.tokens[${i}]`)
      // Raw text has these as separators; as a token, one was tagged (' ' as PROPN).
      if (isBlank(token)) throw badRequest(`body.tokens[${i}] is blank (white space, control or invisible characters only); a token needs a visible character`)
    })
    return { form: 'tokens', tokens: body.tokens }
  }
  const texts = body.texts!
  if (texts.length > limits.maxBatch) throw payloadTooLarge(`body.texts has ${texts.length} texts; at most ${limits.maxBatch} are accepted`)
  texts.forEach((text, i) => checkLength(text, `body.texts[${i}]`))
  return { form: 'texts', texts }
}

/** The contract every tagger model meets: feature ids in, emission scores out. */
export function taggerContract (config: TaggerConfig): ModelContract {
  return {
    inputs: { [config.input]: { type: 'int64', shape: [-1, -1, config.featuresPerToken] } },
    outputs: { [config.output]: { type: 'float32', shape: [-1, -1, config.labels.length] } },
  }
}

/** Reads the tagger's config.json from the loaded model, checking the fields used here. */
export function taggerConfigOf (model: Model, task: 'pos' | 'ner'): TaggerConfig {
  const config = model.config as Partial<TaggerConfig>
  for (const field of ['labels', 'transitions', 'start', 'end', 'featuresPerToken', 'buckets', 'input', 'output'] as const) {
    if (config[field] === undefined) throw new Error(`model '${model.name}' (${model.path}): config.json lacks '${field}'`)
  }
  if (config.task !== task) throw new Error(`model '${model.name}' (${model.path}) is a '${config.task}' model, not '${task}'`)
  return config as TaggerConfig
}

/** Model scores through the framework: off the main thread, batched with other requests. */
export function scorer (model: Model, config: TaggerConfig, signal?: AbortSignalLike): RunScores {
  // The runs after a request's first continue it: with --max-queue-items 0
  // they wait for the thread its first run holds, where they were refused
  // (a lone request of several texts was a 503 on an idle server). A first
  // run refused fails the request before the next is asked for (tag()).
  let runs = 0
  return async features => {
    const continues = runs++ > 0
    // The features are read no more (decoding takes their lengths): moved to the thread, not copied.
    const out = await model.run({ [config.input]: { type: 'int64', data: features.data, dims: features.dims } }, { signal, transfer: true, continues })
    const scores = out[config.output]
    return { data: scores.data as Float32Array, dims: scores.dims }
  }
}

/** How the main-thread work of one request's texts is run: at once, or one job per turn of the event loop. */
export type Turns = <T>(job: () => T) => Promise<T>

/** Runs a job now (one text: nothing to interleave). */
const now: Turns = async job => job()

/**
 * Runs the jobs given to it one per turn of the event loop, in the order given:
 * between two jobs, the main thread serves other requests (their I/O, timers,
 * health checks). For the texts of one request, whose work is otherwise done
 * in one piece on the main thread.
 */
export function oneTurnEach (): Turns {
  let last: Promise<unknown> = Promise.resolve()
  return job => {
    const next = last.then(() => new Promise<void>(resolve => setImmediate(resolve))).then(job)
    last = next.catch(() => {})
    return next
  }
}

/** Turns for the texts of a parsed input: one text per turn when there are several. */
export function turnsFor (parsed: Parsed): Turns {
  return parsed.form === 'texts' && parsed.texts.length > 1 ? oneTurnEach() : now
}

/**
 * Tags the parsed input: one token list per text (one for `text` and
 * `tokens`). A text of more than `maxTokens` tokens is a 413, as a `tokens`
 * list is. Each text is its own model run: the framework batches them (with
 * other requests' texts) under the model's padding limits, where one run
 * would pad every text to the longest.
 *
 * Several texts are tokenized, featurized and decoded one text per turn of
 * the event loop (`turn`), not all at once: 64 texts of 2,000 tokens held the
 * main thread for 0.6-2 s (tokenizing and featurizing them), then again for
 * their decoding, while other clients' requests and /health waited.
 */
export async function tagInput (parsed: Parsed, config: TaggerConfig, run: RunScores, maxTokens = Infinity, turn: Turns = turnsFor(parsed)): Promise<{ texts: string[], tagged: TaggedToken[][] }> {
  if (parsed.form === 'tokens') {
    const tokens = tokensFromWords(parsed.tokens)
    const texts = [parsed.tokens.join(' ')]
    return { texts, tagged: parsed.tokens.length === 0 ? [[]] : await tagBatch([tokens], config, run) }
  }
  // Every text is tokenized (and its length checked) before any is tagged.
  const tokenLists: Token[][] = await Promise.all(parsed.texts.map(text => turn(() => tokenize(text))))
  tokenLists.forEach((tokens, i) => {
    if (tokens.length > maxTokens) {
      const where = parsed.form === 'text' ? 'body.text' : `body.texts[${i}]`
      throw payloadTooLarge(`${where} has ${tokens.length} tokens; at most ${maxTokens} are accepted`)
    }
  })
  // Empty texts have nothing to tag.
  const tagged = await Promise.all(tokenLists.map(async tokens => {
    if (tokens.length === 0) return []
    const features = await turn(() => prepare(tokens, config))
    const scores = await run(features)
    return turn(() => tagScores([tokens], scores, features, config)[0])
  }))
  return { texts: parsed.texts, tagged }
}

/**
 * The JSON text of `{"results": [...]}`, written one result per turn: as
 * fastify's serializer writes it (property order and escapes of the schema's
 * plain objects, integers and strings), without holding the main thread for
 * the whole answer (64 texts of 2,000 tokens: 6.5 MB, 0.3-1 s through
 * fast-json-stringify, whose response schema is a union).
 */
export async function resultsJson<R> (count: number, resultAt: (i: number) => R, turn: Turns): Promise<string> {
  const parts = await Promise.all(Array.from({ length: count }, (_, i) => turn(() => JSON.stringify(resultAt(i)))))
  return `{"results":[${parts.join(',')}]}`
}

/** GET's description of a tagger: model, version, labels, measured accuracy. */
export const TaggerDescription = Type.Object({
  model: Type.String(),
  version: Type.String(),
  task: Type.String(),
  labels: Type.Array(Type.String()),
  featureTemplate: Type.String(),
  accuracy: Type.Record(Type.String(), Type.Union([Type.Number(), Type.String()])),
  limits: Type.Object({ maxTextLength: Type.Integer(), maxBatch: Type.Integer(), maxTokens: Type.Integer() }),
  licence: Type.String(),
})

export function describe (model: Model, config: TaggerConfig, limits: TaggingLimits): Static<typeof TaggerDescription> {
  return {
    model: config.name ?? model.name,
    version: model.version ?? '1',
    task: config.task,
    labels: config.labels,
    featureTemplate: String(config.featureTemplate),
    accuracy: (config.accuracy ?? {}) as Record<string, number | string>,
    limits: { ...limits },
    // As config.json gives it (written by `npm run train`), with the training data's attributions.
    licence: typeof config.licence === 'string' ? config.licence : 'not stated (the model\'s config.json has no licence)',
  }
}

export interface TaggingOptions {
  /** Model name in the models directory. */
  model: string
  limits?: Partial<TaggingLimits>
}

/**
 * What /ner and /pos share: loading a tagger model with its config, warming
 * it up, and tagging a request body. Subclasses add the responders.
 */
export abstract class TaggingResource extends Resource {
  protected model!: Model
  protected config!: TaggerConfig
  protected readonly limits: TaggingLimits

  constructor (protected readonly options: TaggingOptions, private readonly task: 'pos' | 'ner') {
    super()
    this.limits = taggingLimits(options.limits)
  }

  async load ({ models }: ResourceContext) {
    // The contract depends on config.json (features per token, labels), so
    // the model is read first and then checked against it.
    this.config = taggerConfigOf(await models.load(this.options.model), this.task)
    this.model = await models.load(this.options.model, taggerContract(this.config))
  }

  async warmup () {
    await tagInput({ form: 'text', texts: ['Warming up the tagger in London.'] }, this.config, scorer(this.model, this.config))
  }

  /** Parses the body (400/413 on bad input) and tags it on an inference thread. */
  protected async tag (body: TaggingInput, signal?: AbortSignalLike) {
    const parsed = parseInput(body, this.limits)
    const turn = turnsFor(parsed)
    if (turn === now) return { form: parsed.form, ...await tagInput(parsed, this.config, scorer(this.model, this.config, signal), this.limits.maxTokens, turn) }
    // Several texts are several model runs, and the answer fails with the
    // first that fails (the model's queue is full: 503). The others are then
    // taken out of the queue and not started: left there, they kept the queue
    // full for nothing, and concurrent requests of several texts refused each
    // other until every one of them was a 503.
    const stop = new RequestDeadline()
    const follow = () => stop.abort(signal!.reason)
    if (signal?.aborted) follow()
    else signal?.addEventListener('abort', follow)
    // Dropped as the model's queue drops a run: AbortedError, answered 504 or not at all.
    const guarded: Turns = job => turn(() => {
      if (stop.aborted) throw new AbortedError(stop.reason)
      return job()
    })
    try {
      return { form: parsed.form, ...await tagInput(parsed, this.config, scorer(this.model, this.config, stop), this.limits.maxTokens, guarded) }
    } catch (err) {
      stop.abort(err)
      throw err
    } finally {
      signal?.removeEventListener('abort', follow)
    }
  }

  /**
   * Answers `{"results": [...]}` with the JSON text `resultsJson` writes one
   * result per turn: the same bytes and headers as fastify's serializer, which
   * wrote a 64-text answer in one block. Nothing is sent if the deadline
   * already answered 504 meanwhile.
   */
  protected async sendResults<R> (reply: FastifyReply, count: number, resultAt: (i: number) => R) {
    const json = await resultsJson(count, resultAt, count > 1 ? oneTurnEach() : now)
    if (reply.sent) return reply
    return reply.type('application/json; charset=utf-8').send(json)
  }

  protected description () {
    return describe(this.model, this.config, this.limits)
  }
}
