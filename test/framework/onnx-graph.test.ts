import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildModel, type GraphSpec, type NodeSpec } from '../../framework/onnx-builder.ts'
import { indexLimits } from '../../framework/onnx-graph.ts'

const dir = mkdtempSync(join(tmpdir(), 'onnx-graph-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

/** Writes a model and reads its index limits. */
function limitsOf (spec: Partial<GraphSpec> & Pick<GraphSpec, 'nodes'>) {
  const path = join(dir, `m${++files}.onnx`)
  writeFileSync(path, buildModel({
    name: 'g',
    inputs: [{ name: 'ids', type: 'int64', shape: ['batch', 'n'] }],
    outputs: [{ name: 'out', type: 'float32', shape: ['batch', 'n', 2] }],
    ...spec,
  }))
  return indexLimits(path)
}

const table = (name: string, rows: number, cols = 2) => ({ name, type: 'float32' as const, dims: [rows, cols], data: new Float32Array(rows * cols) })
const gather = (data: string, indices: string, out: string, attributes: NodeSpec['attributes'] = { axis: 0 }, name?: string): NodeSpec =>
  ({ op: 'Gather', inputs: [data, indices], outputs: [out], attributes, name })

t.test('an input that indexes a table: its rows along the Gather axis (0, 1 or negative)', async t => {
  t.same(limitsOf({ initializers: [table('table', 10)], nodes: [gather('table', 'ids', 'out', { axis: 0 }, 'lookup')] }),
    [{ input: 'ids', limit: 10, table: 'table', node: 'lookup' }])
  t.same(limitsOf({ initializers: [table('table', 10)], nodes: [gather('table', 'ids', 'out', {})] })[0].limit, 10, 'axis 0 by default')
  t.same(limitsOf({ initializers: [table('table', 3, 7)], nodes: [gather('table', 'ids', 'out', { axis: 1 })] })[0].limit, 7)
  t.same(limitsOf({ initializers: [table('table', 3, 7)], nodes: [gather('table', 'ids', 'out', { axis: -1 })] })[0].limit, 7)
  t.same(limitsOf({ initializers: [table('table', 3, 7)], nodes: [gather('table', 'ids', 'out', { axis: 2 })] }), [], 'an axis past the table')
})

t.test('an input feeding two tables gets the smaller limit; each input its own', async t => {
  const limits = limitsOf({
    inputs: [{ name: 'ids', type: 'int64', shape: ['batch', 'n'] }, { name: 'tags', type: 'int32', shape: ['batch', 'n'] }],
    initializers: [table('big', 50), table('small', 5), table('tagTable', 12)],
    nodes: [gather('big', 'ids', 'a'), gather('small', 'ids', 'b'), gather('tagTable', 'tags', 'c'), { op: 'Sum', inputs: ['a', 'b', 'c'], outputs: ['out'] }],
  })
  t.same(limits.map(l => [l.input, l.limit, l.table]), [['ids', 5, 'small'], ['tags', 12, 'tagTable']])
})

t.test('no limit when the table or the indices are not a fixed table and an input', async t => {
  const two = [{ name: 'ids', type: 'int64' as const, shape: ['n'] }, { name: 'x', type: 'float32' as const, shape: ['n', 2] }]
  t.same(limitsOf({ inputs: two, nodes: [gather('x', 'ids', 'out')] }), [], 'the table is an input')
  t.same(limitsOf({ inputs: [two[1]], initializers: [table('table', 10), { name: 'ids', type: 'int64', dims: [1], data: new BigInt64Array([1n]) }], nodes: [gather('table', 'ids', 'out')] }), [], 'the indices are an initializer')
  t.same(limitsOf({ inputs: [two[0], { name: 'table', type: 'float32', shape: [10, 2] }], initializers: [table('table', 10)], nodes: [gather('table', 'ids', 'out')] }), [],
    'the table is an initializer listed as an input too (a default the caller may override)')
  t.same(limitsOf({ initializers: [table('table', 10), { name: 'one', type: 'int64', dims: [1], data: new BigInt64Array([1n]) }], nodes: [{ op: 'Add', inputs: ['ids', 'one'], outputs: ['i'] }, gather('table', 'i', 'out')] }), [],
    'indices computed from the input (Add): not its values')
  t.same(limitsOf({ initializers: [table('table', 10)], nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['out'], domain: 'com.example' }] }), [], 'another domain\'s Gather')
  t.same(limitsOf({ initializers: [table('table', 10)], nodes: [{ op: 'GatherND', inputs: ['table', 'ids'], outputs: ['out'] }] }), [], 'not GatherND (each index position has its own limit)')
})

