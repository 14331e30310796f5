// A pool of inference threads. Every thread holds a session of every loaded
// model (loads are all or nothing; a thread that died is replaced, and a
// replacement that cannot read a model's file as it was loaded goes without
// that model: see `replace`); each thread runs one job at a time, taken from one FIFO queue that
// lives here on the main thread. Keeping the queue here (rather than in the
// threads' message ports) is what lets a job be dropped before it computes when
// its request has been aborted or has passed its deadline.
//
// Batching: when a thread frees up it takes the oldest waiting request and the
// requests queued behind it for the same model (compatible shapes, up to the
// model's max batch items), as one session.run; framework/batcher.ts merges and
// splits. Nothing waits for a batch to fill unless a model asks for a max
// delay, so a lone request on an idle server runs at once and batches form
// from what queued while the threads were busy.
//
// Queues are per model and bounded in items; a request that would go over is
// refused at once (OverloadedError, 503). The bound stretches by the rows the
// model's batches computing left unfilled (see ModelQueue.unfilled). A
// request whose signal fires while queued leaves the queue at that moment and
// is never computed.
//
// Models too cheap to be worth the hop run inline: when a model's measured
// cost predicts a job under `inlineBelowUs`, the job
// runs on the main thread (a session is kept there too), even if bigger jobs
// of the model wait for a thread: it may finish before them. Posting a job to
// a thread and waking both sides costs more than a few-microsecond model, and
// blocking the event loop that briefly is like parsing a small JSON body.
// Inline jobs are batched too: the ones that arrive during one turn of the
// event loop (a burst of requests read from many sockets) run together at the
// end of that turn (setImmediate), in runs predicted under a millisecond.
// Anything slower goes to the threads. The cost is learnt from every run,
// on a thread or inline, as ONNX Runtime's own computing time (the
// runtime's timedRun): the hop and the event-loop turn the run waits for are
// not counted, so a model's estimate is the same wherever it runs, and one
// kept inline that got slower (its cost follows its input's values, not its
// size) leaves the main thread after one slow run.
//
// Why not piscina: loads must reach every thread (one session per thread), and
// the queue must stay inspectable on the main thread for deadlines and
// batching. piscina hides both behind its own task queue.
import { statSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { TRANSFER_MIN_BYTES, createRuntime, sessionOptions, type Runtime } from './inference-core.js'
import { availableParallelism } from 'node:os'
import { TYPED_ARRAYS, type TensorInfo, type Tensor } from './tensor.ts'
import type { AbortSignalLike } from './deadline.ts'
import {
  DEFAULT_BATCH_OPTIONS, compatible, isDynamic, mergeFeeds, modelBatches, rowsOf, splitOutputs, validateBatchOptions,
  type BatchOptions, type ModelShape,
} from './batcher.ts'

export type { BatchOptions }

const WORKER_URL = new URL('./inference-worker.js', import.meta.url)

/**
 * Longest predicted run for a batch of inline jobs, in microseconds: each job
 * is cheap (under `inlineBelowUs`), and batching them pays as it does on the
 * threads, but the event loop must not stall for long.
 */
const INLINE_RUN_MAX_US = 1000

/**
 * A merged batch's input buffer that came back from its run is kept for the
 * next merge, from this size up: a fresh buffer's pages are faulted in as the
 * merge first writes them, which was most of its cost (63 long /ner texts,
 * 46 MB: 24 ms of the main thread at best, 4.5 ms into a reused buffer).
 * The largest `SPARES` are kept: memory a batch that large took anyway
 * (for /ner, at most its maxBatchTokens: 69 MB).
 */
const SPARE_MIN_BYTES = 1 << 20
const SPARES = 1

/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1

export interface PoolOptions {
  /** Number of inference threads. */
  threads: number
  /** Threads ONNX Runtime may use inside one session.run (intra-op). */
  intraOpThreads?: number
  /** Batching and queue defaults for every model (`configure` overrides per model). */
  batching?: Partial<BatchOptions>
  /** Niceness the inference threads add to the process's (Linux), so the main thread runs first on a shared core (0: none). */
  threadNice?: number
  /**
   * Run a job on the main thread when its predicted compute time is under
   * this many microseconds and nothing of its model is queued (0: never).
   */
  inlineBelowUs?: number
}

export interface RunOptions {
  signal?: AbortSignalLike
  /** Restrict the outputs computed and returned (all when omitted). */
  outputs?: string[]
  /**
   * The caller will not read the feeds again: their large buffers may be
   * moved to the inference thread (left empty here) instead of copied.
   */
  transfer?: boolean
  /**
   * A later run of a request whose first run was admitted (the texts of one
   * /ner request). With a queue bound of 0 it waits for a thread rather than
   * being refused: its request was admitted when a thread was free, and its
   * own earlier runs are what keep the threads busy. A bound above 0 applies
   * to it as to any run.
   */
  continues?: boolean
  /**
   * A run the server makes itself (the warm-up on zeros at load): left out
   * of the model's counters, which count clients' requests (a model that
   * cannot take zeros would otherwise show a failure at every deploy). It
   * runs alone, never in a client's batch.
   */
  uncounted?: boolean
}

export interface LoadedMetadata { inputs: TensorInfo[], outputs: TensorInfo[] }

interface Job {
  key: string
  feeds: Record<string, Tensor>
  outputs?: string[]
  signal?: AbortSignalLike
  /** The caller lets its feeds' buffers go (RunOptions.transfer). */
  transfer?: boolean
  resolve: (value: Record<string, Tensor>) => void
  reject: (err: Error) => void
  /** Rows along axis 0 (1 when the feeds cannot be batched, or have no rows). */
  items: number
  /** Whether it may share a session.run (false after its batch failed: rerun alone; false for feeds that hold nothing, see holdsNothing). */
  batchable: boolean
  /** Counted (requests, items) with a batch that failed or did not split back: its rerun alone is not counted again. */
  counted?: boolean
  /** RunOptions.uncounted. */
  uncounted?: boolean
  enqueuedAt: number
  onAbort?: () => void
}

/** Counters per model, for tests, logs and metrics. */
export interface ModelStats {
  /** Requests and items waiting now: for a thread, or inline for the end of the event-loop turn. */
  queuedRequests: number
  queuedItems: number
  /** session.run calls, and the requests and items they computed. */
  batches: number
  requests: number
  items: number
  largestBatch: number
  /**
   * Runs by their items, in powers of two (the batch-size histogram's
   * buckets): [0] counts the runs of at most one item, [i] those of more than
   * 2^(i-1) and at most 2^i. As long as the largest run needs.
   */
  batchSizes: number[]
  /** Items over every run, reruns included (the batch-size histogram's sum; `items` counts each request once). */
  batchSizesSum: number
  /** Requests dropped from the queue because their signal fired (never computed, nor counted in `requests`). */
  dropped: number
  /** Requests refused because the queue was full. */
  refused: number
  /** Requests that failed in ONNX Runtime (not for their values: see badInput). */
  failed: number
  /** Requests run alone whose values ONNX Runtime refused (an index out of range: BadInputError, a 400). */
  badInput: number
  /** Requests computed on the main thread (too cheap for the hop to a thread). */
  inline: number
}

class ModelQueue {
  jobs: Job[] = []
  items = 0
  shape?: ModelShape
  batches = false
  stats: Omit<ModelStats, 'queuedRequests' | 'queuedItems'> = { batches: 0, requests: 0, items: 0, largestBatch: 0, batchSizes: [], batchSizesSum: 0, dropped: 0, refused: 0, failed: 0, badInput: 0, inline: 0 }
  /** Moving average of ONNX Runtime's computing time per input element, in microseconds. */
  usPerElement?: number
  /**
   * The main-thread session: absent, being loaded, ready, or off (its file
   * changed since the threads loaded it, or it failed to load: until the
   * model is loaded again, the threads run it).
   */
  inline: 'none' | 'loading' | 'ready' | 'off' = 'none'
  /** The main runtime's key for it: one per attempt, so a stale load never stands in for a newer one. */
  inlineKey?: string
  /** Jobs to run on the main thread at the end of this event-loop turn. */
  inlineJobs: Job[] = []
  inlineScheduled = false
  /** Jobs the last inline run took (1: no load, jobs run as they come). */
  inlineLastRun = 0
  /** Whether its last job was predicted cheap enough to run inline (runsInline). */
  inlineNow = false
  inlineRanThisTurn = false
  /** Its batches computing, on a thread or inline: one that fails puts its jobs back here. */
  computing = 0
  /**
   * Rows its batches computing on the threads could have taken and did not
   * (maxBatchItems less their items, for a batch that took every job
   * waiting; see dispatch): as many more may wait, over maxQueueItems. The
   * bound is there to cap the rows ahead of an admitted request, computing
   * or waiting, at full batches computing and maxQueueItems waiting (what a flood meets: its batches are full). On an
   * idle server the first request of a burst takes a thread alone, and the
   * rest of the burst arrived while it computed: four /ner requests of 17
   * texts, 68 rows, one computing and 67 waiting, were refused past 64.
   */
  unfilled = 0
  /**
   * Whether the queue outlives its jobs: a loaded (or configured) model's
   * does. One that only holds jobs of a model unloaded meanwhile, or never
   * loaded, is deleted once they have settled (see InferencePool.forget), or
   * replaced by a fresh one when the key is loaded or configured before that
   * (see InferencePool.keep).
   */
  kept = false
  constructor (readonly key: string, public options: BatchOptions) {}

  remove (taken: Set<Job>) {
    this.jobs = this.jobs.filter(j => !taken.has(j))
    for (const j of taken) this.items -= j.items
  }
}

interface Pending { resolve: (msg: any) => void, reject: (err: Error) => void }

/** The job was dropped before it computed, because its signal fired. */
export class AbortedError extends Error {
  constructor (reason: unknown) {
    super(reason instanceof Error ? reason.message : 'aborted', { cause: reason })
    this.name = 'AbortedError'
  }
}

/** The model's queue is full: refused before queueing, answered with 503 and Retry-After. */
/**
 * A pool key as clients name the model, in the messages they see: a
 * resource model's key is its name; the repository's versions and hot swaps
 * run under `name@version#generation` (ModelStore.loadFile), which the 503s
 * of OIP routes showed as it was ("model 'mlp@#7' is overloaded").
 */
export function modelShown (key: string): string {
  const at = key.indexOf('@')
  if (at < 0) return `model '${key}'`
  const hash = key.indexOf('#', at)
  const version = key.slice(at + 1, hash < 0 ? undefined : hash)
  return `model '${key.slice(0, at)}'${version === '' ? '' : ` version ${version}`}`
}

export class OverloadedError extends Error {
  constructor (readonly key: string, readonly queuedItems: number, readonly maxQueueItems: number, readonly retryAfterSeconds = 1, readonly unfilled = 0) {
    super(maxQueueItems === 0
      ? `${modelShown(key)} is overloaded: every inference thread is computing, and its requests do not queue (max queue items 0); retry later`
      : `${modelShown(key)} is overloaded: ${queuedItems} items queued (at most ${maxQueueItems}${unfilled > 0 ? `, and ${unfilled} more the batches computing left room for` : ''}); retry later`)
    this.name = 'OverloadedError'
  }
}

/**
 * No inference thread holds the model any more: the thread that held it died,
 * and its replacement could not load it again as it was (its file changed on
 * disk since the load). Served again once the model is loaded again.
 */
export class ModelUnavailableError extends Error {
  constructor (readonly key: string, readonly reason: string) {
    super(`${modelShown(key)} is unavailable: ${reason}`)
    this.name = 'ModelUnavailableError'
  }
}

/** ONNX Runtime rejected the job (bad feeds, a kernel failure...). */
export class InferenceError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'InferenceError'
  }
}

