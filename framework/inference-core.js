// The one module that calls ONNX Runtime: a set of sessions keyed by model,
// and the three operations on them (load, run, unload). Inference threads
// (inference-worker.js) each own one runtime; the pool (pool.ts) keeps one on
// the main thread for models too cheap to be worth the hop to a thread.
//
// Plain JavaScript on purpose: a worker thread starts without a TypeScript
// loader, which keeps thread start-up fast under any runner.
import * as ort from 'onnxruntime-node'

/** Buffers smaller than this are copied between threads rather than transferred: for a few kilobytes, detaching and re-wrapping costs more than copying. */
export const TRANSFER_MIN_BYTES = 16 * 1024

/** Options every session gets: parallelism comes from the inference threads, not from inside one run. */
export function sessionOptions (intraOpThreads = 1) {
  return { intraOpNumThreads: intraOpThreads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' }
}

function describe (meta) {
  return meta.map(m => ({ name: m.name, type: m.isTensor ? m.type : 'non-tensor', shape: m.isTensor ? [...m.shape] : [] }))
}

// Tensors by name are kept in objects without a prototype: a model's input
// or output may be named '__proto__', which a plain object takes for its
// prototype, or 'toString', which it answers from Object.prototype.
function toOrt (feeds) {
  const out = Object.create(null)
  for (const [name, t] of Object.entries(feeds)) out[name] = new ort.Tensor(t.type, t.data, t.dims)
  return out
}

function fromOrt (results, names) {
  const out = Object.create(null)
  for (const name of names) {
    const t = results[name]
    out[name] = { type: t.type, data: t.data, dims: [...t.dims] }
  }
  return out
}

/** Whether a plain object answers this name from its prototype. */
const inherited = name => name in Object.prototype

/**
 * Runs a session; the results by output name, with the names asked for (all
 * the model's when none are). onnxruntime-common's session.run keeps the
 * outputs to fetch and its results in plain objects, and the binding looks
 * names up through their prototypes: an output named '__proto__' is never
 * computed, and one named 'toString' that is not asked for is taken for a
 * tensor given to fill (the run fails). For a model with such outputs the
 * session's handler (the binding's run, which session.run wraps) is called
 * with objects without a prototype; the binding sets a '__proto__' result
 * as its answer's prototype, where it is taken back from.
 */
/**
 * ONNX Runtime writes a failed run to stderr itself, in colour, outside the
 * JSON log (one line per bad request a client sends). The failure comes back
 * as the run's error all the same: the server answers it (a 400 for an index
 * the input led out of range) or logs it (a 500, with its reason).
 */
const RUN_OPTIONS = { logSeverityLevel: 4 }

/**
 * Starts `run` (a session's run) and times the native computation alone, in
 * microseconds: onnxruntime-node's handler calls the binding's synchronous
 * run from a setImmediate callback it schedules as the run starts
 * (backend.js), so that callback is timed. Timing the whole await also
 * counted the wait for that callback: the rest of the event-loop turn on the
 * main thread, and on a thread that shares its core, the main thread's work
 * meanwhile (a 4-element Add measured 50-80 us on a thread where the binding
 * takes 15). `computeUs` is undefined if the binding is not reached that way
 * (another onnxruntime-node): the caller then times the await.
 */
function timedRun (run) {
  const schedule = globalThis.setImmediate
  const timing = { computeUs: undefined, done: undefined }
  globalThis.setImmediate = (callback, ...args) => schedule(() => {
    const started = performance.now()
    try {
      return callback(...args)
    } finally {
      timing.computeUs = (performance.now() - started) * 1000
    }
  })
  try {
    timing.done = run()
  } finally {
    globalThis.setImmediate = schedule
  }
  return timing
}

async function runSession (session, feeds, outputs) {
  const names = outputs ?? session.outputNames
  if (!session.outputNames.some(inherited)) return fromOrt(await (outputs ? session.run(feeds, outputs, RUN_OPTIONS) : session.run(feeds, RUN_OPTIONS)), names)
  const fetches = Object.create(null)
  for (const name of names) fetches[name] = null
  const results = await session.handler.run(feeds, fetches, RUN_OPTIONS)
  if (names.includes('__proto__') && !Object.hasOwn(results, '__proto__')) {
    Object.defineProperty(results, '__proto__', { value: Object.getPrototypeOf(results), enumerable: true })
  }
  return fromOrt(results, names)
}

/** Sessions by key, with the options every session of this runtime gets. */
export function createRuntime (sessionOptions = {}) {
  const sessions = new Map()
  /** Sessions that have run once. */
  const warm = new WeakSet()
  // Loads and unloads of one key run one after the other, in the order they
  // came: a thread handles its messages concurrently, and an unload that
  // overtook the load before it (a failed load being undone) would leave
  // that load's session behind.
  const chains = new Map()
  const inOrder = (key, op) => {
    const done = (chains.get(key) ?? Promise.resolve()).then(op, op)
    const tail = done.catch(() => {})
    chains.set(key, tail)
    tail.then(() => { if (chains.get(key) === tail) chains.delete(key) })
    return done
  }
  return {
    /** Loads (or replaces) a model; returns its input and output metadata. */
    load ({ key, bytes, path, options }) {
      return inOrder(key, async () => {
        const session = await ort.InferenceSession.create(bytes ?? path, { ...sessionOptions, ...options })
        await sessions.get(key)?.release()
        sessions.set(key, session)
        return { inputs: describe(session.inputMetadata), outputs: describe(session.outputMetadata) }
      })
    },
    /**
     * Runs a model; `computeUs` is the time ONNX Runtime computed for
     * (timedRun), and `warmUp` is true on a session's first run, which also
     * allocates what later runs reuse (milliseconds for a 4-element Add).
     */
    async run ({ key, feeds, outputs }) {
      const session = sessions.get(key)
      if (!session) throw new Error(`model ${key} is not loaded in this thread`)
      const started = performance.now()
      const timing = timedRun(() => runSession(session, toOrt(feeds), outputs ?? undefined))
      const results = await timing.done
      const warmUp = !warm.has(session)
      warm.add(session)
      return { outputs: results, computeUs: timing.computeUs ?? (performance.now() - started) * 1000, warmUp }
    },
    unload ({ key }) {
      return inOrder(key, async () => {
        await sessions.get(key)?.release()
        sessions.delete(key)
      })
    },
    has (key) {
      return sessions.has(key)
    },
  }
}
