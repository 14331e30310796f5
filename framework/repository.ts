// The model repository: every ONNX model in the models directory, served with
// no code. At start-up the directory is scanned:
//
//   models/mlp.onnx               model 'mlp', unversioned (config: models/mlp.json)
//   models/ner/model.onnx         model 'ner', unversioned (config: models/ner/config.json)
//   models/clf/1/model.onnx       model 'clf', versions 1 and 2 (config: models/clf/config.json)
//   models/clf/2/model.onnx
//
// config.json may say what ONNX cannot: `labels`, `maxBatchSize` (most items
// along the first dimension of a request's inputs, 400 above; the pool's
// batching reads it too, with `maxQueueDelayMs` and the other keys of
// framework/batcher.ts), `versionPolicy` ({"latest": n} (default n = 1),
// "all", or {"specific": [1, 3]}) and `allowNonFinite`. Unknown keys are kept
// (resources read theirs, e.g. the taggers' transitions), unless so close to
// one of these that they are a typo of it (model-config.ts).
//
// Sessions come from the ModelStore: a model a resource already loaded is
// adopted, not loaded twice. A model that fails to load is UNAVAILABLE with
// its reason and the others serve on, unless `stopOnFailure` is set.
//
// Hot swap (reload() on SIGHUP, load() from the repository API): a changed
// file is loaded under a fresh pool key beside the old one, warmed up, and
// swapped in with one assignment; the old sessions are released when the runs
// in flight on them finish (ModelStore.release). A failed load leaves the old
// version serving.
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync, existsSync } from 'node:fs'
import { isAbsolute, join, relative } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import { ModelLoadError, type LoadedModel, type ModelStore } from './models.ts'
import { fileSignature } from './pool.ts'
import { withoutModelsDir } from './errors.ts'
import { parseConfig, type RepositoryConfig, type VersionPolicy } from './model-config.ts'
import { checkContract, TYPED_ARRAYS, type ElementType, type Tensor } from './tensor.ts'

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
// At most 15 digits: versions are compared as numbers, exact only below 2^53.
const VERSION = /^[0-9]{1,15}$/

/** Triton's model states, as the repository index reports them. */
export type ModelState = 'LOADING' | 'READY' | 'UNAVAILABLE' | 'UNLOADING'

export type { RepositoryConfig, VersionPolicy } from './model-config.ts'
export { parseConfig } from './model-config.ts'

/** One servable version of a model (`version` undefined for an unversioned model). */
export interface ServedVersion {
  version: string | undefined
  path: string
  state: ModelState
  reason: string
  loaded?: LoadedModel
  /** File and config identity when loaded: a reload only reloads what changed. */
  signature: string
}

export interface RepositoryModel {
  name: string
  state: ModelState
  reason: string
  config: RepositoryConfig
  versions: Map<string, ServedVersion>
}

/** What the scan found for one name. */
export interface Found {
  name: string
  /** version ('' for unversioned) -> model file */
  files: Map<string, string>
  configPath: string
  problem?: string
}

export interface RepositoryOptions {
  store: ModelStore
  dir: string
  log?: FastifyBaseLogger
  /** A model that fails to load at start-up stops the server instead of being reported. */
  stopOnFailure?: boolean
}

const versionKey = (v: string | undefined) => v ?? ''
const byNumberDesc = (a: string, b: string) => Number(b) - Number(a)

function inside (root: string, path: string): boolean {
  const rel = relative(root, realpathSync(path))
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
}

function signatureOf (path: string, configPath: string): string {
  return `${fileSignature(path) ?? '-'}|${fileSignature(configPath) ?? '-'}`
}