/**
 * A run of one request alone that ONNX Runtime failed on an index out of
 * range: a lookup (Gather, GatherElements, GatherND) or a scatter met an
 * index the request's values led to. The store refuses ids that reach a
 * table unchanged before they are queued (models.ts); these are the rest:
 * ids the model computes on first (an Add, say), or a GatherND's. The
 * caller's input, not the server, is at fault: a 400 (errors.ts).
 */
export class BadInputError extends InferenceError {
  constructor (message: string) {
    super(message)
    this.name = 'BadInputError'
  }
}

/** ONNX Runtime's text for a failed node: the op, the node's name, and its status message. */
const NODE_FAILURE = /running (\w+) node\. Name:'([^']*)' Status Message: ([^]*)$/
/** The lookups and scatters, whose index checks fail on a value the input led out of range. */
const INDEXING_OPS = new Set(['Gather', 'GatherElements', 'GatherND', 'ScatterElements', 'ScatterND'])
/** Those ops' index checks: "indices element out of data bounds, idx=60 must be within...", "GatherElements op: Out of range value in index tensor", "invalid index found, index = 9" (and "indice" in older ScatterND). */
const INDEX_OUT_OF_RANGE = /out of data bounds|out of range value in index|invalid ind(ex|ice) found/i
/**
 * ONNX Runtime's shape checks, as its kernels word them: a Reshape ("The
 * input tensor cannot be reshaped to the requested shape"), a broadcast
 * ("Attempting to broadcast an axis by a dimension other than 1"), MatMul and
 * Gemm ("dimension mismatch"), Concat ("Non concat axis dimensions must
 * match"), Expand ("invalid expand shape"), Split ("Cannot split using
 * values in 'split'").
 */
const SHAPE_MISMATCH = /cannot be reshaped|attempting to broadcast|dimension mismatch|dimensions must match|invalid expand shape|cannot split/i
/**
 * The source location before some status messages, and the condition
 * checked after it: "/onnxruntime_src/.../reshape_helper.h:84 onnxruntime::
 * ReshapeHelper::ReshapeHelper(...) size != 0 && ... was false. ", or
 * "matmul_helper.h:59 Compute ".
 */
const STATUS_SOURCE = /^(?:\/\S+\.(?:cc|cpp|h):\d+ [^]*?\)(?: const)?(?: \[with [^\]]*\])? (?:[^]*? was false\. )?|\w+\.(?:cc|h):\d+ \w+ )/

/** A request's input shapes as error messages quote them: "input 'x' ([1, 3])", at most 8 dimensions each. */
function shapesOf (feeds: Record<string, Tensor>): string {
  const names = Object.keys(feeds)
  const one = (name: string) => {
    const dims = feeds[name].dims
    return `'${name.length > 100 ? `${name.slice(0, 100)}...` : name}' ([${dims.slice(0, 8).join(', ')}${dims.length > 8 ? ', ...' : ''}])`
  }
  return names.length === 1 ? `the shape of input ${one(names[0])} does` : `the shapes of inputs ${names.map(one).join(', ')} do`
}

