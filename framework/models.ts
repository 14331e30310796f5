// The one module resources ask for models. It finds a model's file in the
// models directory, loads it into every inference thread, checks it against
// what the resource expects, and hands back a `Model`: metadata plus an async
// `run(feeds)`. Everything that talks to ONNX Runtime sits behind this module
// (the threads in inference-worker.js do the actual calls).
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs'
import { join, relative, isAbsolute } from 'node:path'
import { InferencePool, type RunOptions } from './pool.ts'
import { checkContract, type ModelContract, type Tensor, type TensorInfo } from './tensor.ts'

export interface ModelStoreOptions {
  /** Directory holding the models (`name.onnx`, `name/model.onnx` or `name/<version>/model.onnx`). */
  dir: string
  /** Inference threads (one session of each model per thread). */
  threads: number
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

export class ModelLoadError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ModelLoadError'
  }
}

/** A loaded model: what it takes, what it gives, and a way to run it off the main thread. */
export class Model {
  constructor (
    readonly name: string,
    readonly path: string,
    readonly version: string | undefined,
    readonly inputs: TensorInfo[],
    readonly outputs: TensorInfo[],
    /** The optional `config.json` beside the model (labels and the like). */
    readonly config: Record<string, unknown>,
    private readonly pool: InferencePool,
    private readonly key: string,
  ) {}

  /** Runs the model on one set of feeds, on an inference thread. */
  run (feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    return this.pool.run(this.key, feeds, options)
  }
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

export class ModelStore {
  readonly pool: InferencePool
  private models = new Map<string, Model>()

  constructor (readonly options: ModelStoreOptions) {
    this.pool = new InferencePool({ threads: options.threads })
  }

  /**
   * Loads a model by name and checks it against the contract; a missing,
   * corrupt or mismatched model fails here, at start-up, with a message that
   * names the file and what was expected.
   */
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
      }
      model = new Model(name, path, version, meta.inputs, meta.outputs, config, this.pool, name)
      this.models.set(name, model)
    }
    if (contract) {
      const problems = checkContract(contract, model)
      if (problems.length > 0) {
        throw new ModelLoadError(`model '${name}' (${path}) does not match what its resource expects:\n  ${problems.join('\n  ')}`)
      }
    }
    return model
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
