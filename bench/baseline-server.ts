// The baseline: what a Node user writes by hand. One fastify handler, one
// onnxruntime-node session, no batching, no queue, no deadlines.
//   node --import tsx bench/baseline-server.ts <model.onnx> <input> <output> <float32|int64> <width> <port>
import Fastify from 'fastify'
import * as ort from 'onnxruntime-node'

const [path, input, output, type, width, port] = process.argv.slice(2)
const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1 })
const app = Fastify({ bodyLimit: 16 * 1024 * 1024 })

app.post('/infer', async (request) => {
  const rows = (request.body as { inputs: number[][] }).inputs
  const flat = rows.flat()
  const data = type === 'int64' ? BigInt64Array.from(flat, v => BigInt(v)) : Float32Array.from(flat)
  const result = await session.run({ [input]: new ort.Tensor(type as 'float32', data, [rows.length, Number(width)]) })
  const out = result[output].data as Float32Array
  const per = out.length / rows.length
  return { outputs: rows.map((_, i) => Array.from(out.subarray(i * per, (i + 1) * per))) }
})

await app.listen({ port: Number(port), host: '127.0.0.1' })
process.stdout.write('listening\n')
