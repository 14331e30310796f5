// An inference thread: owns one ONNX Runtime session per loaded model and runs
// one job at a time. `session.run` is synchronous native code, so it runs here,
// off the main thread, which stays free for HTTP, health and timeouts.
// Protocol (see framework/pool.ts): messages {op, id, ...} in; {id, ok, ...} out.
import { parentPort, workerData } from 'node:worker_threads'
import { TRANSFER_MIN_BYTES, createRuntime } from './inference-core.js'

const runtime = createRuntime(workerData?.sessionOptions ?? {})


parentPort.on('message', async msg => {
  try {
    if (msg.op === 'load') {
      parentPort.postMessage({ id: msg.id, ok: true, ...await runtime.load(msg) })
    } else if (msg.op === 'run') {
      const { outputs, computeUs } = await runtime.run(msg)
      const transfer = []
      for (const t of Object.values(outputs)) {
        if (ArrayBuffer.isView(t.data) && t.data.byteLength >= TRANSFER_MIN_BYTES && !transfer.includes(t.data.buffer)) transfer.push(t.data.buffer)
      }
      parentPort.postMessage({ id: msg.id, ok: true, outputs, computeUs }, transfer)
    } else if (msg.op === 'unload') {
      await runtime.unload(msg)
      parentPort.postMessage({ id: msg.id, ok: true })
    } else {
      throw new Error(`unknown op ${msg.op}`)
    }
  } catch (err) {
    parentPort.postMessage({ id: msg.id, ok: false, message: String(err?.message ?? err) })
  }
})