/** Lists the models in `dir`; names are validated and nothing may resolve outside it. */
export function scanModels (dir: string): Found[] {
  const root = realpathSync(dir)
  const found = new Map<string, Found>()
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))
  const add = (name: string, configPath: string): Found => {
    const f = found.get(name) ?? { name, files: new Map(), configPath }
    found.set(name, f)
    return f
  }
  /** The model an entry would be: `name.onnx` or a folder `name`. */
  const nameOf = (entry: string) => (entry.endsWith('.onnx') ? entry.slice(0, -'.onnx'.length) : entry)
  const scanEntry = (entry: { name: string }) => {
    const full = join(dir, entry.name)
    const isFile = entry.name.endsWith('.onnx')
    const name = nameOf(entry.name)
    if (entry.name.startsWith('.')) return
    let kind: 'file' | 'dir' | undefined
    try {
      const s = statSync(full)
      kind = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : undefined
    } catch {
      kind = undefined
    }
    if (isFile ? kind !== 'file' : kind !== 'dir') {
      if (isFile && lstatSync(full).isSymbolicLink()) add(name, join(dir, `${name}.json`)).problem = `${entry.name} is a broken symbolic link`
      return
    }
    if (!NAME.test(name)) return
    if (!isFile && found.has(name)) return // name.onnx wins over name/, as in ModelStore
    const f = add(name, isFile ? join(dir, `${name}.json`) : join(full, 'config.json'))
    if (!inside(root, full)) {
      f.problem = `${entry.name} resolves outside the models directory`
      return
    }
    if (isFile) {
      f.files.clear()
      f.files.set('', full)
      f.configPath = join(dir, `${name}.json`)
      f.problem = undefined
      return
    }
    const flat = join(full, 'model.onnx')
    if (existsSync(flat)) {
      if (inside(root, flat)) f.files.set('', flat)
      else f.problem = `${name}/model.onnx resolves outside the models directory`
      return
    }
    for (const v of readdirSync(full)) {
      const file = join(full, v, 'model.onnx')
      if (!VERSION.test(v) || !existsSync(file)) continue
      if (!inside(root, file)) {
        f.problem = `${name}/${v}/model.onnx resolves outside the models directory`
        continue
      }
      f.files.set(String(Number(v)), file)
    }
    // A folder with no model in it is not a model (it may hold data files).
    if (f.files.size === 0 && !f.problem) found.delete(name)
  }
  for (const entry of entries) {
    try {
      scanEntry(entry)
    } catch (err) {
      // Removed or replaced while we looked (a deploy at work): as if not there.
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err
      found.delete(nameOf(entry.name))
    }
  }
  return [...found.values()]
}

