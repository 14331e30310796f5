// The ceiling: session.run in a loop, in-process, no HTTP. Prints one JSON
// line per batch size; the batch-64 line also gives what writing one example's
// outputs as JSON costs, which no server can batch away: `answerUs` with
// JSON.stringify of a plain array (what the hand-written server does), and
// `answerF32Us` in float32's shortest digits (what the framework does for a
// `format: 'float'` schema), over the 64 different rows in turn, in
// alternating slices.
// argv: <model.onnx> <input> <float32|int64> <width> <seconds> [tokens]
// With `tokens` (the taggers of /ner and /pos), an example is [tokens, width]
// feature ids rather than a row of `width`, and no answerUs is printed (those
// answers are decoded tags, not the scores).
import * as ort from 'onnxruntime-node'
import { float32ArrayJson } from '../framework/float32-json.ts'

const [path, input, type, width, seconds, tokens] = process.argv.slice(2)
const example = tokens === undefined ? [Number(width)] : [Number(tokens), Number(width)]
const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' })
for (const batch of [1, 64]) {
  const n = batch * example.reduce((a, b) => a * b)
  const data = type === 'int64' ? BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 7919) % 20000)) : Float32Array.from({ length: n }, (_, i) => Math.sin(i))
  const feeds = { [input]: new ort.Tensor(type as 'float32', data, [batch, ...example]) }
  for (let i = 0; i < 20; i++) await session.run(feeds)
  const times: number[] = []
  const end = performance.now() + Number(seconds) * 1000
  while (performance.now() < end) {
    const t0 = performance.now()
    await session.run(feeds)
    times.push(performance.now() - t0)
  }
  times.sort((a, b) => a - b)
  const total = times.reduce((a, b) => a + b, 0) / 1000
  process.stdout.write(JSON.stringify({ batch, callsPerSec: times.length / total, examplesPerSec: times.length * batch / total, p50: times[Math.floor(times.length / 2)], p99: times[Math.floor(times.length * 0.99)], ...(batch > 1 && tokens === undefined ? await answerCosts(feeds) : {}) }) + '\n')
}

/**
 * Microseconds to write one row of the outputs as JSON, over the batch's rows
 * in turn, each way: ten alternating slices of 100 ms each, medians.
 */
async function answerCosts (feeds: Record<string, ort.Tensor>): Promise<{ answerUs: number, answerF32Us: number }> {
  const out = Object.values(await session.run(feeds))[0]
  const data = out.data as Float32Array
  const per = data.length / out.dims[0]
  const rows = Array.from({ length: out.dims[0] }, (_, r) => Array.from(data.subarray(r * per, (r + 1) * per)))
  const slice = (write: (row: number[]) => unknown) => {
    let n = 0
    const end = performance.now() + 100
    const t0 = performance.now()
    while (performance.now() < end) {
      for (const row of rows) write(row)
      n += rows.length
    }
    return (performance.now() - t0) * 1000 / n
  }
  const stringify: number[] = []
  const f32: number[] = []
  for (let i = 0; i < 10; i++) {
    stringify.push(slice(row => JSON.stringify(row)))
    f32.push(slice(row => float32ArrayJson(row)))
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]
  return { answerUs: median(stringify), answerF32Us: median(f32) }
}
