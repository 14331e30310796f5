// The pure half of batching: compatibility, merge with padding, split with
// cropping, limits from config.json.
import t from 'tap'
import {
  batchOptionsFromConfig, compatible, copyBlock, float16Bits, mergeFeeds, modelBatches, rowsOf, splitOutputs, validateBatchOptions,
  type ModelShape,
} from '../../framework/batcher.ts'
import type { Tensor } from '../../framework/tensor.ts'

const seqShape: ModelShape = {
  inputs: [{ name: 'ids', type: 'int64', shape: ['batch', 'tokens'] }],
  outputs: [
    { name: 'scores', type: 'float32', shape: ['batch', 'tokens', 3] },
    { name: 'total', type: 'float32', shape: ['batch', 3] },
  ],
}
const ids = (rows: number[][]): Record<string, Tensor> =>
  ({ ids: { type: 'int64', data: BigInt64Array.from(rows.flat().map(BigInt)), dims: [rows.length, rows[0].length] } })

t.test('rowsOf: the inputs\' common first dimension', async t => {
  t.equal(rowsOf(ids([[1, 2], [3, 4], [5, 6]])), 3)
  t.equal(rowsOf({ a: { type: 'float32', data: new Float32Array(2), dims: [2] }, b: { type: 'float32', data: new Float32Array(3), dims: [3] } }), undefined)
  t.equal(rowsOf({ s: { type: 'float32', data: new Float32Array(1), dims: [] } }), undefined)
})

t.test('modelBatches needs a dynamic first axis everywhere', async t => {
  t.ok(modelBatches(seqShape))
  t.notOk(modelBatches({ inputs: [{ name: 'x', type: 'float32', shape: [1, 1] }], outputs: [{ name: 'y', type: 'float32', shape: [1, 1] }] }))
  t.ok(modelBatches({ inputs: [{ name: 'x', type: 'float32', shape: [-1, 4] }], outputs: [{ name: 'y', type: 'float32', shape: [-1, 4] }] }))
})

t.test('modelBatches: axis names that put the batch elsewhere than first refuse batching', async t => {
  const x = { name: 'x', type: 'float32' as const, shape: ['batch', 'seq'] }
  t.notOk(modelBatches({ inputs: [x], outputs: [{ name: 'y', type: 'float32', shape: ['seq', 'batch'] }] }), 'a time-major output')
  t.notOk(modelBatches({ inputs: [x], outputs: [{ name: 'y', type: 'float32', shape: ['seq', 'n'] }] }), 'an output led by the sequence')
  t.notOk(modelBatches({ inputs: [x], outputs: [{ name: 'y', type: 'float32', shape: ['n', 'batch'] }] }), 'the batch name further in')
  t.notOk(modelBatches({ inputs: [x, { name: 'k', type: 'float32', shape: ['seq'] }], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 'seq'] }] }), 'an input led by another input\'s sequence')
  t.ok(modelBatches({ inputs: [x], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 'seq', 'seq'] }] }))
  t.ok(modelBatches({ inputs: [x], outputs: [{ name: 'y', type: 'float32', shape: ['y_dynamic_axes_1', 'seq'] }] }), 'another name for the batch still batches')
  t.ok(modelBatches({ inputs: [{ name: 'x', type: 'float32', shape: ['', ''] }], outputs: [{ name: 'y', type: 'float32', shape: ['', ''] }] }), 'unnamed axes (ONNX Runtime reports them as \'\') say nothing')
})

t.test('compatible: equal shapes always; other lengths only with a pad value on dynamic axes', async t => {
  t.ok(compatible(ids([[1, 2]]), ids([[3, 4], [5, 6]]), seqShape))
  t.notOk(compatible(ids([[1, 2]]), ids([[3, 4, 5]]), seqShape))
  t.ok(compatible(ids([[1, 2]]), ids([[3, 4, 5]]), seqShape, 0))
  const fixed: ModelShape = { inputs: [{ name: 'ids', type: 'int64', shape: ['batch', 2] }], outputs: seqShape.outputs }
  t.notOk(compatible(ids([[1, 2]]), ids([[3, 4, 5]]), fixed, 0), 'a fixed axis is never padded')
  t.notOk(compatible(ids([[1, 2]]), { ids: { type: 'int32', data: new Int32Array(2), dims: [1, 2] } }, seqShape, 0), 'types must agree')
  t.notOk(compatible(ids([[1, 2]]), { other: ids([[1, 2]]).ids }, seqShape, 0), 'names must agree')
  t.notOk(compatible(ids([[1, 2]]), ids([[3, 4, 5]]), seqShape, 0.5), 'an int64 input is not padded with 0.5')
  t.ok(compatible(ids([[1, 2]]), ids([[3, 4]]), seqShape, 0.5), 'nor needs to be at the same length')
})