/**
 * The BadInputError for ONNX Runtime's failure of a request run alone, if the
 * request's values or shape caused it: an index its values led out of range,
 * or a shape the model's graph cannot take. `feeds` (the request's inputs) is
 * given only when the model declares a dynamic dimension: a shape failure is
 * then the shape the client chose. With every dimension fixed (checked before
 * a request is queued), every request fails alike: the model is at fault.
 */
export function badInputOf (message: string, feeds?: Record<string, Tensor>): BadInputError | undefined {
  const node = NODE_FAILURE.exec(message)
  if (!node) return undefined
  const [, op, name, status] = node
  const detail = status.replace(STATUS_SOURCE, '').trim()
  if (INDEXING_OPS.has(op) && INDEX_OUT_OF_RANGE.test(status)) {
    return new BadInputError(`the input's values are out of range for the model: its ${op} node '${name}' failed: ${detail}`)
  }
  if (feeds && Object.keys(feeds).length > 0 && SHAPE_MISMATCH.test(status)) {
    return new BadInputError(`${shapesOf(feeds)} not suit the model: its ${op} node '${name}' failed: ${detail}`)
  }
  return undefined
}

/** Whether a model's inputs declare a dynamic dimension (ONNX Runtime's metadata: a name, or -1). */
const takesShapes = (shape: ModelShape | undefined) =>
  shape?.inputs.some(i => i.shape.some(d => typeof d === 'string' || d < 0)) === true

/** Runs a batch's feeds (merged: made by the pool, whose buffers it may move), on a thread or inline. */
type Runner = (feeds: Record<string, Tensor>, outputs: string[] | undefined, merged: boolean) => Promise<{ outputs: Record<string, Tensor>, computeUs?: number, warmUp?: boolean }>

/**
 * The input buffers a failed run's thread sent back, by its error: a merged
 * batch's are kept as spares, as after a run that worked. Not a field of the
 * error, which reaches the callers.
 */
const returnedInputs = new WeakMap<Error, ArrayBuffer[]>()

function failedRun (message: string, inputs: ArrayBuffer[] | undefined): InferenceError {
  const err = new InferenceError(message)
  if (inputs && inputs.length > 0) returnedInputs.set(err, inputs)
  return err
}

class InferenceThread {
  readonly worker: Worker
  busy = false
  /**
   * Models the pool has loaded that this thread does not hold (a replacement
   * that could not load them again as they were): it takes none of their jobs.
   */
  readonly missing = new Set<string>()
  /** Loads replayed to this thread as a replacement, while they are under way (see InferencePool.loadOn). */
  readonly replays = new Map<Record<string, unknown>, Promise<any>>()
  private nextId = 0
  private pending = new Map<number, Pending>()
  exited = false

  constructor (options: PoolOptions, private onExit: (thread: InferenceThread, err: Error) => void) {
    this.worker = new Worker(WORKER_URL, {
      workerData: { sessionOptions: sessionOptions(options.intraOpThreads), nice: options.threadNice ?? 0 },
    })
    this.worker.on('message', (msg: { id: number, ok: boolean, message?: string, inputs?: ArrayBuffer[] }) => {
      const p = this.pending.get(msg.id)
      this.pending.delete(msg.id)
      if (msg.ok) p?.resolve(msg)
      else p?.reject(failedRun(msg.message ?? 'inference failed', msg.inputs))
      if (this.pending.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve()
    })
    const fail = (err: Error) => {
      if (this.exited) return
      this.exited = true
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
      for (const resolve of this.idleWaiters.splice(0)) resolve()
      this.onExit(this, err)
    }
    this.worker.on('error', fail)
    this.worker.on('exit', code => fail(new Error(`inference thread exited with code ${code}`)))
  }

  private idleWaiters: Array<() => void> = []

  /** Resolves once the thread has answered every message sent to it. */
  idle (): Promise<void> {
    if (this.pending.size === 0 || this.exited) return Promise.resolve()
    return new Promise(resolve => this.idleWaiters.push(resolve))
  }

  /**
   * Stops the thread once it is idle: terminating a thread inside
   * session.run tears ONNX Runtime down under a running kernel, which aborts
   * the whole process.
   */
  async stop (): Promise<void> {
    await this.idle()
    await this.worker.terminate()
  }

  call (msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<any> {
    if (this.exited) return Promise.reject(new Error('inference thread has exited'))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      try {
        this.worker.postMessage({ ...msg, id }, transfer)
      } catch (err) {
        // Never sent (feeds that cannot be cloned): left pending, the thread would never be idle, and stop() would wait forever.
        this.pending.delete(id)
        reject(err)
      }
    })
  }
}

export class InferencePool {
  private threads: InferenceThread[] = []
  private queues = new Map<string, ModelQueue>()
  private loaded = new Map<string, Record<string, unknown>>()
  /** Loads under way: a thread replaced meanwhile gets them too. */
  private loading = new Set<Record<string, unknown>>()
  /** Why a model is held by no thread (see ModelUnavailableError), by key. */
  private lost = new Map<string, string>()
  /** The file each model loaded by path was, when the threads read it (see loadInline). */
  private files = new Map<string, string | undefined>()
  private inlineLoads = 0
  private defaults: BatchOptions
  private delayTimer?: NodeJS.Timeout
  /** When `delayTimer` fires (performance.now() time). */
  private delayAt = Infinity
  private closed = false
  readonly size: number

