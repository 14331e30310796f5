// An inference thread: owns one ONNX Runtime session per loaded model and runs
// one job at a time. `session.run` is synchronous native code, so it runs here,
// never on the main thread, which stays free for HTTP, health and timeouts.
//
// Plain JavaScript on purpose: a worker thread starts without a TypeScript
// loader, which keeps thread start-up fast under any runner.
// Protocol (see framework/pool.ts): messages {op, id, ...} in; {id, ok, ...} out.
import { parentPort, workerData } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'

const sessions = new Map()
const sessionOptions = workerData?.sessionOptions ?? {}

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
  const transfer = []
  for (const [name, t] of Object.entries(results)) {
    const data = t.data
    out[name] = { type: t.type, data, dims: [...t.dims] }
    // Small outputs are copied: cheaper than transferring (see TRANSFER_MIN_BYTES in pool.ts).
    if (ArrayBuffer.isView(data) && data.byteLength >= 16 * 1024 && !transfer.includes(data.buffer)) transfer.push(data.buffer)
  }
  return { out, transfer }
}

async function handle (msg) {
  switch (msg.op) {
    case 'load': {
      const source = msg.bytes ?? msg.path
      const session = await ort.InferenceSession.create(source, { ...sessionOptions, ...msg.options })
      sessions.get(msg.key)?.release()
      sessions.set(msg.key, session)
      return { inputs: describe(session.inputMetadata), outputs: describe(session.outputMetadata) }
    }
    case 'run': {
      const session = sessions.get(msg.key)
      if (!session) throw new Error(`model ${msg.key} is not loaded in this thread`)
      const results = await session.run(toOrt(msg.feeds), msg.outputs ?? undefined)
      return fromOrt(results)
    }
    case 'unload': {
      await sessions.get(msg.key)?.release()
      sessions.delete(msg.key)
      return {}
    }
    default:
      throw new Error(`unknown op ${msg.op}`)
  }
}

parentPort.on('message', async msg => {
  try {
    const result = await handle(msg)
    if (msg.op === 'run') {
      parentPort.postMessage({ id: msg.id, ok: true, outputs: result.out }, result.transfer)
    } else {
      parentPort.postMessage({ id: msg.id, ok: true, ...result })
    }
  } catch (err) {
    parentPort.postMessage({ id: msg.id, ok: false, message: String(err?.message ?? err) })
  }
})