t.test('merge pads to the longest and split crops back', async t => {
  const batch = [ids([[1, 2]]), ids([[3, 4, 5], [6, 7, 8]]), ids([[9]])]
  const merged = mergeFeeds(batch, seqShape, 0)
  t.same(merged.rows, [1, 2, 1])
  t.same(merged.feeds.ids.dims, [4, 3])
  t.same(Array.from(merged.feeds.ids.data as BigInt64Array, Number), [1, 2, 0, 3, 4, 5, 6, 7, 8, 9, 0, 0])
  t.same(merged.padded.get('tokens'), { axis: 1, size: 3, sizes: [2, 3, 1] })

  // Fake outputs: scores[b, k, j] = id * 10 + j; total[b, j] = b * 10 + j.
  const idsData = Array.from(merged.feeds.ids.data as BigInt64Array, Number)
  const scores = new Float32Array(4 * 3 * 3).map((_, i) => idsData[Math.floor(i / 3)] * 10 + (i % 3))
  const total = new Float32Array(4 * 3).map((_, i) => Math.floor(i / 3) * 10 + (i % 3))
  const parts = splitOutputs({
    scores: { type: 'float32', data: scores, dims: [4, 3, 3] },
    total: { type: 'float32', data: total, dims: [4, 3] },
  }, merged, seqShape)
  t.equal(parts.length, 3)
  t.same(parts[0].scores.dims, [1, 2, 3])
  t.same(Array.from(parts[0].scores.data as Float32Array), [10, 11, 12, 20, 21, 22])
  t.same(parts[1].scores.dims, [2, 3, 3])
  t.same(Array.from(parts[1].scores.data as Float32Array).slice(0, 3), [30, 31, 32])
  t.same(Array.from(parts[2].scores.data as Float32Array), [90, 91, 92])
  t.same(parts[1].total.dims, [2, 3])
  t.same(Array.from(parts[1].total.data as Float32Array), [10, 11, 12, 20, 21, 22])
  t.same(Array.from(parts[2].total.data as Float32Array), [30, 31, 32])
})

t.test('merge into a scratch array holding old data: the same feeds, padding included', async t => {
  const batch = [ids([[1, 2]]), ids([[3, 4, 5], [6, 7, 8]]), ids([[9]])]
  const buffer = new BigInt64Array(20).fill(-1n).buffer
  const asked: Array<[string, number]> = []
  for (const padValue of [0, 7]) {
    const merged = mergeFeeds(batch, seqShape, padValue, (type, length) => { asked.push([type, length]); return new BigInt64Array(buffer, 0, length) })
    t.equal((merged.feeds.ids.data as BigInt64Array).buffer, buffer, 'merged into the scratch array')
    t.same(merged.feeds.ids.dims, [4, 3])
    t.same(Array.from(merged.feeds.ids.data as BigInt64Array, Number), [1, 2, padValue, 3, 4, 5, 6, 7, 8, 9, padValue, padValue])
    t.same(merged, mergeFeeds(batch, seqShape, padValue), 'what a fresh array gets')
  }
  t.same(asked, [['int64', 12], ['int64', 12]])
  // Same lengths: no padding, every element copied over.
  const same = mergeFeeds([ids([[1, 2]]), ids([[3, 4]])], seqShape, 0, (_type, length) => new BigInt64Array(buffer, 0, length))
  t.same(Array.from(same.feeds.ids.data as BigInt64Array, Number), [1, 2, 3, 4])
})

