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

function toOrt (feeds) {
  const out = {}
  for (const [name, t] of Object.entries(feeds)) out[name] = new ort.Tensor(t.type, t.data, t.dims)
  return out
}

function fromOrt (results) {
  const out = {}
  for (const [name, t] of Object.entries(results)) out[name] = { type: t.type, data: t.data, dims: [...t.dims] }
  return out
}

/** Sessions by key, with the options every session of this runtime gets. */
export function createRuntime (sessionOptions = {}) {
  const sessions = new Map()
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
    /** Runs a model; `computeUs` is the time session.run took. */
    async run ({ key, feeds, outputs }) {
      const session = sessions.get(key)
      if (!session) throw new Error(`model ${key} is not loaded in this thread`)
      const started = performance.now()
      const results = await session.run(toOrt(feeds), outputs ?? undefined)
      return { outputs: fromOrt(results), computeUs: (performance.now() - started) * 1000 }
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
