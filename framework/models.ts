// The one module resources ask for models. It finds a model's file in the
// models directory, loads it into every inference thread, checks it against
// what the resource expects, and hands back a `Model`: metadata plus an async
// `run(feeds)`. Everything that talks to ONNX Runtime sits behind this module
// (the threads in inference-worker.js do the actual calls).
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs'
import { join, relative, isAbsolute } from 'node:path'
import { endianness } from 'node:os'
import { InferencePool, type BatchOptions, type RunOptions } from './pool.ts'
import { batchOptionsFromConfig } from './batcher.ts'
import { checkContract, type ModelContract, type Tensor, type TensorInfo, type TypedTensor } from './tensor.ts'
import { indexLimits, type IndexLimit } from './onnx-graph.ts'
import { badRequest } from './errors.ts'
import { parseConfig } from './model-config.ts'

export interface ModelStoreOptions {
  /** Directory holding the models (`name.onnx`, `name/model.onnx` or `name/<version>/model.onnx`). */
  dir: string
  /** Inference threads (one session of each model per thread). */
  threads: number
  /** Batching and queue defaults; a model's config.json may override them (see batcher.ts). */
  batching?: Partial<BatchOptions>
  /** Run jobs predicted under this many microseconds on the main thread (0: never; see pool.ts). */
  inlineBelowUs?: number
  /** Niceness added to the inference threads, so the main thread runs first on a shared core (0: none). */
  threadNice?: number
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

export class ModelLoadError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ModelLoadError'
  }
}

/** One set of sessions (a model file loaded in every thread), known by its pool key. */
export interface LoadedModel {
  key: string
  path: string
  version: string | undefined
  inputs: TensorInfo[]
  outputs: TensorInfo[]
  /** The optional `config.json` beside the model (labels and the like). */
  config: Record<string, unknown>
}

/**
 * What a run gives: with a contract, each output it declares by name, its
 * data typed by its element type (`y.data` a Float32Array for a float32 `y`);
 * without one, any name, any data.
 */
export type Outputs<C extends ModelContract> = string extends keyof C['outputs']
  ? Record<string, Tensor>
  : { [K in keyof C['outputs']]: TypedTensor<C['outputs'][K]['type']> }

/**
 * A loaded model: what it takes, what it gives, and a way to run it off the
 * main thread. It is a view on a LoadedModel that a hot swap may retarget
 * (framework/repository.ts), so a resource keeps its handle across swaps.
 * C is the contract it was loaded with (ModelStore.load), which types its
 * outputs.
 */
export class Model<C extends ModelContract = ModelContract> {
  private target: LoadedModel
  // Types only, never set: without a member of type C, TypeScript took a
  // Model loaded without a contract for a typed one.
  declare private readonly contract?: C

  constructor (readonly name: string, loaded: LoadedModel, private readonly runner: ModelRunner) {
    this.target = loaded
  }

  get path (): string { return this.target.path }
  get version (): string | undefined { return this.target.version }
  get inputs (): TensorInfo[] { return this.target.inputs }
  get outputs (): TensorInfo[] { return this.target.outputs }
  get config (): Record<string, unknown> { return this.target.config }
  /** The sessions this model runs on now. */
  get loaded (): LoadedModel { return this.target }

  /**
   * Runs the model on one set of feeds, on an inference thread. The outputs
   * are typed by the contract; `options.outputs` narrows them to those named.
   */
  run<K extends keyof Outputs<C> & string = keyof Outputs<C> & string> (
    feeds: Record<string, Tensor>, options: RunOptions & { outputs?: K[] } = {},
  ): Promise<Pick<Outputs<C>, K>> {
    // Trusted, not checked per run: load() checked that the model has every
    // output of the contract with its element type, and a hot swap must keep
    // to the same contract (repository.ts).
    return this.runner.run(this.target.key, feeds, options) as Promise<Pick<Outputs<C>, K>>
  }

  /** Points later runs at other sessions; runs already started finish on the old ones. */
  retarget (loaded: LoadedModel): void {
    this.target = loaded
  }
}

/** Runs jobs by pool key, counting the runs in flight per key (see ModelStore.release). */
export interface ModelRunner {
  run (key: string, feeds: Record<string, Tensor>, options?: RunOptions): Promise<Record<string, Tensor>>
}