function readConfig (path: string): RepositoryConfig {
  if (!existsSync(path)) return parseConfig({}, path)
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`)
  }
  return parseConfig(raw, path)
}

/** The versions a policy serves, highest first ('' alone for an unversioned model). */
export function selectVersions (available: string[], policy: VersionPolicy): string[] {
  if (available.includes('')) return ['']
  const sorted = [...available].sort(byNumberDesc)
  if (policy === 'all') return sorted
  if ('latest' in policy) return sorted.slice(0, policy.latest)
  return sorted.filter(v => policy.specific.includes(v))
}

/** Zero-filled feeds for a warm-up run: dynamic dimensions get size 1. */
export function warmupFeeds (loaded: LoadedModel): Record<string, Tensor> | undefined {
  const feeds: Record<string, Tensor> = {}
  for (const info of loaded.inputs) {
    if (info.type === 'non-tensor') return undefined
    const dims = info.shape.map(d => (typeof d === 'number' && d >= 0 ? d : 1))
    const n = dims.reduce((a, b) => a * b, 1)
    const type = info.type as ElementType
    feeds[info.name] = type === 'string'
      ? { type, data: new Array<string>(n).fill(''), dims }
      : { type, data: new (TYPED_ARRAYS[type as Exclude<ElementType, 'string'>])(n), dims }
  }
  return feeds
}

export class ModelRepository {
  private models = new Map<string, RepositoryModel>()
  private started = false
  /** One operation at a time per model (start-up, reload, load and unload API). */
  private locks = new Map<string, Promise<unknown>>()
  readonly dir: string
  private readonly store: ModelStore
  private readonly log?: FastifyBaseLogger

  constructor (private readonly options: RepositoryOptions) {
    this.dir = options.dir
    this.store = options.store
    this.log = options.log
  }

  /**
   * Lists the directory now (cheap): models found before start-up loading are
   * LOADING; ones dropped in later are UNAVAILABLE until loaded (API or SIGHUP).
   */
  discover (): void {
    for (const f of this.safeScan()) {
      if (this.models.has(f.name)) continue
      const m = this.placeholder(f.name)
      if (this.started) Object.assign(m, { state: 'UNAVAILABLE', reason: 'not loaded yet: use the load API or send SIGHUP' })
      this.models.set(f.name, m)
    }
  }

  private safeScan (): Found[] {
    try {
      return scanModels(this.dir)
    } catch (err) {
      this.log?.error({ err, dir: this.dir }, 'cannot scan the models directory')
      return []
    }
  }

  private placeholder (name: string): RepositoryModel {
    return { name, state: 'LOADING', reason: 'loading', config: parseConfig({}, ''), versions: new Map() }
  }

  get (name: string): RepositoryModel | undefined {
    return this.models.get(name)
  }

  list (): RepositoryModel[] {
    return [...this.models.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  /** The version a request without one gets: the highest ready version. */
  defaultVersion (model: RepositoryModel): ServedVersion | undefined {
    const ready = [...model.versions.values()].filter(v => v.state === 'READY' && v.loaded)
    return ready.sort((a, b) => byNumberDesc(versionKey(a.version), versionKey(b.version)))[0]
  }

  /** Start-up: loads every model found; failures are reported (or thrown with stopOnFailure). */
  async loadAll (): Promise<void> {
    this.discover()
    this.started = true
    const failures: string[] = []
    for (const f of this.safeScan()) {
      await this.locked(f.name, () => this.apply(f, { adopt: true }))
      const m = this.models.get(f.name)
      if (m && m.state !== 'READY') failures.push(`model '${f.name}': ${m.reason}`)
    }
    if (failures.length > 0 && this.options.stopOnFailure) {
      throw new ModelLoadError(`models failed to load (stop-on-model-failure is set):\n  ${failures.join('\n  ')}`)
    }
  }

  /**
   * SIGHUP: scans again, loads what is new or changed, retires what is gone.
   * A scan that fails changes nothing (it would otherwise read as "every
   * model is gone"), and only models known before this scan can be gone: one
   * the load API adds meanwhile is not in it, yet is not retired.
   */
  async reload (): Promise<void> {
    const known = [...this.models.keys()]
    let found: Found[]
    try {
      found = scanModels(this.dir)
    } catch (err) {
      throw new ModelLoadError(`cannot scan the models directory, nothing reloaded: ${(err as Error).message}`)
    }
    const names = new Set(found.map(f => f.name))
    for (const f of found) await this.locked(f.name, () => this.apply(f))
    for (const name of known) {
      if (!names.has(name)) await this.locked(name, () => this.retire(name, 'its files were removed'))
    }
  }

  /** Repository API: (re)loads one model from the directory. Resolves with its state. */
  async load (name: string): Promise<RepositoryModel> {
    const f = this.safeScan().find(x => x.name === name)
    if (!f) throw new ModelLoadError(`model '${name}' not found in the models directory`)
    await this.locked(name, () => this.apply(f, { force: true }))
    return this.models.get(name)!
  }

  /** Repository API: stops serving a model and releases its sessions once idle. */
  async unload (name: string): Promise<void> {
    if (this.store.get(name)) throw new ModelLoadError(`model '${name}' is used by a resource and cannot be unloaded`)
    await this.locked(name, () => this.retire(name, 'unloaded'))
  }

  private locked<T> (name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve()
    const next = prev.catch(() => {}).then(fn)
    this.locks.set(name, next)
    return next
  }

  private async retire (name: string, reason: string): Promise<void> {
    const m = this.models.get(name)
    if (!m) return
    if (this.store.get(name)) {
      this.log?.warn({ model: name }, `model is used by a resource; keeping it although ${reason}`)
      return
    }
    m.state = 'UNLOADING'
    m.reason = reason
    const releasing = [...m.versions.values()].map(v => {
      v.state = 'UNAVAILABLE'
      v.reason = reason
      const key = v.loaded?.key
      v.loaded = undefined
      return key ? this.store.release(key) : undefined
    })
    await Promise.all(releasing)
    m.state = 'UNAVAILABLE'
    m.versions.clear()
  }

  /**
   * Brings one model in line with what the scan found: loads new or changed
   * versions beside the serving ones, warms them, swaps, then releases what is
   * no longer served. `force` reloads even unchanged files (the load API);
   * `adopt` (start-up) shares the sessions a resource loaded for the same file.
   */
  private async apply (f: Found, { force = false, adopt = false } = {}): Promise<void> {
    const m = this.models.get(f.name) ?? this.placeholder(f.name)
    this.models.set(f.name, m)
    const hadReady = [...m.versions.values()].some(v => v.state === 'READY')
    const fail = (why: string) => {
      // Reasons are shown to clients: paths relative to the models directory.
      const reason = withoutModelsDir(why, this.dir)
      if (hadReady) {
        // The old versions keep serving; the failure is reported beside them.
        m.reason = `reload failed, still serving the previous version: ${reason}`
        this.log?.error({ model: f.name, reason }, 'model reload failed; the previous version keeps serving')
      } else {
        m.state = 'UNAVAILABLE'
        m.reason = reason
        this.log?.error({ model: f.name, reason }, 'model failed to load')
      }
    }
    if (f.problem) return fail(f.problem)
    let config: RepositoryConfig
    try {
      config = readConfig(f.configPath)
    } catch (err) {
      return fail((err as Error).message)
    }
    const wanted = selectVersions([...f.files.keys()], config.versionPolicy)
    if (wanted.length === 0) return fail(`no version matches the version policy ${JSON.stringify(config.versionPolicy)}`)
    if (!hadReady) {
      m.state = 'LOADING'
      m.reason = 'loading'
    }

    // Load what is new or changed, beside what serves now.
    const fresh = new Map<string, ServedVersion>()
    const problems: string[] = []
    // Versions that failed, kept as UNAVAILABLE entries with their reason (where
    // none serves): a request naming one is told why, not that it does not exist.
    const failed = new Map<string, ServedVersion>()
    const recordFailures = () => {
      for (const [v, s] of failed) if (m.versions.get(v)?.state !== 'READY') m.versions.set(v, s)
    }
    for (const v of wanted) {
      const path = f.files.get(v)!
      const signature = signatureOf(path, f.configPath)
      const current = m.versions.get(v)
      // Unchanged and served: kept (a model no inference thread holds any more is loaded again).
      if (!force && current?.state === 'READY' && current.signature === signature && current.path === path &&
          !(current.loaded && this.store.pool.unavailable(current.loaded.key))) continue
      try {
        const loaded = await this.loadVersion(f.name, v === '' ? undefined : v, path, config, adopt)
        fresh.set(v, { version: loaded.version, path, state: 'READY', reason: '', loaded, signature })
      } catch (err) {
        problems.push(v === '' ? (err as Error).message : `version ${v}: ${(err as Error).message}`)
        failed.set(v, { version: v === '' ? undefined : v, path, state: 'UNAVAILABLE', reason: withoutModelsDir((err as Error).message, this.dir), signature })
      }
    }
    // Nothing new loaded: whatever served before keeps serving.
    if (problems.length > 0 && fresh.size === 0) {
      recordFailures()
      return fail(problems.join('; '))
    }

    // A resource's model must still match what the resource expects.
    const resourceModel = this.store.get(f.name)
    const contract = this.store.contractOf(f.name)
    const nextDefault = [...wanted].sort(byNumberDesc).map(v => fresh.get(v) ?? m.versions.get(v)).find(s => s?.state === 'READY' && s.loaded)
    if (resourceModel && contract && nextDefault?.loaded && nextDefault.loaded !== resourceModel.loaded) {
      const mismatch = checkContract(contract, nextDefault.loaded)
      if (mismatch.length > 0) {
        for (const s of fresh.values()) if (s.loaded) await this.store.release(s.loaded.key)
        return fail(`does not match what its resource expects: ${mismatch.join('; ')}`)
      }
    }

    // Swap: one synchronous block, so a request sees either the old or the new sessions.
    const old: LoadedModel[] = []
    for (const [v, s] of fresh) {
      const prev = m.versions.get(v)
      if (prev?.loaded && prev.loaded !== s.loaded) old.push(prev.loaded)
      m.versions.set(v, s)
    }
    for (const [v, s] of [...m.versions]) {
      if (!wanted.includes(v)) {
        if (s.loaded) old.push(s.loaded)
        m.versions.delete(v)
      }
    }
    recordFailures()
    const oldResourceTarget = resourceModel?.loaded
    if (resourceModel && nextDefault?.loaded && nextDefault.loaded !== resourceModel.loaded) resourceModel.retarget(nextDefault.loaded)
    m.config = config
    const readyNow = [...m.versions.values()].some(v => v.state === 'READY')
    m.state = readyNow ? 'READY' : 'UNAVAILABLE'
    m.reason = problems.length > 0 ? withoutModelsDir(`some versions failed to load: ${problems.join('; ')}`, this.dir) : ''
    if (fresh.size > 0) this.log?.info({ model: f.name, versions: [...fresh.keys()].map(v => v || '(unversioned)') }, hadReady ? 'model swapped' : 'model loaded')

    // Release the old sessions once the requests already on them finish. A
    // resource's first sessions (loaded by ModelStore.load) are released the same way.
    const toRelease = new Set(old.map(l => l.key))
    if (oldResourceTarget && oldResourceTarget !== resourceModel?.loaded) toRelease.add(oldResourceTarget.key)
    for (const s of m.versions.values()) if (s.loaded) toRelease.delete(s.loaded.key)
    if (resourceModel) toRelease.delete(resourceModel.loaded.key)
    await Promise.all([...toRelease].map(key => this.store.release(key)))
  }

  /** Loads one version (or adopts a resource's sessions for the same file) and warms it up. */
  private async loadVersion (name: string, version: string | undefined, path: string, config: RepositoryConfig, adopt: boolean): Promise<LoadedModel> {
    const resourceModel = this.store.get(name)
    if (adopt && resourceModel && this.store.pool.loadedFromFile(resourceModel.loaded.key, path)) {
      // Start-up: the resource loaded this very file a moment ago; share its
      // sessions (unless the file was replaced since: then it is loaded anew,
      // and the resource follows, as on a reload).
      return resourceModel.loaded
    }
    // loadFile also hands config.json's batching options to the pool.
    const loaded = await this.store.loadFile(name, path, version, config.raw)
    const feeds = warmupFeeds(loaded)
    if (feeds) {
      try {
        // Not counted in the model's metrics: no client asked for it.
        await this.store.run(loaded.key, feeds, { uncounted: true })
      } catch (err) {
        // Some models cannot take zeros (a Reshape to a fixed size, say): that
        // is not a reason to refuse them, only to warn.
        this.log?.warn({ model: name, version, err: (err as Error).message }, 'warm-up run on zeros failed')
      }
    }
    return loaded
  }
}