  constructor (private options: PoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${options.threads}`)
    }
    const problems = validateBatchOptions(options.batching ?? {})
    if (problems.length > 0) throw new RangeError(`invalid batching defaults: ${problems.join('; ')}`)
    this.defaults = { ...DEFAULT_BATCH_OPTIONS, ...options.batching }
    this.size = options.threads
    for (let i = 0; i < options.threads; i++) this.threads.push(this.spawn())
  }

  /** Default thread count: leave one core to the HTTP thread, at least one. */
  static defaultThreads (): number {
    return Math.max(1, availableParallelism() - 1)
  }

  private spawn (): InferenceThread {
    return new InferenceThread(this.options, (thread, err) => this.replace(thread, err))
  }

  /**
   * A thread that died is replaced and given every loaded model again, and
   * those being loaded (the dead thread may have loaded one already, and the
   * load then succeeds without the fresh thread). A model whose file changed
   * since the threads read it is not read again: the fresh thread would hold
   * another model under the same key. It stays off that thread (its jobs go
   * to the threads that hold it) until it is loaded again; held by no thread,
   * it is unavailable.
   */
  private replace (dead: InferenceThread, _err: Error) {
    const i = this.threads.indexOf(dead)
    if (this.closed || i < 0) return
    const fresh = this.spawn()
    this.threads[i] = fresh
    fresh.busy = true
    const replays: Array<Promise<unknown>> = []
    for (const [key, msg] of this.loaded) {
      if (typeof msg.path === 'string' && fileSignature(msg.path) !== this.files.get(key)) {
        fresh.missing.add(key)
      } else {
        replays.push(fresh.call(msg).then(() => this.checkReplay(fresh, msg), () => { fresh.missing.add(key) }))
      }
    }
    for (const msg of this.loading) {
      const replay = fresh.call(msg)
      fresh.replays.set(msg, replay)
      replays.push(replay.then(() => this.checkReplay(fresh, msg), () => {}))
    }
    this.checkHeld(fresh.missing)
    Promise.all(replays)
      .finally(() => { fresh.replays.clear(); this.checkHeld(fresh.missing); fresh.busy = false; this.drain() })
  }

  /**
   * After a replacement loaded `msg`: the thread reads the file once it has
   * started, a while after `replace` (or the load it replays) checked it. A
   * file replaced meanwhile is another model under the key: the thread lets
   * it go, and takes none of its jobs. (A file replaced just after the read
   * is let go too: nothing tells the two apart.)
   */
  private checkReplay (thread: InferenceThread, msg: Record<string, unknown>): Promise<unknown> | undefined {
    const key = msg.key as string
    // Still loading: the load's own check (its file changed while the threads read it) covers this read.
    if (typeof msg.path !== 'string' || this.loaded.get(key) !== msg || fileSignature(msg.path) === this.files.get(key)) return
    // A later load of the key, under way, settles what the thread holds.
    for (const m of this.loading) if (m.key === key) return
    thread.missing.add(key)
    return thread.call({ op: 'unload', key }).catch(() => {})
  }

  /** Marks those of `keys` that no live thread holds as unavailable, failing their queued jobs. */
  private checkHeld (keys: Iterable<string>) {
    for (const key of keys) {
      if (this.lost.has(key) || this.threads.some(t => !t.exited && !t.missing.has(key))) continue
      const reason = 'its inference thread was replaced, and its file changed on disk since it was loaded; load the model again (SIGHUP reloads every model) to serve it'
      this.lost.set(key, reason)
      const q = this.queues.get(key)
      if (!q) continue
      void this.dropInline(q)
      for (const job of q.jobs.splice(0)) {
        if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort)
        job.reject(new ModelUnavailableError(key, reason))
      }
      q.items = q.inlineJobs.reduce((n, j) => n + j.items, 0)
    }
  }

  /**
   * The queue of a model being loaded or configured, kept from now on. One
   * not kept is another model's: left from a model unloaded while its jobs
   * settled, or holding jobs of a key never loaded. Reused, it would hand
   * that model's counters and options to this one, and its batch still
   * computing would count into this queue, and put its jobs back in it to
   * rerun on this model (see rerunAlone). A fresh queue takes its place; the
   * old one settles its batches and goes (forget leaves the key's new
   * queue). Its waiting jobs, never run, were sent for the key: the fresh
   * queue takes them, as a queue would that had never been left behind.
   */
  private keep (key: string): ModelQueue {
    const old = this.queues.get(key)
    if (old && !old.kept) {
      this.queues.delete(key)
      const fresh = this.queue(key)
      for (const job of old.jobs.splice(0)) {
        // Its abort listener takes it out of the old queue: enqueue adds one for the fresh queue.
        if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort)
        job.onAbort = undefined
        this.enqueue(fresh, job)
      }
      // Waiting for the end of the turn: the old main-thread session is gone (see unload), the threads take them.
      for (const job of old.inlineJobs.splice(0)) this.enqueue(fresh, job)
      old.items = 0
    }
    const q = this.queue(key)
    q.kept = true
    return q
  }

  private queue (key: string): ModelQueue {
    let q = this.queues.get(key)
    if (!q) {
      q = new ModelQueue(key, { ...this.defaults })
      this.queues.set(key, q)
    }
    return q
  }

  /**
   * Sets a model's batching and queue options (over the pool's defaults);
   * may be called before or after `load`, and again at any time.
   */
  configure (key: string, options: Partial<BatchOptions>): BatchOptions {
    const problems = validateBatchOptions(options)
    if (problems.length > 0) throw new RangeError(`invalid batching options for '${key}': ${problems.join('; ')}`)
    const q = this.keep(key)
    q.options = { ...q.options, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) }
    return { ...q.options }
  }

  /** A model's batching and queue options. */
  batchOptions (key: string): BatchOptions {
    return { ...(this.queues.get(key)?.options ?? this.defaults) }
  }

  /**
   * Loads a model into every thread; resolves with its metadata. All or
   * nothing: when a thread cannot load it (or its file changes while the
   * threads read it), the threads that did are put back as they were.
   */
  async load (key: string, source: string | Uint8Array): Promise<LoadedMetadata> {
    const msg = typeof source === 'string' ? { op: 'load', key, path: source } : { op: 'load', key, bytes: source }
    const file = typeof source === 'string' ? fileSignature(source) : undefined
    const previous = this.loaded.get(key)
    this.loading.add(msg)
    let results
    try {
      results = await Promise.allSettled(this.threads.map((_, i) => this.loadOn(i, msg)))
    } finally {
      this.loading.delete(msg)
    }
    const failed = results.find(r => r.status === 'rejected')
    const changed = typeof source === 'string' && fileSignature(source) !== file
    if (failed || changed) {
      await this.undoLoad(key, previous, results.map(r => r.status === 'fulfilled'))
      throw failed ? failed.reason : new Error('the model file changed while the inference threads read it; load it again')
    }
    this.loaded.set(key, msg)
    this.files.set(key, file)
    this.lost.delete(key)
    for (const t of this.threads) t.missing.delete(key)
    const reply = (results[0] as PromiseFulfilledResult<any>).value
    const meta = { inputs: reply.inputs, outputs: reply.outputs }
    const q = this.keep(key)
    q.shape = meta
    q.batches = modelBatches(meta)
    // Jobs the fresh queue took from an unloaded model's (see keep) go now:
    // that queue's delay no longer holds them.
    this.drain()
    // A reloaded model's cost and main-thread session are learnt afresh.
    await this.dropInline(q)
    q.usPerElement = undefined
    return meta
  }

  /**
   * Loads `msg` on the thread at `index`; if that thread dies meanwhile, its
   * replacement's load of it (a load under way is replayed) stands in.
   */
  private async loadOn (index: number, msg: Record<string, unknown>): Promise<any> {
    const thread = this.threads[index]
    try {
      return await thread.call(msg)
    } catch (err) {
      const fresh = this.threads[index]
      const replay = fresh.replays.get(msg)
      if (!thread.exited || fresh === thread || !replay) throw err
      return await replay
    }
  }

  /**
   * After a failed load, the threads that loaded it (`loaded[i]`) get the
   * previous model back, or lose the key when there was none. A previous
   * model whose file changed since cannot be read back: those threads go
   * without it.
   */
  private async undoLoad (key: string, previous: Record<string, unknown> | undefined, loaded: boolean[]) {
    const unchanged = previous && (typeof previous.path !== 'string' || fileSignature(previous.path) === this.files.get(key))
    await Promise.all(this.threads.map(async (t, i) => {
      if (!previous) return t.call({ op: 'unload', key }).catch(() => {})
      if (!loaded[i]) return
      if (!unchanged) return t.missing.add(key)
      await t.call(previous).catch(() => { t.missing.add(key) })
    }))
    if (previous) this.checkHeld([key])
  }

  async unload (key: string): Promise<void> {
    this.loaded.delete(key)
    this.files.delete(key)
    this.lost.delete(key)
    for (const t of this.threads) t.missing.delete(key)
    const q = this.queues.get(key)
    if (q) {
      await this.dropInline(q)
      // Inline jobs still waiting for the end of the turn go to the threads
      // then, and a batch computing settles its jobs here (one that fails is
      // not rerun: see rerunAlone): the queue stays until they have settled,
      // or until the key is loaded again (see keep).
      q.kept = false
      this.forget(q)
    }
    await Promise.all(this.threads.map(t => t.call({ op: 'unload', key }).catch(() => {})))
  }

  /**
   * Deletes a queue that is not kept (see ModelQueue.kept) once none of its
   * jobs waits or computes: left, it would hold an unloaded model's counters
   * and options for ever. (One replaced by a later load of the key meanwhile
   * is no longer in `queues`: the new one stays.)
   */
  private forget (q: ModelQueue) {
    if (q.kept || q.jobs.length > 0 || q.inlineJobs.length > 0 || q.inlineScheduled || q.computing > 0) return
    if (this.queues.get(q.key) === q) this.queues.delete(q.key)
  }

  /**
   * Queues one inference job; a free thread takes it, possibly batched with
   * other queued jobs for the same model. Rejects at once with OverloadedError
   * when the model's queue is full, and with AbortedError when `signal` fires
   * before the job reaches a thread.
   */
  run (key: string, feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'))
    const lost = this.lost.get(key)
    if (lost) return Promise.reject(new ModelUnavailableError(key, lost))
    if (options.signal?.aborted) return Promise.reject(new AbortedError(options.signal.reason))
    const q = this.queue(key)
    const rows = rowsOf(feeds)
    // A request of 0 rows still waits and runs: it counts as one item, or
    // the queue bound would never refuse any number of them.
    const items = Math.max(rows ?? 1, 1)
    if (this.full(q, items, options.continues)) {
      q.stats.refused++
      this.forget(q)
      return Promise.reject(new OverloadedError(key, q.items, q.options.maxQueueItems, 1, q.unfilled))
    }
    const inline = q.options.maxQueueItems > 0 && this.runsInline(q, feeds)
    return new Promise((resolve, reject) => {
      const job: Job = {
        key, feeds, outputs: options.outputs, signal: options.signal, transfer: options.transfer, resolve, reject,
        items, batchable: rows !== undefined && !holdsNothing(feeds) && !options.uncounted, enqueuedAt: performance.now(),
        uncounted: options.uncounted,
      }
      if (inline) {
        // Aborts are checked when the turn's inline batch runs: no listener.
        q.inlineJobs.push(job)
        q.items += items
        if (q.inlineScheduled) return
        q.inlineScheduled = true
        // Unloaded (the last run took one job), the first job of a turn runs
        // now: waiting for the end of the turn would only add a hop to a lone
        // request. Any other job waits for the end of the turn and its batch.
        if (q.inlineLastRun <= 1 && !q.inlineRanThisTurn) {
          q.inlineRanThisTurn = true
          setImmediate(() => { q.inlineRanThisTurn = false })
          this.runInline(q)
        } else {
          setImmediate(() => this.runInline(q))
        }
        return
      }
      this.enqueue(q, job)
      this.drain()
    })
  }

  /**
   * Whether a request of `items` would go over the model's queue bound, which
   * the rows its batches computing left unfilled add to (ModelQueue.unfilled). A
   * request bigger than the whole queue is still admitted into an empty one.
   * With a bound of 0 nothing waits: a request is admitted only when a thread
   * is free to start it now (a run that continues an admitted request waits:
   * see RunOptions.continues).
   */
  private full (q: ModelQueue, items: number, continues = false): boolean {
    if (q.options.maxQueueItems === 0) return !continues && (q.items > 0 || !this.threads.some(t => !t.busy && !t.exited && !t.missing.has(q.key)))
    return q.items > 0 && q.items + items > q.options.maxQueueItems + q.unfilled
  }

  /** Puts a job in its model's queue for the threads; its signal takes it out. */
  private enqueue (q: ModelQueue, job: Job, first = false) {
    const lost = this.lost.get(q.key)
    if (lost) return job.reject(new ModelUnavailableError(q.key, lost))
    if (job.signal) {
      const signal = job.signal
      job.onAbort ??= () => {
        q.remove(new Set([job]))
        if (!job.counted) q.stats.dropped++
        job.reject(new AbortedError(signal.reason))
        this.forget(q)
      }
      signal.addEventListener('abort', job.onAbort, { once: true })
    }
    if (first) q.jobs.unshift(job)
    else q.jobs.push(job)
    q.items += job.items
  }

  private mainRuntime?: Runtime

  /** Buffers for merging batches into (see SPARE_MIN_BYTES), largest first. */
  private spares: ArrayBuffer[] = []

  /** A spare buffer big enough for a merged input, if any, taken out of the spares. */
  private takeSpare = (type: Tensor['type'], length: number): Tensor['data'] | undefined => {
    const Ctor = TYPED_ARRAYS[type as keyof typeof TYPED_ARRAYS]
    const bytes = length * Ctor.BYTES_PER_ELEMENT
    if (bytes < SPARE_MIN_BYTES) return undefined
    // The smallest that fits (the spares are sorted largest first).
    let i = this.spares.length - 1
    while (i >= 0 && this.spares[i].byteLength < bytes) i--
    if (i < 0) return undefined
    return new Ctor(this.spares.splice(i, 1)[0], 0, length)
  }

  private keepSpares (buffers: ArrayBuffer[]) {
    for (const b of buffers) if (b.byteLength >= SPARE_MIN_BYTES) this.spares.push(b)
    this.spares.sort((a, b) => b.byteLength - a.byteLength).length = Math.min(this.spares.length, SPARES)
  }

  /** Whether this job is cheap enough to run here; starts loading the main-thread session once a model proves cheap. */
  private runsInline (q: ModelQueue, feeds: Record<string, Tensor>): boolean {
    const limit = this.options.inlineBelowUs ?? 0
    if (limit <= 0 || q.usPerElement === undefined || q.inline !== 'ready') return false
    // A model's measured cost varies from run to run (by half for a 4-element
    // Add on a shared core): one whose jobs run here leaves at twice the
    // limit, so one whose cost is near the limit does not go back and forth
    // (every job it sends to a thread costs the hop it was measured cheaper than).
    q.inlineNow = q.usPerElement * elementsOf(feeds) < (q.inlineNow ? 2 * limit : limit)
    return q.inlineNow
  }

  private loadInline (q: ModelQueue) {
    const msg = this.loaded.get(q.key)
    // Not kept: the queue of a model unloaded meanwhile, whose last batch ran
    // cheap. `msg` is then the model loaded again under its key, if any,
    // whose queue is another (see keep).
    if (!msg || !q.kept) return
    // The main thread reads the file now, maybe long after the threads did:
    // a file replaced meanwhile (before its reload) is another model.
    if (typeof msg.path === 'string' && fileSignature(msg.path) !== this.files.get(q.key)) {
      q.inline = 'off'
      return
    }
    const inlineKey = `${q.key}#inline${++this.inlineLoads}`
    q.inline = 'loading'
    q.inlineKey = inlineKey
    const runtime = this.mainRuntime ??= createRuntime(sessionOptions(this.options.intraOpThreads))
    runtime.load({ ...msg, key: inlineKey } as never).then(
      () => {
        if (q.inline === 'loading' && q.inlineKey === inlineKey) q.inline = 'ready'
        // Unloaded or reloaded while it loaded: not wanted any more.
        else return runtime.unload({ key: inlineKey })
      },
      () => { if (q.inlineKey === inlineKey) q.inline = 'off' },
    )
  }

