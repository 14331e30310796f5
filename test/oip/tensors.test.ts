// The pure tensor functions behind the OIP routes.
import t from 'tap'
import {
  checkBatch, checkInput, dataBinary, dataJson, datatypeOf, flatten, fromBinary, fromJson, oipShape,
} from '../../framework/oip-tensors.ts'

t.test('datatype mapping and metadata shapes', async t => {
  t.equal(datatypeOf('float32'), 'FP32')
  t.equal(datatypeOf('string'), 'BYTES')
  t.equal(datatypeOf('float16'), 'FP16')
  t.equal(datatypeOf('non-tensor'), undefined)
  t.same(oipShape(['batch', 4, -1]), [-1, 4, -1])
})

t.test('flatten keeps row-major order at any depth', async t => {
  t.same(flatten([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], 'x'), [1, 2, 3, 4, 5, 6, 7, 8])
  t.same(flatten([1, 2], 'x'), [1, 2])
  t.throws(() => flatten(3, 'x'), /data must be an array/)
})

t.test('fromJson: typed data, with range checks per datatype', async t => {
  const input = (datatype: string, data: unknown[], shape = [data.length]) => ({ name: 'x', shape, datatype, data })
  t.same([...fromJson(input('INT8', [-128, 127]), 'INT8').data as Int8Array], [-128, 127])
  t.throws(() => fromJson(input('INT8', [128]), 'INT8'), /out of range for INT8/)
  t.throws(() => fromJson(input('INT16', [-32769]), 'INT16'), /out of range/)
  t.throws(() => fromJson(input('UINT32', [2 ** 32]), 'UINT32'), /out of range/)
  t.throws(() => fromJson(input('INT32', [2 ** 31]), 'INT32'), /out of range/)
  t.same(fromJson(input('INT64', [-5]), 'INT64').data, BigInt64Array.from([-5n]))
  t.throws(() => fromJson(input('FP64', [Infinity]), 'FP64'), /not a finite FP64/)
  t.same([...fromJson(input('FP64', [Infinity]), 'FP64', { allowNonFinite: true }).data as Float64Array], [Infinity], 'allowNonFinite lets it through')
  t.throws(() => fromJson(input('BYTES', [1]), 'BYTES'), /must be a string for BYTES/)
  t.throws(() => fromJson(input('FP32', [1, 2], [3]), 'FP32'), /needs 3 elements, got 2/)
})

t.test('fromBinary: sizes, BOOL bytes, FP16 non-finite, BYTES framing', async t => {
  const input = (datatype: string, shape: number[]) => ({ name: 'x', shape, datatype })
  t.throws(() => fromBinary(input('BOOL', [2]), 'BOOL', Uint8Array.from([1, 2])), /BOOL element 1 is 2/)
  t.throws(() => fromBinary(input('FP16', [1]), 'FP16', new Uint8Array(Uint16Array.from([0x7c00]).buffer)), /not a finite FP16/)
  t.throws(() => fromBinary(input('BYTES', [1]), 'BYTES', Uint8Array.from([1, 0])), /ends inside an element's 4-byte length/)
  t.throws(() => fromBinary(input('BYTES', [2]), 'BYTES', Uint8Array.from([1, 0, 0, 0, 65])), /needs 2 elements, binary data holds 1/)
  t.throws(() => fromBinary(input('BYTES', [1]), 'BYTES', Uint8Array.from([1, 0, 0, 0, 0xff])), /not valid UTF-8/)
  // A view at an odd offset still decodes (the data is copied to an aligned buffer).
  const raw = new Uint8Array(9)
  raw.set(new Uint8Array(Float64Array.from([2.5]).buffer), 1)
  t.same([...fromBinary(input('FP64', [1]), 'FP64', raw.subarray(1)).data as Float64Array], [2.5])
})

t.test('checkInput and checkBatch', async t => {
  const info = { name: 'x', type: 'float32' as const, shape: ['batch', 4] }
  const symbols = new Map()
  t.equal(checkInput({ name: 'x', shape: [2, 4], datatype: 'FP32' }, info, ['x'], symbols), 'FP32')
  t.same(symbols.get('batch'), { size: 2, input: 'x' })
  t.throws(() => checkInput({ name: 'y', shape: [2, 4], datatype: 'FP32' }, undefined, ['x'], new Map()), /unknown input 'y'/)
  t.throws(() => checkInput({ name: 'x', shape: [2, 5], datatype: 'FP32' }, info, ['x'], new Map()), /dimension 1 must be 4, got 5/)
  // Unnamed dynamic dimensions, as ONNX Runtime reports them: any sizes.
  const unnamed = { name: 'u', type: 'float32' as const, shape: ['', ''] }
  const seen = new Map()
  t.equal(checkInput({ name: 'u', shape: [1, 4], datatype: 'FP32' }, unnamed, ['u', 'v'], seen), 'FP32')
  t.equal(checkInput({ name: 'v', shape: [3, 2], datatype: 'FP32' }, { ...unnamed, name: 'v' }, ['u', 'v'], seen), 'FP32')
  t.equal(seen.size, 0)
  t.doesNotThrow(() => checkBatch([{ name: 'x', shape: [5, 4], datatype: 'FP32' }], 0), '0: no limit')
  t.throws(() => checkBatch([{ name: 'x', shape: [5, 4], datatype: 'FP32' }], 4), /over the model's maximum of 4/)
})

t.test('output encoding: exact 64-bit JSON, null for non-finite, length-prefixed BYTES', async t => {
  t.equal(dataJson({ type: 'uint64', data: BigUint64Array.from([2n ** 64n - 1n]), dims: [1] }), '[18446744073709551615]')
  t.equal(dataJson({ type: 'float32', data: Float32Array.from([NaN, 1]), dims: [2] }), '[null,1]')
  t.equal(dataJson({ type: 'bool', data: Uint8Array.from([1, 0]), dims: [2] }), '[true,false]')
  t.same([...dataBinary({ type: 'string', data: ['ab', ''], dims: [2] })], [2, 0, 0, 0, 97, 98, 0, 0, 0, 0])
  t.same([...dataBinary({ type: 'bool', data: [true, false], dims: [2] })], [1, 0])
})

t.test('fromBinary: a BYTES element keeps a leading U+FEFF (byte order mark), as JSON would carry it', async t => {
  const element = Buffer.from('\uFEFFabc', 'utf8')
  const length = Buffer.alloc(4)
  length.writeUInt32LE(element.length)
  const bytes = Buffer.concat([length, element, length, element])
  t.same(fromBinary({ name: 'x', shape: [2], datatype: 'BYTES' }, 'BYTES', bytes).data, ['\uFEFFabc', '\uFEFFabc'])
  t.same(fromJson({ name: 'x', shape: [1], datatype: 'BYTES', data: ['\uFEFFabc'] }, 'BYTES').data, ['\uFEFFabc'], 'the same text through JSON')
})
