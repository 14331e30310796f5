// float16 bits for the taggers' weight tables (nlp/float16.ts), checked
// against ONNX Runtime's own Cast from float32 to float16.
import t from 'tap'
import * as ort from 'onnxruntime-node'
import { buildModel, seededRandom } from '../../framework/onnx-builder.ts'
import { fromFloat16, fromFloat16Bits, toFloat16, toFloat16Bits } from '../../nlp/float16.ts'

t.test('every float16 value converts back to its own bits', async t => {
  let wrong = 0
  let nan = 0
  for (let h = 0; h < 0x10000; h++) {
    const v = fromFloat16Bits(h)
    if (Number.isNaN(v)) { nan++; continue }
    if (toFloat16Bits(v) !== h) wrong++
  }
  t.equal(wrong, 0)
  t.equal(nan, 2 * 1023, 'exponent 31 with a mantissa: NaN')
  t.equal(fromFloat16Bits(0x3c00), 1)
  t.equal(fromFloat16Bits(0x7bff), 65504)
  t.equal(fromFloat16Bits(0x0001), 2 ** -24)
  t.equal(fromFloat16Bits(0xfc00), -Infinity)
  t.ok(Object.is(fromFloat16Bits(0x8000), -0))
})

t.test('rounding matches ONNX Runtime Cast(float32 -> float16)', async t => {
  const edges = [
    0, -0, 1, -1, 65504, 65519.99, 65520, 1e6, -1e6, Infinity, -Infinity, NaN,
    2 ** -14, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2047.5, 2048.5, 0.1, 1 / 3,
  ]
  const random = seededRandom(5)
  const scales = [200, 1e-4, 1e5, 2e-7, 70]
  const n = 100_000
  const x = new Float32Array(edges.length + n)
  x.set(edges)
  for (let i = 0; i < n; i++) x[edges.length + i] = (random() - 0.5) * scales[i % scales.length]
  const session = await ort.InferenceSession.create(buildModel({
    name: 'cast', opset: 17,
    inputs: [{ name: 'x', type: 'float32', shape: [x.length] }],
    outputs: [{ name: 'y', type: 'float16', shape: [x.length] }],
    nodes: [{ op: 'Cast', inputs: ['x'], outputs: ['y'], attributes: { to: 10 } }],
  }))
  const ours = toFloat16(x)
  const theirs = (await session.run({ x: new ort.Tensor('float32', x, [x.length]) })).y.data as Uint16Array
  const wrong: string[] = []
  for (let i = 0; i < x.length; i++) if (ours[i] !== theirs[i]) wrong.push(`${x[i]}: ${ours[i].toString(16)} against ${theirs[i].toString(16)}`)
  t.same(wrong.slice(0, 5), [], `${wrong.length} of ${x.length} values differ`)
  const back = fromFloat16(ours.subarray(0, 3))
  t.same(Array.from(back), [0, -0, 1])
  await session.release()
})