  /** Releases a model's main-thread session, if it has one (or one is loading: it is released when loaded). */
  private async dropInline (q: ModelQueue) {
    const inlineKey = q.inlineKey
    q.inline = 'none'
    q.inlineKey = undefined
    if (inlineKey) await this.mainRuntime?.unload({ key: inlineKey })
  }

  /**
   * Runs the inline jobs gathered during one event-loop turn, as batches of
   * up to the model's max batch size, each predicted under INLINE_RUN_MAX_US.
   */
  private runInline (q: ModelQueue) {
    q.inlineScheduled = false
    const waiting = q.inlineJobs.splice(0)
    q.inlineLastRun = waiting.length
    for (const job of waiting) q.items -= job.items
    const live: Job[] = []
    for (const job of waiting) {
      if (!job.signal?.aborted) { live.push(job); continue }
      if (!job.counted) q.stats.dropped++
      job.reject(new AbortedError(job.signal.reason))
    }
    if (q.inline !== 'ready') {
      // The model was reloaded or unloaded meanwhile: the threads take them.
      for (const job of live) this.enqueue(q, job)
      this.drain()
      // Unloaded, with none of them left to run: its queue may go.
      return this.forget(q)
    }
    const budget = INLINE_RUN_MAX_US / Math.max(q.usPerElement ?? 0, 1e-3)
    while (live.length > 0) {
      const jobs = this.gather(q, live, budget)
      const taken = new Set(jobs)
      for (let i = live.length - 1; i >= 0; i--) if (taken.has(live[i])) live.splice(i, 1)
      this.compute(q, jobs, false, (feeds, outputs) => this.mainRuntime!.run({ key: q.inlineKey!, feeds, outputs }))
        .catch(err => failAll(jobs, err))
    }
  }

