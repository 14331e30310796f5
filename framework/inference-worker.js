// An inference thread: owns one ONNX Runtime session per loaded model and runs
// one job at a time. `session.run` is synchronous native code, so it runs here,
// off the main thread, which stays free for HTTP, health and timeouts.
// Protocol (see framework/pool.ts): messages {op, id, ...} in; {id, ok, ...} out.
import { parentPort, workerData } from 'node:worker_threads'
import { readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { TRANSFER_MIN_BYTES, createRuntime } from './inference-core.js'

const runtime = createRuntime(workerData?.sessionOptions ?? {})
if (workerData?.nice > 0) lowerPriority(workerData.nice)
if (process.env.ONNX_SERVE_ORPHAN_WATCH) watchForOrphaning(process.env.ONNX_SERVE_ORPHAN_WATCH)

/**
 * In a cluster worker (serve.ts): `watch` is "<its pid>:<primary's pid>:<ms>"
 * (another process, which inherited the variable, is not watched). Once the
 * process's parent is another (the primary died), the process is killed `ms`
 * later, if it has not exited by then: its drain is bounded on the main
 * thread, whose timers cannot fire while a handler holds its event loop.
 * This thread's loop turns (between runs: a run in progress delays it).
 */
function watchForOrphaning (watch) {
  const [worker, primary, ms] = watch.split(':').map(Number)
  if (worker !== process.pid) return
  const timer = setInterval(() => {
    if (process.ppid === primary) return
    clearInterval(timer)
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), ms)
  }, 1000)
  // The thread's life is its parent port's: the watch keeps nothing alive.
  timer.unref()
}

/**
 * Makes this thread `nice` steps nicer than the process (Linux: niceness is
 * per thread), so that when it shares a core with the main thread the
 * scheduler runs the main thread first: a batch computing for tens of
 * milliseconds then delays neither HTTP (refusals, health checks, answers)
 * nor timeouts. Elsewhere, or when not allowed, the thread keeps the
 * process's priority.
 */
function lowerPriority (nice) {
  try {
    // /proc/thread-self is <pid>/task/<tid>; setpriority on a tid sets that thread alone.
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (!Number.isInteger(tid) || tid <= 0) return
    setPriority(tid, Math.min(19, getPriority(tid) + nice))
  } catch {}
}


parentPort.on('message', async msg => {
  try {
    if (msg.op === 'load') {
      parentPort.postMessage({ id: msg.id, ok: true, ...await runtime.load(msg) })
    } else if (msg.op === 'run') {
      const { outputs, computeUs, warmUp } = await runtime.run(msg)
      const transfer = []
      for (const t of Object.values(outputs)) {
        if (ArrayBuffer.isView(t.data) && t.data.byteLength >= TRANSFER_MIN_BYTES && !transfer.includes(t.data.buffer)) transfer.push(t.data.buffer)
      }
      // The inputs go back too, to be freed on the main thread (or reused
      // there for the next merged batch: pool.ts). Left here they are garbage
      // this thread's GC collects late: it allocates few objects, so it
      // rarely collects, and a batch's inputs are large (700 kB for
      // /ner's 64 sentences): the default server's RSS rose 30 MB under load.
      const inputs = inputBuffers(msg.feeds, transfer)
      transfer.push(...inputs)
      parentPort.postMessage({ id: msg.id, ok: true, outputs, computeUs, warmUp, inputs }, transfer)
    } else if (msg.op === 'unload') {
      await runtime.unload(msg)
      parentPort.postMessage({ id: msg.id, ok: true })
    } else {
      throw new Error(`unknown op ${msg.op}`)
    }
  } catch (err) {
    const message = String(err?.message ?? err)
    // A failed run's inputs go back as well (a merged batch's may be the
    // pool's spare buffer).
    const inputs = msg.op === 'run' ? inputBuffers(msg.feeds, []) : []
    try {
      parentPort.postMessage({ id: msg.id, ok: false, message, inputs }, inputs)
    } catch {
      parentPort.postMessage({ id: msg.id, ok: false, message })
    }
  }
})

/** The large buffers of a run's feeds, to send back (not those in `taken`). */
function inputBuffers (feeds, taken) {
  const inputs = []
  for (const t of Object.values(feeds ?? {})) {
    const buffer = t?.data?.buffer
    if (buffer instanceof ArrayBuffer && buffer.byteLength >= TRANSFER_MIN_BYTES && !taken.includes(buffer) && !inputs.includes(buffer)) {
      inputs.push(buffer)
    }
  }
  return inputs
}