t.test('an input that reaches the lookup through ops that pass its values on', async t => {
  const int32 = [{ name: 'ids', type: 'int32' as const, shape: ['batch', 'n'] }]
  const shape = { name: 'shape', type: 'int64' as const, dims: [1], data: new BigInt64Array([-1n]) }
  const chain = limitsOf({
    initializers: [table('table', 10), shape],
    nodes: [
      { op: 'Identity', inputs: ['ids'], outputs: ['a'] },
      { op: 'Reshape', inputs: ['a', 'shape'], outputs: ['b'] },
      { op: 'Cast', inputs: ['b'], outputs: ['c'], attributes: { to: 7 } },
      gather('table', 'c', 'out', { axis: 0 }, 'lookup'),
    ],
  })
  t.same(chain, [{ input: 'ids', limit: 10, table: 'table', node: 'lookup' }], 'Identity, Reshape (its shape input is not the data), Cast to int64')
  t.same(limitsOf({ inputs: int32, initializers: [table('table', 10)], nodes: [{ op: 'Cast', inputs: ['ids'], outputs: ['i'], attributes: { to: 7 } }, gather('table', 'i', 'out')] })[0]?.limit, 10,
    'int32 widened to int64')
  t.same(limitsOf({ inputs: int32, initializers: [table('table', 10)], nodes: [{ op: 'Cast', inputs: ['ids'], outputs: ['i'], attributes: { to: 6 } }, gather('table', 'i', 'out')] })[0]?.limit, 10,
    'int32 cast to int32')
  t.same(limitsOf({ initializers: [table('table', 10)], nodes: [{ op: 'Cast', inputs: ['ids'], outputs: ['i'], attributes: { to: 6 } }, gather('table', 'i', 'out')] }), [],
    'int64 narrowed to int32: a large id may wrap into range, so the input\'s values are not the indices')
  t.same(limitsOf({ inputs: [{ name: 'ids', type: 'float32', shape: ['n'] }], initializers: [table('table', 10)], nodes: [{ op: 'Cast', inputs: ['ids'], outputs: ['i'], attributes: { to: 7 } }, gather('table', 'i', 'out')] }), [],
    'float32 cast to int64: truncated, not the values')
  t.same(limitsOf({
    initializers: [table('table', 10), { name: 'axes', type: 'int64', dims: [1], data: new BigInt64Array([0n]) }],
    nodes: [
      { op: 'Unsqueeze', inputs: ['ids', 'axes'], outputs: ['a'] },
      { op: 'Squeeze', inputs: ['a', 'axes'], outputs: ['b'] },
      { op: 'Transpose', inputs: ['b'], outputs: ['c'] },
      { op: 'Flatten', inputs: ['c'], outputs: ['d'] },
      gather('table', 'd', 'out'),
    ],
  })[0]?.limit, 10, 'Unsqueeze, Squeeze, Transpose, Flatten')
  t.same(limitsOf({
    initializers: [table('table', 10), { name: 'shape', type: 'int64', dims: [2], data: new BigInt64Array([0n, 4n]) }],
    nodes: [{ op: 'Expand', inputs: ['ids', 'shape'], outputs: ['e'] }, gather('table', 'e', 'out')],
  }), [], 'not Expand: to an empty shape it drops the values')
  t.same(limitsOf({ initializers: [table('table', 10, 4)], nodes: [{ op: 'GatherElements', inputs: ['table', 'ids'], outputs: ['out'], attributes: { axis: 1 }, name: 'pick' }] }),
    [{ input: 'ids', limit: 4, table: 'table', node: 'pick' }], 'GatherElements: the size along its axis')
  t.same(limitsOf({ initializers: [table('table', 10)], nodes: [{ op: 'Identity', inputs: ['ids'], outputs: ['i'], domain: 'com.example' }, gather('table', 'i', 'out')] }), [],
    'another domain\'s Identity')
})

t.test('the weights are skipped, not read: tables past the read window, and the bundled taggers', async t => {
  // Two tables of 400 kB each come before the graph's inputs in the file.
  const limits = limitsOf({
    inputs: [{ name: 'ids', type: 'int64', shape: ['n'] }, { name: 'more', type: 'int64', shape: ['n'] }],
    initializers: [table('first', 50_000), table('second', 50_001)],
    nodes: [gather('first', 'ids', 'a'), gather('second', 'more', 'b'), { op: 'Concat', inputs: ['a', 'b'], outputs: ['out'], attributes: { axis: 0 } }],
  })
  t.same(limits.map(l => [l.input, l.limit]), [['ids', 50_000], ['more', 50_001]])
  for (const name of ['ner', 'pos']) {
    const config = JSON.parse(readFileSync(join('models', name, 'config.json'), 'utf8'))
    t.same(indexLimits(join('models', name, 'model.onnx')).map(l => [l.input, l.limit]), [[config.input, config.buckets]], `${name}: its feature buckets`)
  }
})

t.test('a file the walk cannot read has no limits (ONNX Runtime is the judge of a model)', async t => {
  const bad = join(dir, 'bad.onnx')
  writeFileSync(bad, Buffer.from([0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]))
  t.same(indexLimits(bad), [], 'a length past the end')
  writeFileSync(bad, Buffer.from([0x3b, 0x00]))
  t.same(indexLimits(bad), [], 'a wire type protobuf no longer uses')
  writeFileSync(bad, Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))
  t.same(indexLimits(bad), [], 'a varint of 11 bytes')
  t.same(indexLimits(join(dir, 'missing.onnx')), [])
  writeFileSync(bad, '')
  t.same(indexLimits(bad), [], 'empty')
})
