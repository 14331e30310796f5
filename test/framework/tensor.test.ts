// Rows <-> tensors: the resources' fast path for numeric JSON bodies.
import t from 'tap'
import { rowsFromTensor, tensorFromRows } from '../../framework/tensor.ts'

t.test('tensorFromRows packs rows row-major, float32 or int64', async t => {
  const f = tensorFromRows([[1, 2.5], [3, 4]], 2)!
  t.same(f.dims, [2, 2])
  t.ok(f.data instanceof Float32Array)
  t.same(Array.from(f.data as Float32Array), [1, 2.5, 3, 4])
  const i = tensorFromRows([[1, 2], [3, 4]], 2, 'int64')!
  t.equal(i.type, 'int64')
  t.same(Array.from(i.data as BigInt64Array), [1n, 2n, 3n, 4n])
})

t.test('tensorFromRows refuses a row of the wrong width', async t => {
  t.equal(tensorFromRows([[1, 2], [3]], 2), undefined)
  t.equal(tensorFromRows([[1, 2, 3]], 2, 'int64'), undefined)
})

t.test('tensorFromRows refuses an int64 row with a fraction or an unsafe integer', async t => {
  t.equal(tensorFromRows([[1, 1.5]], 2, 'int64'), undefined)
  t.equal(tensorFromRows([[1, 2 ** 53]], 2, 'int64'), undefined)
  t.same(Array.from(tensorFromRows([[-1, 2 ** 53 - 1]], 2, 'int64')!.data as BigInt64Array), [-1n, 2n ** 53n - 1n])
})

t.test('rowsFromTensor splits flat data into plain arrays', async t => {
  t.same(rowsFromTensor(new Float32Array([1, 2, 3, 4, 5, 6]), 2), [[1, 2, 3], [4, 5, 6]])
  t.same(rowsFromTensor(new Float32Array(0), 0), [])
})