  /** Updates a model's cost per input element from one measured run. */
  private learnCost (q: ModelQueue, feeds: Record<string, Tensor>, computeUs: number | undefined, warmUp: boolean | undefined) {
    if (computeUs === undefined) return
    // A session's first run also allocates what later runs reuse: learnt only
    // when nothing better is known (the model's first run; not a second
    // thread's, nor the main-thread session's first).
    if (warmUp && q.usPerElement !== undefined) return
    const per = computeUs / Math.max(1, elementsOf(feeds))
    // One run in hundreds takes ten times the others (the thread preempted, a
    // page fault): a sample counts for at most twice the estimate, so one such
    // run does not move a cheap model off the main thread, while a model that
    // really got slower raises its estimate by a fifth each run.
    q.usPerElement = q.usPerElement === undefined ? per : 0.8 * q.usPerElement + 0.2 * Math.min(per, 2 * q.usPerElement)
    // A model that just ran under the limit gets its main-thread session now.
    if (q.inline === 'none' && computeUs < (this.options.inlineBelowUs ?? 0)) this.loadInline(q)
  }

  /**
   * The refusal a one-item request for `key` would get now, counted as
   * refused; undefined when it would be queued. Lets a route refuse in
   * `onRequest`, before the body is read and parsed.
   */
  refusal (key: string): OverloadedError | undefined {
    const q = this.queues.get(key)
    // A model no thread holds is not overloaded: its requests get ModelUnavailableError (503 MODEL_NOT_READY).
    if (!q || !this.full(q, 1) || this.lost.has(key)) return undefined
    q.stats.refused++
    // A refusal is expected, not a bug: no stack to capture (about 3 us, a
    // tenth of what an early refusal costs the main thread, paid thousands of
    // times a second under a flood).
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      return new OverloadedError(key, q.items, q.options.maxQueueItems, 1, q.unfilled)
    } finally {
      Error.stackTraceLimit = limit
    }
  }

  /** Threads computing right now. */
  get computing (): number {
    return this.threads.filter(t => t.busy && !t.exited).length
  }

  /** Jobs waiting for a thread (not counting the ones computing), over every model. */
  get queued (): number {
    let n = 0
    for (const q of this.queues.values()) n += q.jobs.length
    return n
  }

  /**
   * Whether `key` was loaded from `path`, the file is still the one read
   * (same inode, size and modification time), and a thread holds it (a lost
   * model has to be loaded again, file changed or not).
   */
  loadedFromFile (key: string, path: string): boolean {
    const file = this.files.get(key)
    return this.loaded.get(key)?.path === path && file !== undefined && file === fileSignature(path) && !this.lost.has(key)
  }

  /** Why `key` is held by no inference thread (see ModelUnavailableError); undefined while it is served. */
  unavailable (key: string): string | undefined {
    return this.lost.get(key)
  }

  /** Keys of the models loaded now (in every thread), in load order: what `stats` is worth asking about. */
  keys (): string[] {
    return [...this.loaded.keys()]
  }

  /** A model's counters. */
  stats (key: string): ModelStats {
    const q = this.queues.get(key)
    if (!q) return { queuedRequests: 0, queuedItems: 0, batches: 0, requests: 0, items: 0, largestBatch: 0, batchSizes: [], batchSizesSum: 0, dropped: 0, refused: 0, failed: 0, badInput: 0, inline: 0 }
    // Both count the inline jobs waiting for the end of the turn (q.items does).
    return { queuedRequests: q.jobs.length + q.inlineJobs.length, queuedItems: q.items, ...q.stats, batchSizes: [...q.stats.batchSizes] }
  }

  private drain () {
    for (const thread of this.threads) {
      if (thread.busy || thread.exited) continue
      const next = this.nextBatch(thread)
      if (next) this.dispatch(thread, next.queue, next.jobs)
    }
  }

  /**
   * The next batch for `thread`: from the model whose oldest job has waited longest, among
   * those ready to go (no max delay, a full batch, or the delay spent). When a
   * model is only waiting out its delay, a timer calls drain again.
   */
  private nextBatch (thread: InferenceThread): { queue: ModelQueue, jobs: Job[] } | undefined {
    const now = performance.now()
    let best: ModelQueue | undefined
    let wakeAt = Infinity
    for (const q of this.queues.values()) {
      if (q.jobs.length > 0) this.dropExpired(q, now)
      const head = q.jobs[0]
      if (!head || thread.missing.has(q.key)) continue
      const readyAt = head.enqueuedAt + q.options.maxDelayMs
      // A full queue cannot grow the batch either (a bound under the batch size): it goes now.
      // Nor can a model that does not batch (a fixed batch axis): with the
      // server's --max-queue-delay, its every request waited it out for nothing.
      const fills = Math.min(q.options.maxBatchItems, q.options.maxQueueItems)
      if (q.options.maxDelayMs > 0 && q.options.maxQueueItems > 0 && readyAt > now && q.items < fills && head.batchable && q.batches) {
        wakeAt = Math.min(wakeAt, readyAt)
        continue
      }
      if (!best || head.enqueuedAt < best.jobs[0].enqueuedAt) best = q
    }
    // Sooner than the timer set (another model's longer delay): moved up.
    if (wakeAt < this.delayAt) {
      clearTimeout(this.delayTimer)
      this.delayAt = wakeAt
      // Capped at setTimeout's longest delay: Node fires a longer one after 1 ms (and warns), every time.
      this.delayTimer = setTimeout(() => { this.delayAt = Infinity; this.drain() }, Math.min(MAX_TIMER_MS, Math.max(0, wakeAt - now)))
    }
    if (!best) return undefined
    const jobs = this.gather(best)
    best.remove(new Set(jobs))
    for (const job of jobs) {
      if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort)
    }
    return { queue: best, jobs }
  }

  /**
   * Drops the jobs of `q` whose deadline has passed though their signal has
   * not fired yet: its timer runs in the event loop's next timers phase,
   * after the thread's answer that called drain (under load, milliseconds
   * later), and the model computed requests already answered 504. One
   * comparison per queued job, when a thread is free.
   */
  private dropExpired (q: ModelQueue, now: number) {
    let expired: Set<Job> | undefined
    for (const job of q.jobs) {
      const at = job.signal?.expiresAt
      if (at !== undefined && at <= now) (expired ??= new Set()).add(job)
    }
    if (!expired) return
    q.remove(expired)
    for (const job of expired) {
      if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort)
      if (!job.counted) q.stats.dropped++
      job.reject(new AbortedError(new Error('its deadline passed before an inference thread was free')))
    }
    this.forget(q)
  }

  /**
   * The head job of `list` and the compatible jobs behind it, up to the
   * model's limits and to `elementBudget` input elements.
   */
  private gather (q: ModelQueue, list: Job[] = q.jobs, elementBudget = Infinity): Job[] {
    const head = list[0]
    const batch = [head]
    const { maxBatchItems, padValue, maxBatchTokens } = q.options
    if (!head.batchable || !q.batches || !q.shape || maxBatchItems <= 1) return batch
    let items = head.items
    let elements = elementBudget < Infinity ? elementsOf(head.feeds) : 0
    // Longest size per axis of each input so far, to bound padded tokens.
    const longest = new Map(Object.entries(head.feeds).map(([name, t]) => [name, t.dims.slice(1)]))
    const outputs = head.outputs?.join('\0')
    for (let i = 1; i < list.length && items < maxBatchItems; i++) {
      const job = list[i]
      if (!job.batchable || items + job.items > maxBatchItems || job.outputs?.join('\0') !== outputs) continue
      const jobElements = elementBudget < Infinity ? elementsOf(job.feeds) : 0
      if (elements + jobElements > elementBudget) continue
      if (!compatible(head.feeds, job.feeds, q.shape, padValue)) continue
      if (maxBatchTokens !== undefined) {
        let cost = 0
        for (const [name, dims] of longest) {
          const perRow = dims.reduce((a, d, axis) => a * Math.max(d, job.feeds[name].dims[axis + 1]), 1)
          cost = Math.max(cost, perRow * (items + job.items))
        }
        if (cost > maxBatchTokens) continue
      }
      for (const [name, dims] of longest) dims.forEach((d, axis) => { dims[axis] = Math.max(d, job.feeds[name].dims[axis + 1]) })
      batch.push(job)
      items += job.items
      elements += jobElements
    }
    return batch
  }

  /**
   * The rows a batch of `jobs` left room for: up to the batch limit in rows,
   * and in padded tokens (maxBatchTokens) at the length of its longest row, so
   * that what is lent is what such a batch could really have taken. None for
   * a run that goes alone, nor for a model whose rows of other lengths never
   * merge (a dynamic axis besides the batch and no pad value): the rows
   * behind would each run alone.
   */
  private roomLeft (q: ModelQueue, jobs: Job[]): number {
    const { maxBatchItems, maxBatchTokens, padValue } = q.options
    if (!jobs[0].batchable || !q.batches || !q.shape || maxBatchItems <= 1) return 0
    const varies = q.shape.inputs.some(i => i.shape.slice(1).some(isDynamic))
    if (varies && padValue === undefined) return 0
    const items = jobs.reduce((n, j) => n + j.items, 0)
    let rows = maxBatchItems
    if (maxBatchTokens !== undefined) {
      // The batch's cost per row (its longest row, per input), as gather counts it.
      let perRow = 1
      for (const name of Object.keys(jobs[0].feeds)) {
        const longest = jobs[0].feeds[name].dims.slice(1)
        for (const j of jobs) j.feeds[name].dims.slice(1).forEach((d, axis) => { longest[axis] = Math.max(longest[axis], d) })
        perRow = Math.max(perRow, longest.reduce((a, d) => a * d, 1))
      }
      rows = Math.min(rows, Math.floor(maxBatchTokens / perRow))
    }
    return Math.max(0, rows - items)
  }

  private dispatch (thread: InferenceThread, q: ModelQueue, jobs: Job[]) {
    thread.busy = true
    // Rows this batch could have taken, lent to the queue while it computes
    // (ModelQueue.unfilled): only when it took every job waiting. One that
    // left jobs behind was cut by a limit (rows, padded tokens, shapes that do
    // not merge), as a flood's batches are; and a run that goes alone (a
    // rerun, a model that does not batch) takes no more either.
    const room = q.jobs.length === 0 ? this.roomLeft(q, jobs) : 0
    q.unfilled += room
    // The thread is free as soon as it answers: it takes the next batch while
    // this one's outputs are split and handed out (and a model that queues
    // nothing admits again before its callers hear back).
    let freed = false
    const free = () => {
      if (!freed) { freed = true; thread.busy = false; q.unfilled -= room }
      this.drain()
    }
    void this.compute(q, jobs, true, async (feeds, outputs, merged) => {
      const transfer: ArrayBuffer[] = []
      // A merge's buffers are transferred: the pool made them (a merge into a
      // spare may be shorter than its buffer; the whole spare goes). A lone
      // job's feeds are the caller's, which may read or send them again
      // (moved to the thread, they would be left empty), so they are copied,
      // unless the caller let them go (RunOptions.transfer); even then, only
      // buffers the feeds fill: a view into a larger one (a slice of a
      // request body) is copied. Small ones are copied too: for a few
      // kilobytes, detaching and re-wrapping a buffer costs more than copying it.
      for (const t of merged || jobs[0].transfer ? Object.values(feeds) : []) {
        if (ArrayBuffer.isView(t.data) && t.data.byteLength >= TRANSFER_MIN_BYTES && t.data.buffer instanceof ArrayBuffer &&
            (merged || (t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength)) && !transfer.includes(t.data.buffer)) {
          transfer.push(t.data.buffer)
        }
      }
      // A merge's buffers come back with the answer (or the failure): the next merge reuses them.
      const reply = await thread.call({ op: 'run', key: q.key, feeds, outputs }, transfer)
        .catch(err => {
          const inputs = returnedInputs.get(err) ?? []
          // Read once: the error goes on to the callers, who need not hold them.
          returnedInputs.delete(err)
          if (merged) this.keepSpares(inputs)
          throw err
        })
        .finally(free)
      if (merged) this.keepSpares(reply.inputs ?? [])
      return reply
    }).catch(err => failAll(jobs, err)).finally(free)
  }

  /**
   * Runs a batch of jobs as one session.run, on a thread or inline, and
   * hands each job its part of the outputs.
   */
  private async compute (q: ModelQueue, jobs: Job[], onThread: boolean, runner: Runner): Promise<void> {
    // Counted while it computes: a batch that fails puts its jobs back in q,
    // which must outlive it (see forget).
    q.computing++
    try {
      await this.computeBatch(q, jobs, onThread, runner)
    } finally {
      q.computing--
      this.forget(q)
    }
  }

  private async computeBatch (q: ModelQueue, jobs: Job[], onThread: boolean, runner: Runner): Promise<void> {
    let merged
    // Spares this merge took: a merge that throws gives them back.
    const taken: ArrayBuffer[] = []
    const scratch = (type: Tensor['type'], length: number) => {
      const data = this.takeSpare(type, length)
      if (ArrayBuffer.isView(data)) taken.push(data.buffer as ArrayBuffer)
      return data
    }
    try {
      // On a thread, into the spare buffers the last merges' runs gave back (an inline run's are small).
      merged = jobs.length > 1 ? mergeFeeds(jobs.map(j => j.feeds), q.shape!, q.options.padValue, onThread ? scratch : undefined) : undefined
    } catch {
      this.keepSpares(taken)
      // Feeds that do not merge (data of another kind than their type, such
      // as numbers for int64, which ONNX Runtime takes): each request runs
      // alone, as it would have unbatched, rather than all of them failing.
      return this.rerunAlone(q, jobs, onThread, false)
    }
    const feeds = merged?.feeds ?? jobs[0].feeds
    const items = jobs.reduce((n, j) => n + j.items, 0)
    // A warm-up runs alone (not batchable): none of it is counted.
    const counting = jobs[0].uncounted !== true
    if (counting) this.countBatch(q, jobs, items, onThread)
    let result
    try {
      result = await runner(feeds, jobs[0].outputs, merged !== undefined)
    } catch (err) {
      if (jobs.length === 1) {
        const message = (err as Error).message
        const bad = badInputOf(message, takesShapes(q.shape) ? feeds : undefined)
        // A client's values or shape ONNX Runtime refused are the client's error, not the model's.
        if (counting && bad) q.stats.badInput++
        else if (counting) q.stats.failed++
        return jobs[0].reject(bad ?? (onThread ? err as Error : new InferenceError(message)))
      }
      // One bad request must not fail its neighbours: rerun each alone, first
      // in line, so only the culprit gets the error.
      return this.rerunAlone(q, jobs, onThread)
    }
    this.learnCost(q, feeds, result.computeUs, result.warmUp)
    if (!merged) return jobs[0].resolve(result.outputs)
    let parts
    try {
      parts = splitOutputs(result.outputs, merged, q.shape!)
    } catch {
      // Outputs that do not split back (an output not batched along axis 0,
      // say): each request runs alone, as it would have unbatched.
      return this.rerunAlone(q, jobs, onThread)
    }
    jobs.forEach((job, i) => job.resolve(parts[i]))
  }

  /** Counts a batch about to run: its requests and items (unless they were counted with a batch before), its size. */
  private countBatch (q: ModelQueue, jobs: Job[], items: number, onThread: boolean) {
    q.stats.batches++
    if (!isRerun(jobs)) {
      q.stats.requests += jobs.length
      q.stats.items += items
      if (!onThread) q.stats.inline += jobs.length
    }
    q.stats.largestBatch = Math.max(q.stats.largestBatch, items)
    // The power-of-two bucket of `items` (1 -> 0, 2 -> 1, 3..4 -> 2, 5..8 -> 3...).
    const bucket = items <= 1 ? 0 : 32 - Math.clz32(items - 1)
    const sizes = q.stats.batchSizes
    while (sizes.length <= bucket) sizes.push(0)
    sizes[bucket]++
    q.stats.batchSizesSum += items
  }

  /**
   * Puts a batch's jobs back, first in line, each to run alone. They stay
   * counted as computed with the batch, and their reruns are not counted
   * again: taking them back out of the counters would make /metrics'
   * counters go down, which Prometheus reads as a restart from zero.
   * (Not `counted` when the batch never ran: their reruns are counted then.)
   */
  private rerunAlone (q: ModelQueue, jobs: Job[], onThread: boolean, counted = true) {
    // A batch that ran on a model unloaded meanwhile (its queue is not kept):
    // the threads hold nothing under its key any more, or a model loaded
    // again since, which its jobs were not sent to. Rerun alone, each would
    // fail as not loaded, or get another model's answer: each fails now.
    const unloaded = counted && !q.kept
    for (const job of [...jobs].reverse()) {
      job.batchable = false
      job.counted = counted
      if (this.closed) { job.reject(new Error('inference pool is closed')); continue }
      if (job.signal?.aborted) { job.reject(new AbortedError(job.signal.reason)); continue }
      if (unloaded) {
        q.stats.failed++
        job.reject(new InferenceError(`model '${q.key}' is not loaded: it was unloaded while a batch of ${jobs.length} of its requests computed, which then had to run each alone`))
        continue
      }
      if (onThread) this.enqueue(q, job, true)
      else { q.inlineJobs.unshift(job); q.items += job.items }
    }
    if (!onThread && !q.inlineScheduled && q.inlineJobs.length > 0) {
      q.inlineScheduled = true
      setImmediate(() => this.runInline(q))
    }
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.delayTimer)
    for (const q of this.queues.values()) {
      for (const job of q.jobs.splice(0)) {
        if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort)
        job.reject(new Error('inference pool is closed'))
      }
      for (const job of q.inlineJobs.splice(0)) job.reject(new Error('inference pool is closed'))
      q.items = 0
    }
    await Promise.all(this.threads.map(t => t.stop()))
    for (const q of this.queues.values()) await this.dropInline(q)
  }
}