t.test('split refuses outputs that do not follow the batch', async t => {
  const merged = mergeFeeds([ids([[1]]), ids([[2]])], seqShape)
  t.throws(() => splitOutputs({ total: { type: 'float32', data: new Float32Array(3), dims: [1, 3] } }, merged, seqShape), /1 rows for a batch of 2/)
})

t.test('a batch of one passes feeds and outputs through untouched', async t => {
  const one = ids([[1, 2]])
  const merged = mergeFeeds([one], seqShape, 0)
  t.equal(merged.feeds.ids, one.ids)
  const out = { total: { type: 'float32' as const, data: new Float32Array(3), dims: [1, 3] } }
  t.equal(splitOutputs(out, merged, seqShape)[0], out)
})

t.test('unnamed dynamic axes pad and crop by position', async t => {
  const shape: ModelShape = {
    inputs: [{ name: 'x', type: 'float32', shape: [-1, -1] }],
    outputs: [{ name: 'y', type: 'float32', shape: [-1, -1] }],
  }
  const a = { x: { type: 'float32' as const, data: new Float32Array([1]), dims: [1, 1] } }
  const b = { x: { type: 'float32' as const, data: new Float32Array([2, 3]), dims: [1, 2] } }
  const merged = mergeFeeds([a, b], shape, -1)
  t.same(Array.from(merged.feeds.x.data as Float32Array), [1, -1, 2, 3])
  const parts = splitOutputs({ y: merged.feeds.x }, merged, shape)
  t.same(Array.from(parts[0].y.data as Float32Array), [1])
  t.same(Array.from(parts[1].y.data as Float32Array), [2, 3])
})

t.test('a fixed output axis is never cropped, even where an unnamed input axis was padded to its size', async t => {
  const shape: ModelShape = {
    inputs: [{ name: 'x', type: 'float32', shape: ['', ''] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['', 3] }, { name: 'z', type: 'float32', shape: ['', '', ''] }],
  }
  const a = { x: { type: 'float32' as const, data: new Float32Array([1, 2]), dims: [1, 2] } }
  const b = { x: { type: 'float32' as const, data: new Float32Array([3, 4, 5]), dims: [1, 3] } }
  const merged = mergeFeeds([a, b], shape, 0)
  t.same([...merged.padded.keys()], ['#1'], 'ONNX Runtime\'s \'\' is no name: the axis is known by its position')
  const y = { type: 'float32' as const, data: new Float32Array([1, 2, 3, 4, 5, 6]), dims: [2, 3] }
  t.same(splitOutputs({ y }, merged, shape)[0].y.dims, [1, 3], 'the fixed axis of 3 is kept whole')
  // z [2, 3, 3]: axis 1 follows x's padded axis by position; axis 2 is as long, at another position.
  const z = { type: 'float32' as const, data: new Float32Array(18), dims: [2, 3, 3] }
  t.throws(() => splitOutputs({ z }, merged, shape), /cannot tell whether axis 2 of output 'z' follows a padded input axis/)
})

t.test('two inputs padding the same unnamed position to other lengths: outputs there cannot be split', async t => {
  const shape: ModelShape = {
    inputs: [{ name: 'a', type: 'float32', shape: ['', ''] }, { name: 'b', type: 'float32', shape: ['', ''] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['', ''] }],
  }
  const f = (a: number, b: number) => ({
    a: { type: 'float32' as const, data: new Float32Array(a), dims: [1, a] },
    b: { type: 'float32' as const, data: new Float32Array(b), dims: [1, b] },
  })
  const merged = mergeFeeds([f(4, 2), f(3, 4)], shape, 0)
  t.ok(merged.padded.get('#1')?.ambiguous)
  t.throws(() => splitOutputs({ y: { type: 'float32', data: new Float32Array(8), dims: [2, 4] } }, merged, shape), /cannot tell/)
  const same = mergeFeeds([f(4, 4), f(3, 3)], shape, 0)
  t.notOk(same.padded.get('#1')?.ambiguous, 'the same lengths on both: no doubt')
  t.same(splitOutputs({ y: { type: 'float32', data: new Float32Array(8), dims: [2, 4] } }, same, shape)[1].y.dims, [1, 3])
})

