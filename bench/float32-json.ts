// Microbenchmark of float32ArrayJson against another copy of the module (the
// code before a change), in one process, in alternating rounds, so that the
// shared host's drift falls on both alike: read the median of the paired
// ratios, not the times.
//
//   git show main:framework/float32-json.ts > /tmp/float32-json-old.ts
//   taskset -c 1 node --import tsx bench/float32-json.ts /tmp/float32-json-old.ts [rounds (21)]
//
// Values: the bench tagger's and mlp's outputs through ONNX Runtime (64
// examples each, as bench/models.ts makes them), softmax probabilities of the
// tagger's logits, and logits of a trained model's spread (log-uniform
// 0.001-10, both signs), in arrays made as rowsFromTensor makes them.
import ort from 'onnxruntime-node'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { float32ArrayJson } from '../framework/float32-json.ts'
import { seededRandom } from '../framework/onnx-builder.ts'
import { rowsFromTensor } from '../framework/tensor.ts'
import { benchModels, examplesOf } from './models.ts'

type Write = typeof float32ArrayJson
const other = process.argv[2]
if (!other) throw new Error('usage: bench/float32-json.ts OTHER_MODULE [rounds]')
const old = (await import(pathToFileURL(resolve(other)).href) as { float32ArrayJson: Write }).float32ArrayJson
const ROUNDS = Number(process.argv[3] ?? 21)

const cases: Record<string, number[][]> = {}
for (const m of benchModels().filter(m => m.name === 'tagger' || m.name === 'mlp')) {
  const session = await ort.InferenceSession.create(m.bytes)
  const ex = examplesOf(m, 64)
  const data = m.type === 'int64' ? BigInt64Array.from(ex.flat(), BigInt) : Float32Array.from(ex.flat())
  const result = await session.run({ [m.input]: new ort.Tensor(m.type, data, [64, m.width]) })
  cases[m.name] = rowsFromTensor(result[m.output].data as Float32Array, 64)
}
cases.probabilities = rowsFromTensor(Float32Array.from(cases.tagger.flatMap(row => {
  const p: number[] = []
  for (let t = 0; t < row.length; t += 17) {
    const l = row.slice(t, t + 17)
    const top = Math.max(...l)
    const e = l.map(v => Math.exp(v - top))
    const sum = e.reduce((a, b) => a + b)
    for (const v of e) p.push(v / sum)
  }
  return p
})), 64)
const r = seededRandom(5)
cases['wide logits'] = rowsFromTensor(Float32Array.from({ length: 64 * 544 }, () => (r() < 0.5 ? -1 : 1) * 10 ** (r() * 4 - 3)), 64)

for (const [name, rows] of Object.entries(cases)) {
  for (const row of rows) if (old(row) !== float32ArrayJson(row)) throw new Error(`${name}: the two write different text`)
}
let sink = 0
/** Microseconds per array. */
function time (write: Write, rows: number[][], reps: number): number {
  const t0 = process.hrtime.bigint()
  for (let k = 0; k < reps; k++) for (const row of rows) sink += write(row)!.length
  return Number(process.hrtime.bigint() - t0) / (reps * rows.length) / 1000
}
const median = (a: number[]) => a.slice().sort((x, y) => x - y)[a.length >> 1]
for (const [name, rows] of Object.entries(cases)) {
  const reps = Math.max(1, Math.round(20_000 / rows[0].length))
  time(old, rows, reps)
  time(float32ArrayJson, rows, reps)
  const a: number[] = []
  const b: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    if (i % 2) { b.push(time(float32ArrayJson, rows, reps)); a.push(time(old, rows, reps)) } else { a.push(time(old, rows, reps)); b.push(time(float32ArrayJson, rows, reps)) }
  }
  console.log(`${name.padEnd(13)} (${rows[0].length}): other ${median(a).toFixed(2)} us, this ${median(b).toFixed(2)} us, ` +
    `other/this ${median(a.map((x, i) => x / b[i])).toFixed(3)} (median of ${ROUNDS} paired rounds)`)
}
if (sink < 0) console.log(sink)
