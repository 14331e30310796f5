// Runtime pieces of the taggers, shared by training, evaluation and serving:
// tokens -> feature ids tensor -> (the ONNX model computes emission scores) ->
// Viterbi -> tags -> entity spans. Nothing here talks to ONNX Runtime: callers
// pass the scores in, or a `run(features)` function that computes them.
import { extractFeatures, type FeatureSpec } from './features.ts'
import { tokenize, type Token } from './tokenize.ts'
import { viterbi, type Transitions } from './viterbi.ts'

/** The contents of a model's config.json. */
export interface TaggerConfig extends FeatureSpec {
  name: string
  task: 'pos' | 'ner'
  /** The model's licence and the attributions of its training data (nlp/export.ts, LICENCES). */
  licence?: string
  labels: string[]
  /** [L][L]: score of label i followed by label j. */
  transitions: number[][]
  /** Score of each label at the first token. */
  start: number[]
  /** Score of each label at the last token. */
  end: number[]
  /** Tensor names of the ONNX graph. */
  input: string
  output: string
  /** Measured accuracy, as written by `npm run train` (see the model card). */
  accuracy?: Record<string, number | string>
  [key: string]: unknown
}

/** A feature-id tensor ready for the model: int64 [batch, tokens, features]. */
export interface FeatureTensor {
  data: BigInt64Array
  dims: [number, number, number]
  /** Number of real (unpadded) tokens of each sequence of the batch. */
  lengths: number[]
}

type Words = readonly string[] | readonly Token[]

function wordsOf (tokens: Words): string[] {
  return tokens.map(t => (typeof t === 'string' ? t : t.text))
}

/**
 * Packs several token sequences into one zero-padded [B, Tmax, F] tensor
 * (id 0 is the padding feature, whose weights are zero). Tmax is at least 1
 * so that the tensor is never empty.
 */
export function prepareBatch (batch: readonly Words[], config: FeatureSpec): FeatureTensor {
  const F = config.featuresPerToken
  const lengths = batch.map(s => s.length)
  const Tmax = Math.max(1, ...lengths)
  const data = new BigInt64Array(batch.length * Tmax * F)
  // The ids (0 <= id < 2^31) go in as the low halves of the int64s, through
  // an int32 view: BigInt(id) made a heap object of each, about 900 for a
  // sentence of 20 tokens. Little-endian platforms only (every one Node's
  // onnxruntime-node binaries are built for); the high halves stay 0.
  const words = LITTLE_ENDIAN ? new Int32Array(data.buffer) : undefined
  batch.forEach((seq, b) => {
    const ids = extractFeatures(wordsOf(seq), config)
    const base = b * Tmax * F
    if (words) {
      for (let k = 0; k < ids.length; k++) words[2 * (base + k)] = ids[k]
    } else {
      for (let k = 0; k < ids.length; k++) data[base + k] = BigInt(ids[k])
    }
  })
  return { data, dims: [batch.length, Tmax, F], lengths }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** One sequence as a [1, T, F] tensor. */
export function prepare (tokens: Words, config: FeatureSpec): FeatureTensor {
  return prepareBatch([tokens], config)
}

/** Viterbi decoding of the model's scores [B, Tmax, L] into label names, one array per sequence. */
export function decode (scores: Float32Array, dims: readonly number[], lengths: readonly number[], config: TaggerConfig): string[][] {
  const [B, Tmax, L] = dims
  if (L !== config.labels.length) throw new Error(`model returned ${L} scores per token, config has ${config.labels.length} labels`)
  if (scores.length !== B * Tmax * L) throw new Error(`scores have ${scores.length} values, expected ${B}x${Tmax}x${L}`)
  const tr = transitionsOf(config)
  const out: string[][] = []
  for (let b = 0; b < B; b++) {
    const path = viterbi(scores, lengths[b], L, tr, b * Tmax * L)
    out.push(Array.from(path, i => config.labels[i]))
  }
  return out
}

// A config's transitions as Viterbi reads them, made once per config: a
// request's decoding took longer to flatten the [L][L] array (Array.flat, 289
// numbers for POS) than to run Viterbi over a sentence.
const TRANSITIONS = new WeakMap<TaggerConfig, Transitions>()

function transitionsOf (config: TaggerConfig): Transitions {
  let tr = TRANSITIONS.get(config)
  if (tr === undefined) {
    tr = { transitions: Float64Array.from(config.transitions.flat()), start: Float64Array.from(config.start), end: Float64Array.from(config.end) }
    TRANSITIONS.set(config, tr)
  }
  return tr
}

export interface Entity {
  text: string
  label: string
  start: number
  end: number
}

/** Index spans [first, last) of the entities in a BIO tag sequence; a stray I- starts an entity. */
export function bioSpans (tags: readonly string[]): Array<{ label: string, first: number, last: number }> {
  const spans: Array<{ label: string, first: number, last: number }> = []
  let cur: { label: string, first: number, last: number } | null = null
  tags.forEach((tag, i) => {
    const prefix = tag.slice(0, 2)
    const label = tag.slice(2)
    if (cur !== null && prefix === 'I-' && label === cur.label) {
      cur.last = i + 1
      return
    }
    cur = null
    if (prefix === 'B-' || prefix === 'I-') {
      cur = { label, first: i, last: i + 1 }
      spans.push(cur)
    }
  })
  return spans
}

/**
 * Entities from BIO tags over tokens with offsets. With the source `text`,
 * an entity's text is the exact slice (inner spacing kept); without it (e.g.
 * pre-tokenized input) the token texts are joined by single spaces.
 */
export function entitiesFromBio (tokens: readonly Token[], tags: readonly string[], text?: string): Entity[] {
  return bioSpans(tags).map(({ label, first, last }) => {
    const start = tokens[first].start
    const end = tokens[last - 1].end
    const surface = text !== undefined
      ? text.slice(start, end)
      : tokens.slice(first, last).map(t => t.text).join(' ')
    return { text: surface, label, start, end }
  })
}

/**
 * Tokens with offsets for pre-tokenized input: offsets refer to the tokens
 * joined by single spaces, the text `entitiesFromBio` then reproduces.
 */
export function tokensFromWords (words: readonly string[]): Token[] {
  let pos = 0
  return words.map(w => {
    const t = { text: w, start: pos, end: pos + w.length }
    pos += w.length + 1
    return t
  })
}

/** Computes emission scores for a feature tensor, e.g. through an ONNX session. */
export type RunScores = (features: FeatureTensor) => Promise<{ data: Float32Array, dims: readonly number[] }>

export interface TaggedToken extends Token { tag: string }

/** Tags several token sequences in one model call. */
export async function tagBatch (batch: readonly Token[][], config: TaggerConfig, run: RunScores): Promise<TaggedToken[][]> {
  if (batch.length === 0) return []
  const features = prepareBatch(batch, config)
  return tagScores(batch, await run(features), features, config)
}

/** The second half of `tagBatch`: the model's scores for `features` (made from `batch`) decoded into tagged tokens. */
export function tagScores (batch: readonly Token[][], scores: { data: Float32Array, dims: readonly number[] }, features: FeatureTensor, config: TaggerConfig): TaggedToken[][] {
  const tags = decode(scores.data, scores.dims, features.lengths, config)
  return batch.map((tokens, b) => tokens.map((t, i) => ({ text: t.text, start: t.start, end: t.end, tag: tags[b][i] })))
}

/** Tokenizes and tags raw text. */
export async function tagText (text: string, config: TaggerConfig, run: RunScores): Promise<TaggedToken[]> {
  const [tagged] = await tagBatch([tokenize(text)], config, run)
  return tagged
}