t.test('strings stack but never pad', async t => {
  const shape: ModelShape = { inputs: [{ name: 's', type: 'string', shape: ['b', 'n'] }], outputs: [{ name: 'o', type: 'string', shape: ['b', 'n'] }] }
  const a = { s: { type: 'string' as const, data: ['a', 'b'], dims: [1, 2] } }
  const b = { s: { type: 'string' as const, data: ['c'], dims: [1, 1] } }
  t.notOk(compatible(a, b, shape, 0))
  const merged = mergeFeeds([a, a], shape)
  t.same(merged.feeds.s.data, ['a', 'b', 'a', 'b'])
  t.same(splitOutputs({ o: merged.feeds.s }, merged, shape)[1].o.data, ['a', 'b'])
})

t.test('copyBlock copies the common region of n-d blocks', async t => {
  const src = Float32Array.from([1, 2, 3, 4, 5, 6]) // [2, 3]
  const dst = new Float32Array(4) // [2, 2]
  copyBlock(src, [2, 3], dst, [2, 2])
  t.same(Array.from(dst), [1, 2, 4, 5])
})

t.test('options are checked, and config.json names map to them', async t => {
  t.same(validateBatchOptions({ maxBatchItems: 8, maxQueueItems: 10, maxDelayMs: 2, padValue: 0 }), [])
  t.match(validateBatchOptions({ maxBatchItems: 0 }), [/maxBatchItems must be a positive integer/])
  t.match(validateBatchOptions({ maxDelayMs: -1 }), [/maxDelayMs must be a number >= 0/])
  t.same(validateBatchOptions({ maxQueueItems: 0 }), [], 'a queue of 0: nothing waits')
  t.match(validateBatchOptions({ maxQueueItems: -1 }), [/maxQueueItems must be an integer >= 0, got -1/])
  t.match(validateBatchOptions({ maxQueueItems: 2.5 }), [/maxQueueItems must be an integer >= 0, got 2.5/])
  t.same(batchOptionsFromConfig({ maxQueueItems: 0 }), { maxQueueItems: 0 })
  t.match(validateBatchOptions({ padValue: 'x' as never }), [/padValue must be a finite number/])
  t.same(batchOptionsFromConfig({ maxBatchSize: 16, maxQueueDelayMs: 1, padValue: 0, labels: [] }), { maxBatchItems: 16, maxDelayMs: 1, padValue: 0 })
  t.throws(() => batchOptionsFromConfig({ maxBatchSize: 1.5 }), /maxBatchSize must be a positive integer/)
})

t.test('float16Bits: a number as float16 bits, rounded to nearest even', async t => {
  const cases: Array<[number, number]> = [
    [0, 0], [-0, 0x8000], [1, 0x3c00], [-0.5, 0xb800], [0.1, 0x2e66], [-10000, 0xf0e2],
    [65504, 0x7bff], [65520, 0x7c00], [1e9, 0x7c00], // the largest float16, then infinity
    [2 ** -14, 0x0400], [2 ** -24, 1], [1.5 * 2 ** -24, 2], [0.5 * 2 ** -24, 0], // subnormals, ties to even
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], // ties to even
  ]
  for (const [value, bits] of cases) t.equal(float16Bits(value), bits, String(value))
  // Rounded from the number itself, not from its float32 first: a value just
  // off a float16 tie, which float32 rounds onto the tie, rounds once, to
  // the nearer side.
  const once: Array<[number, number]> = [
    [1 + 2 ** -11 + 2 ** -30, 0x3c01], [1 + 3 * 2 ** -11 - 2 ** -30, 0x3c01],
    [2 ** -25 + 2 ** -50, 1], [-(1 + 2 ** -11 + 2 ** -30), 0xbc01],
  ]
  for (const [value, bits] of once) t.equal(float16Bits(value), bits, `rounded once: ${value}`)
  const padded = mergeFeeds([
    { x: { type: 'float16', data: Uint16Array.from([0x4000, 0x4200]), dims: [1, 2] } },
    { x: { type: 'float16', data: Uint16Array.from([0x4000]), dims: [1, 1] } },
  ], { inputs: [{ name: 'x', type: 'float16', shape: ['batch', 'len'] }], outputs: [] }, -1)
  t.same(Array.from(padded.feeds.x.data as Uint16Array), [0x4000, 0x4200, 0x4000, 0xbc00], 'padded with -1')
})
