// A pool of inference threads. Every thread holds a session of every loaded
// model; each thread runs one job at a time, taken from one FIFO queue that
// lives here on the main thread. Keeping the queue here (rather than in the
// threads' message ports) is what lets a job be dropped before it computes when
// its request has been aborted or has passed its deadline.
//
// Why not piscina: loads must reach every thread (one session per thread), and
// the queue must stay inspectable on the main thread for deadlines and, later,
// batching. piscina hides both behind its own task queue.
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import type { TensorInfo, Tensor } from './tensor.ts'

const WORKER_URL = new URL('./inference-worker.js', import.meta.url)

export interface PoolOptions {
  /** Number of inference threads. */
  threads: number
  /** Threads ONNX Runtime may use inside one session.run (intra-op). */
  intraOpThreads?: number
}

export interface RunOptions {
  signal?: AbortSignal
  /** Restrict the outputs computed and returned (all when omitted). */
  outputs?: string[]
}

export interface LoadedMetadata { inputs: TensorInfo[], outputs: TensorInfo[] }

interface Job {
  key: string
  feeds: Record<string, Tensor>
  outputs?: string[]
  signal?: AbortSignal
  resolve: (value: Record<string, Tensor>) => void
  reject: (err: Error) => void
}

interface Pending { resolve: (msg: any) => void, reject: (err: Error) => void }

/** The job was dropped before it computed, because its signal fired. */
export class AbortedError extends Error {
  constructor (reason: unknown) {
    super(reason instanceof Error ? reason.message : 'aborted', { cause: reason })
    this.name = 'AbortedError'
  }
}

/** ONNX Runtime rejected the job (bad feeds, a kernel failure...). */
export class InferenceError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'InferenceError'
  }
}

class InferenceThread {
  readonly worker: Worker
  busy = false
  private nextId = 0
  private pending = new Map<number, Pending>()
  exited = false

  constructor (options: PoolOptions, private onExit: (thread: InferenceThread, err: Error) => void) {
    this.worker = new Worker(WORKER_URL, {
      workerData: {
        sessionOptions: {
          intraOpNumThreads: options.intraOpThreads ?? 1,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        },
      },
    })
    this.worker.on('message', (msg: { id: number, ok: boolean, message?: string }) => {
      const p = this.pending.get(msg.id)
      this.pending.delete(msg.id)
      if (msg.ok) p?.resolve(msg)
      else p?.reject(new InferenceError(msg.message ?? 'inference failed'))
    })
    const fail = (err: Error) => {
      if (this.exited) return
      this.exited = true
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
      this.onExit(this, err)
    }
    this.worker.on('error', fail)
    this.worker.on('exit', code => fail(new Error(`inference thread exited with code ${code}`)))
  }

  call (msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<any> {
    if (this.exited) return Promise.reject(new Error('inference thread has exited'))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ ...msg, id }, transfer)
    })
  }
}

export class InferencePool {
  private threads: InferenceThread[] = []
  private queue: Job[] = []
  private loaded = new Map<string, Record<string, unknown>>()
  private closed = false
  readonly size: number

  constructor (private options: PoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${options.threads}`)
    }
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

  /** A thread that died is replaced and given every loaded model again. */
  private replace (dead: InferenceThread, _err: Error) {
    const i = this.threads.indexOf(dead)
    if (this.closed || i < 0) return
    const fresh = this.spawn()
    this.threads[i] = fresh
    fresh.busy = true
    Promise.all([...this.loaded.entries()].map(([key, msg]) => fresh.call(msg)))
      .catch(() => {})
      .finally(() => { fresh.busy = false; this.drain() })
  }

  /** Loads a model into every thread; resolves with its metadata. */
  async load (key: string, source: string | Uint8Array): Promise<LoadedMetadata> {
    const msg = typeof source === 'string' ? { op: 'load', key, path: source } : { op: 'load', key, bytes: source }
    const replies = await Promise.all(this.threads.map(t => t.call(msg)))
    this.loaded.set(key, msg)
    return { inputs: replies[0].inputs, outputs: replies[0].outputs }
  }

  async unload (key: string): Promise<void> {
    this.loaded.delete(key)
    await Promise.all(this.threads.map(t => t.call({ op: 'unload', key }).catch(() => {})))
  }

  /** Queues one inference job; a free thread takes it in FIFO order. */
  run (key: string, feeds: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'))
    if (options.signal?.aborted) return Promise.reject(new AbortedError(options.signal.reason))
    return new Promise((resolve, reject) => {
      this.queue.push({ key, feeds, outputs: options.outputs, signal: options.signal, resolve, reject })
      this.drain()
    })
  }

  /** Jobs waiting for a thread (not counting the ones computing). */
  get queued (): number { return this.queue.length }

  private drain () {
    for (const thread of this.threads) {
      if (thread.busy || thread.exited) continue
      const job = this.next()
      if (!job) return
      this.dispatch(thread, job)
    }
  }

  private next (): Job | undefined {
    while (this.queue.length > 0) {
      const job = this.queue.shift()!
      if (job.signal?.aborted) {
        job.reject(new AbortedError(job.signal.reason))
        continue
      }
      return job
    }
    return undefined
  }

  private dispatch (thread: InferenceThread, job: Job) {
    thread.busy = true
    const transfer: ArrayBuffer[] = []
    for (const t of Object.values(job.feeds)) {
      // Only transfer buffers the job owns outright; views into a shared
      // buffer (a slice of a request body) are copied by postMessage instead.
      if (ArrayBuffer.isView(t.data) && t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength &&
          t.data.buffer instanceof ArrayBuffer && !transfer.includes(t.data.buffer)) {
        transfer.push(t.data.buffer)
      }
    }
    thread.call({ op: 'run', key: job.key, feeds: job.feeds, outputs: job.outputs }, transfer)
      .then(msg => job.resolve(msg.outputs), job.reject)
      .finally(() => {
        thread.busy = false
        this.drain()
      })
  }

  async close (): Promise<void> {
    this.closed = true
    for (const job of this.queue.splice(0)) job.reject(new Error('inference pool is closed'))
    await Promise.all(this.threads.map(t => t.worker.terminate()))
  }
}