/** Finds a model's file: `name.onnx`, `name/model.onnx`, or the highest `name/<n>/model.onnx`. */
export function resolveModelPath (dir: string, name: string): { path: string, version?: string, folder?: string } {
  if (!NAME.test(name)) throw new ModelLoadError(`invalid model name '${name}': use letters, digits, '_', '-' and '.'`)
  const flat = join(dir, `${name}.onnx`)
  if (existsSync(flat)) return { path: flat }
  const folder = join(dir, name)
  const inFolder = join(folder, 'model.onnx')
  if (existsSync(inFolder)) return { path: inFolder, folder }
  if (existsSync(folder) && statSync(folder).isDirectory()) {
    const versions = readdirSync(folder).filter(v => /^[0-9]+$/.test(v) && existsSync(join(folder, v, 'model.onnx')))
      .sort((a, b) => Number(b) - Number(a))
    if (versions.length > 0) return { path: join(folder, versions[0], 'model.onnx'), version: versions[0], folder }
  }
  throw new ModelLoadError(`model '${name}' not found in ${dir} (looked for ${name}.onnx, ${name}/model.onnx and ${name}/<version>/model.onnx)`)
}

function insideDir (dir: string, path: string): boolean {
  const rel = relative(realpathSync(dir), realpathSync(path))
  return !rel.startsWith('..') && !isAbsolute(rel)
}

/**
 * Refuses feeds with an index past its table's rows: ONNX Runtime would fail
 * the whole run with an error that does not say it is the caller's, a 500.
 * Negative indices count from the end, as in ONNX's Gather.
 */
function checkIndices (limits: IndexLimit[], feeds: Record<string, Tensor>) {
  for (const { input, limit, table } of limits) {
    const data = feeds[input]?.data
    const at = data instanceof BigInt64Array
      ? outOfRange64(data, limit)
      : data instanceof Int32Array ? data.findIndex(v => v >= limit || v < -limit) : -1
    if (at >= 0) {
      throw badRequest(`input '${input}': element ${at} (${data![at]}) is out of range: it indexes the ${limit} rows of the model's table '${table}', so it must be from ${-limit} to ${limit - 1}`)
    }
  }
}

const LITTLE_ENDIAN = endianness() === 'LE'

/**
 * The first int64 outside [-limit, limit) (limit < 2^31), or -1. Read as
 * 32-bit words: each BigInt read from a BigInt64Array is allocated, which
 * took 45 ns an element against 5.
 */
function outOfRange64 (data: BigInt64Array, limit: number): number {
  if (!LITTLE_ENDIAN) {
    const high = BigInt(limit)
    return data.findIndex(v => v >= high || v < -high)
  }
  const words = new Int32Array(data.buffer, data.byteOffset, data.length * 2)
  for (let i = 0; i < words.length; i += 2) {
    const low = words[i]
    const high = words[i + 1]
    // In range: high word 0 and low word (unsigned) under the limit, or high
    // word -1 (all ones) and low word negative (as signed) down to -limit.
    if (high === 0 ? (low >>> 0) >= limit : high !== -1 || low >= 0 || low < -limit) return i >> 1
  }
  return -1
}

export class ModelStore implements ModelRunner {
  readonly pool: InferencePool
  private models = new Map<string, Model>()
  private contracts = new Map<string, ModelContract>()
  /** Runs queued or computing, per pool key; a key is unloaded only at zero. */
  private inflight = new Map<string, number>()
  private idleWaiters = new Map<string, Array<() => void>>()
  private generation = 0
  /** Per pool key, the inputs that index a weight table, checked on every run. */
  private limits = new Map<string, IndexLimit[]>()

  constructor (readonly options: ModelStoreOptions) {
    this.pool = new InferencePool({ threads: options.threads, batching: options.batching, inlineBelowUs: options.inlineBelowUs, threadNice: options.threadNice })
  }

  /**
   * Loads a model by name and checks it against the contract; a missing,
   * corrupt or mismatched model fails here, at start-up, with a message that
   * names the file and what was expected.
   */
  async load (name: string): Promise<Model>
  async load<C extends ModelContract> (name: string, contract: C): Promise<Model<C>>
  async load (name: string, contract?: ModelContract): Promise<Model> {
    const existing = this.models.get(name)
    const { path, version, folder } = resolveModelPath(this.options.dir, name)
    if (!insideDir(this.options.dir, path)) throw new ModelLoadError(`model '${name}' resolves outside ${this.options.dir}`)
    let model = existing
    if (!model) {
      let meta
      try {
        meta = await this.pool.load(name, path)
      } catch (err) {
        throw new ModelLoadError(`cannot load model '${name}' from ${path}: ${(err as Error).message}`, { cause: err })
      }
      const configPath = folder ? join(folder, 'config.json') : join(this.options.dir, `${name}.json`)
      let config: Record<string, unknown> = {}
      if (existsSync(configPath)) {
        try {
          config = JSON.parse(readFileSync(configPath, 'utf8'))
        } catch (err) {
          throw new ModelLoadError(`cannot read ${configPath}: ${(err as Error).message}`, { cause: err })
        }
        // `null` would fail below with a TypeError's words, and [], "x" or 5
        // would be served as no config: parseConfig refuses them.
        // The same checks as the repository's (a near-miss key, a bad batching
        // option or version policy), for a model a resource loads.
        try {
          parseConfig(config, configPath)
        } catch (err) {
          // No cause: its message is this one, and the log repeated it.
          throw new ModelLoadError((err as Error).message)
        }
      }
      this.configureBatching(name, config, configPath)
      this.readLimits(name, path, meta.inputs, config, configPath)
      model = new Model(name, { key: name, path, version, inputs: meta.inputs, outputs: meta.outputs, config }, this)
      this.models.set(name, model)
    }
    if (contract) {
      this.contracts.set(name, contract)
      const problems = checkContract(contract, model)
      if (problems.length > 0) {
        throw new ModelLoadError(`model '${name}' (${path}) does not match what its resource expects:\n  ${problems.join('\n  ')}`)
      }
    }
    return model
  }