/** A job run again alone after its batch failed or did not split back: counted with that batch already. */
const isRerun = (jobs: Job[]) => jobs.length === 1 && jobs[0].counted === true

/**
 * A batch that failed outside ONNX Runtime and its rerun path (a bug in the
 * pool's own code; feeds that do not merge rerun alone, see compute): each of
 * its jobs gets the error.
 */
function failAll (jobs: Job[], err: unknown) {
  const error = new InferenceError(`cannot run a batch of ${jobs.length} requests: ${(err as Error)?.message ?? err}`)
  for (const job of jobs) job.reject(error)
}

/** A file's identity and version (inode, size, modification time); undefined when it cannot be read. */
export function fileSignature (path: string): string | undefined {
  try {
    const s = statSync(path)
    return `${s.ino}:${s.size}:${s.mtimeMs}`
  } catch {
    return undefined
  }
}

/**
 * Whether an input of `feeds` holds no element (a 0 among its dimensions).
 * Its other dimensions are then bounded by nothing the client sent (an OIP
 * shape of [0, 2147483647] comes with no data): merged, it would pad its
 * neighbours to them (a body of bytes made a batch of gigabytes). It runs
 * alone, costing nothing. Checked once per request: a few comparisons.
 */
function holdsNothing (feeds: Record<string, Tensor>): boolean {
  for (const t of Object.values(feeds)) if (t.dims.includes(0)) return true
  return false
}

/** Elements over every input (the unit a model's cost is learnt in). */
function elementsOf (feeds: Record<string, Tensor>): number {
  let n = 0
  for (const t of Object.values(feeds)) n += t.dims.reduce((a, d) => a * d, 1)
  return n
}