  /** Applies config.json's batching options (maxBatchSize, maxQueueItems, maxQueueDelayMs, padValue...). */
  private configureBatching (key: string, config: Record<string, unknown>, where: string) {
    try {
      this.pool.configure(key, batchOptionsFromConfig(config))
    } catch (err) {
      throw new ModelLoadError(`invalid batching options in ${where}: ${(err as Error).message}`, { cause: err })
    }
  }

  /**
   * Notes which of the model's inputs index a weight table (onnx-graph.ts); a
   * table the caller may feed has no fixed limit. A padValue that is no row of
   * such a table would fail every batch it pads.
   */
  private readLimits (key: string, path: string, inputs: TensorInfo[], config: Record<string, unknown>, where: string) {
    const fed = new Set(inputs.map(i => i.name))
    const limits = indexLimits(path).filter(l => fed.has(l.input) && !fed.has(l.table) && l.limit < 2 ** 31)
    const pad = config.padValue
    const unfit = typeof pad === 'number' ? limits.find(l => pad >= l.limit || pad < -l.limit) : undefined
    if (unfit) {
      throw new ModelLoadError(`invalid batching options in ${where}: padValue ${pad} is out of range for input '${unfit.input}', which indexes the ${unfit.limit} rows of the model's table '${unfit.table}'`)
    }
    if (limits.length > 0) this.limits.set(key, limits)
    else this.limits.delete(key)
  }

  /** What the resource that loaded `name` expects of it (a hot swap must keep to it). */
  contractOf (name: string): ModelContract | undefined {
    return this.contracts.get(name)
  }

  /**
   * Loads a model file under a fresh pool key, beside anything already loaded
   * (the repository's versions and hot swaps). Not registered by name: the
   * caller owns it and gives it back with `release`.
   */
  async loadFile (name: string, path: string, version: string | undefined, config: Record<string, unknown>): Promise<LoadedModel> {
    const key = `${name}@${version ?? ''}#${++this.generation}`
    try {
      const meta = await this.pool.load(key, path)
      this.configureBatching(key, config, `the config of '${name}'`)
      this.readLimits(key, path, meta.inputs, config, `the config of '${name}'`)
      return { key, path, version, inputs: meta.inputs, outputs: meta.outputs, config }
    } catch (err) {
      await this.pool.unload(key)
      throw new ModelLoadError(`cannot load model '${name}' from ${path}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Runs a job on the sessions under `key`, counted as in flight until it settles. */
  run (key: string, feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    const limits = this.limits.get(key)
    if (limits) checkIndices(limits, feeds)
    this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1)
    let running
    try {
      running = this.pool.run(key, feeds, options)
    } catch (err) {
      // Thrown at once (a feed that is not a tensor): counted in flight for ever, it kept release() waiting.
      this.settled(key)
      throw err
    }
    return running.finally(() => this.settled(key))
  }

  private settled (key: string) {
    const left = (this.inflight.get(key) ?? 1) - 1
    if (left > 0) return void this.inflight.set(key, left)
    this.inflight.delete(key)
    for (const wake of this.idleWaiters.get(key) ?? []) wake()
    this.idleWaiters.delete(key)
  }

  /** Runs queued or computing on `key`. */
  inFlight (key: string): number {
    return this.inflight.get(key) ?? 0
  }

  /** Unloads the sessions under `key` once the runs in flight on them have finished. */
  async release (key: string): Promise<void> {
    if (this.inFlight(key) > 0) {
      await new Promise<void>(resolve => {
        const waiters = this.idleWaiters.get(key) ?? []
        waiters.push(resolve)
        this.idleWaiters.set(key, waiters)
      })
    }
    await this.pool.unload(key)
    this.limits.delete(key)
  }

  get (name: string): Model | undefined {
    return this.models.get(name)
  }

  list (): Model[] {
    return [...this.models.values()]
  }

  async close (): Promise<void> {
    this.models.clear()
    await this.pool.close()
  }
}
