// Open Inference Protocol tensors <-> the framework's plain tensors, and the
// checks that stand between a request and ONNX Runtime. Pure functions: the
// routes (framework/oip.ts) call them, the tests call them directly.
//
// OIP datatypes map one to one to ONNX Runtime element types:
//   BOOL bool, UINT8..UINT64 uint8..uint64, INT8..INT64 int8..int64,
//   FP16 float16 (binary data only: JSON has no half floats), FP32 float32,
//   FP64 float64, BYTES string (UTF-8 text; JSON strings or length-prefixed binary).
// Every problem is an HttpError 400 whose message names the tensor and what
// was expected, since OIP clients show the `error` string to their users.
import { HttpError, shown, shownValue } from './errors.ts'
import { TYPED_ARRAYS, type ElementType, type Tensor, type TensorInfo } from './tensor.ts'
import { float32ArrayJson, float32Json } from './float32-json.ts'

export const DATATYPES = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
} as const satisfies Record<string, ElementType>

export type Datatype = keyof typeof DATATYPES

const BY_ELEMENT_TYPE = new Map<string, Datatype>(Object.entries(DATATYPES).map(([k, v]) => [v, k as Datatype]))

/** The OIP datatype of an ONNX Runtime element type (undefined for non-tensors and unmapped types). */
export function datatypeOf (type: string): Datatype | undefined {
  return BY_ELEMENT_TYPE.get(type)
}

export function isDatatype (value: string): value is Datatype {
  return Object.hasOwn(DATATYPES, value)
}

/** Bytes per element in binary data (BYTES is variable). */
export const ELEMENT_SIZE: Record<Exclude<Datatype, 'BYTES'>, number> = {
  BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, FP16: 2, FP32: 4, FP64: 8,
}

const INT_RANGE: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
}

/** OIP metadata shape: fixed sizes as numbers, dynamic ones as -1. */
export function oipShape (shape: Array<number | string>): number[] {
  return shape.map(d => (typeof d === 'number' && d >= 0 ? d : -1))
}

export function tensorMetadata (info: TensorInfo) {
  return { name: info.name, datatype: datatypeOf(info.type) ?? info.type.toUpperCase(), shape: oipShape(info.shape) }
}

/** What a request says about one input, after the JSON schema has checked its shape. */
export interface RequestInput {
  name: string
  shape: number[]
  datatype: string
  parameters?: Record<string, unknown>
  data?: unknown
}

const bad = (message: string) => new HttpError('BAD_REQUEST', message)

export function elementCount (shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

/**
 * Flattens nested JSON tensor data (row-major); flat data comes back as is.
 * Nested data must be rectangular, as a tensor is: every array at one depth
 * of the same length, and numbers (or strings, booleans) at one depth only.
 * Ragged data ([[1, 2, 3], [4]]) was counted as its elements alone and served
 * when the count matched the shape: a client's mistake read as some other
 * tensor (KServe's and MLServer's numpy refuse it too).
 * A loop, not recursion: a small body can nest deeper than the call stack.
 */
export function flatten (data: unknown, where: string): unknown[] {
  if (!Array.isArray(data)) throw bad(`${where}: data must be an array`)
  if (!data.some(Array.isArray)) return data
  const out: unknown[] = []
  // By depth (the top array's items are at depth 1): the length of the
  // arrays there, as first seen; and the one depth that holds elements.
  const lengths: number[] = []
  let leafDepth = 0
  const ragged = (why: string) => bad(`${where}: nested data must be rectangular, like the tensor it stands for: ${why} (or send the elements flat)`)
  const stack: Array<{ array: unknown[], next: number }> = [{ array: data, next: 0 }]
  while (stack.length > 0) {
    const top = stack[stack.length - 1]
    if (top.next === top.array.length) { stack.pop(); continue }
    const v = top.array[top.next++]
    const depth = stack.length
    if (Array.isArray(v)) {
      if (leafDepth === depth) throw ragged(`arrays and elements at depth ${depth}`)
      lengths[depth] ??= v.length
      if (v.length !== lengths[depth]) throw ragged(`arrays of ${lengths[depth]} and of ${v.length} elements at depth ${depth}`)
      stack.push({ array: v, next: 0 })
    } else {
      if (lengths[depth] !== undefined) throw ragged(`arrays and elements at depth ${depth}`)
      if (leafDepth === 0) leafDepth = depth
      else if (leafDepth !== depth) throw ragged(`elements at depths ${leafDepth} and ${depth}`)
      out.push(v)
    }
  }
  return out
}

/** A UTF-16 surrogate without its pair: JSON can carry one, UTF-8 cannot. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Throws 400 for a BYTES element that cannot reach the model unchanged. */
function checkBytesElement (s: string, where: string, i: number): void {
  // ONNX Runtime's string tensors are C strings: it would cut the element there.
  const why = s.includes('\0') ? 'holds a NUL character, where ONNX Runtime would cut it short'
    : LONE_SURROGATE.test(s) ? 'holds a lone UTF-16 surrogate, which is not text'
      : undefined
  if (why) throw bad(`${where}: BYTES element ${i} ${why} (this server passes BYTES to ONNX Runtime as strings)`)
}

/** Converts JSON data to a typed tensor, checking every element against the datatype. */
export function fromJson (input: RequestInput, datatype: Datatype, options: { allowNonFinite?: boolean } = {}): Tensor {
  if (datatype === 'FP32' || datatype === 'FP64') {
    const fast = floatsFast(input, datatype === 'FP32', options.allowNonFinite === true)
    if (fast) return fast
  }
  const where = `input '${input.name}'`
  if (datatype === 'FP16') throw bad(`${where}: FP16 data must be sent as binary data (binary tensor data extension); JSON has no half-precision numbers`)
  const values = flatten(input.data, where)
  const expected = elementCount(input.shape)
  if (values.length !== expected) {
    throw bad(`${where}: shape [${input.shape.join(', ')}] needs ${expected} elements, got ${values.length}`)
  }
  const type = DATATYPES[datatype]
  if (datatype === 'BYTES') {
    values.forEach((v, i) => {
      if (typeof v !== 'string') throw bad(`${where}: element ${i} must be a string for BYTES, got ${shownValue(v)}`)
      checkBytesElement(v, where, i)
    })
    return { type, data: values as string[], dims: input.shape }
  }
  if (datatype === 'BOOL') {
    const out = new Uint8Array(values.length)
    values.forEach((v, i) => {
      if (typeof v !== 'boolean') throw bad(`${where}: element ${i} must be true or false for BOOL, got ${shownValue(v)}`)
      out[i] = v ? 1 : 0
    })
    return { type, data: out, dims: input.shape }
  }
  const range = INT_RANGE[datatype]
  if (range) {
    const [min, max] = range
    const big = datatype === 'INT64' || datatype === 'UINT64'
    const out = big ? new (TYPED_ARRAYS[type as 'int64' | 'uint64'])(values.length) : new (TYPED_ARRAYS[type as 'int32'])(values.length)
    values.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(`${where}: element ${i} must be an integer for ${datatype}, got ${shownValue(v)}`)
      if (v < min || v > max) {
        const hint = big ? ' (larger 64-bit integers lose precision in JSON: send them as binary data)' : ''
        throw bad(`${where}: element ${i} (${v}) is out of range for ${datatype}: ${min} to ${max}${hint}`)
      }
      ;(out as unknown as Array<number | bigint>)[i] = big ? BigInt(v) : v
    })
    return { type, data: out, dims: input.shape }
  }
  // FP32, FP64. JSON has no NaN or Infinity, but 1e999 parses to Infinity and
  // 1e39 overflows float32: both would reach the model as Infinity.
  const out = datatype === 'FP32' ? new Float32Array(values.length) : new Float64Array(values.length)
  values.forEach((v, i) => {
    if (typeof v !== 'number') throw bad(`${where}: element ${i} must be a number for ${datatype}, got ${shownValue(v)}`)
    // Math.fround: 3.4028235e38, the usual way to write float32's largest value, is a little above it.
    if (!options.allowNonFinite && (!Number.isFinite(v) || (datatype === 'FP32' && !Number.isFinite(Math.fround(v))))) {
      throw bad(`${where}: element ${i} is not a finite ${datatype} number`)
    }
    out[i] = v
  })
  return { type, data: out, dims: input.shape }
}

/**
 * fromJson's common case: flat FP32 or FP64 data of the right length, every
 * element a finite number (or any number with allowNonFinite). One loop, no
 * closures; anything else (nested data, a wrong count, a bad element) returns
 * undefined and takes the general path, which finds the same problem first
 * and words it.
 */
function floatsFast (input: RequestInput, fp32: boolean, allowNonFinite: boolean): Tensor | undefined {
  const data = input.data
  if (!Array.isArray(data)) return undefined
  const shape = input.shape
  let expected = 1
  for (let i = 0; i < shape.length; i++) expected *= shape[i]
  const n = data.length
  if (n !== expected) return undefined
  const out = fp32 ? new Float32Array(n) : new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const v = data[i]
    if (typeof v !== 'number') return undefined
    out[i] = v
    // The stored value: float32's rounding (Math.fround) for FP32, v itself for FP64.
    // x - x is 0 for every finite x, NaN for NaN and the infinities.
    if (!allowNonFinite) {
      const f = out[i]
      if (f - f !== 0) return undefined
    }
  }
  return { type: fp32 ? 'float32' : 'float64', data: out, dims: shape }
}

/**
 * UTF-8 for binary BYTES elements: fatal, and ignoreBOM so that an element
 * starting with U+FEFF keeps it (by default TextDecoder drops it, and the
 * model would get other text than the client sent, or than JSON would carry).
 */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Converts one input's binary data (little-endian, row-major) to a typed tensor. */
export function fromBinary (input: RequestInput, datatype: Datatype, bytes: Uint8Array, options: { allowNonFinite?: boolean } = {}): Tensor {
  const where = `input '${input.name}'`
  const count = elementCount(input.shape)
  const type = DATATYPES[datatype]
  if (datatype === 'BYTES') {
    const strings: string[] = []
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    let at = 0
    while (at < bytes.byteLength) {
      if (at + 4 > bytes.byteLength) throw bad(`${where}: binary BYTES data ends inside an element's 4-byte length`)
      const n = view.getUint32(at, true)
      at += 4
      if (at + n > bytes.byteLength) throw bad(`${where}: binary BYTES element ${strings.length} claims ${n} bytes but only ${bytes.byteLength - at} are left`)
      let s
      try {
        s = UTF8.decode(bytes.subarray(at, at + n))
      } catch {
        throw bad(`${where}: BYTES element ${strings.length} is not valid UTF-8 (this server passes BYTES to ONNX Runtime as strings)`)
      }
      checkBytesElement(s, where, strings.length)
      strings.push(s)
      at += n
    }
    if (strings.length !== count) throw bad(`${where}: shape [${input.shape.join(', ')}] needs ${count} elements, binary data holds ${strings.length}`)
    return { type, data: strings, dims: input.shape }
  }
  const size = ELEMENT_SIZE[datatype]
  if (bytes.byteLength !== count * size) {
    throw bad(`${where}: shape [${input.shape.join(', ')}] of ${datatype} needs ${count * size} bytes of binary data, got ${bytes.byteLength}`)
  }
  // A fresh, aligned buffer the job owns (the request body's offsets are arbitrary).
  const copy = new Uint8Array(bytes.byteLength)
  copy.set(bytes)
  const data = new (TYPED_ARRAYS[type as Exclude<ElementType, 'string'>])(copy.buffer)
  if (datatype === 'BOOL') {
    for (let i = 0; i < copy.length; i++) {
      if (copy[i] > 1) throw bad(`${where}: BOOL element ${i} is ${copy[i]}; binary BOOL elements are 0 or 1`)
    }
  } else if (!options.allowNonFinite && (datatype === 'FP32' || datatype === 'FP64')) {
    const floats = data as Float32Array | Float64Array
    for (let i = 0; i < floats.length; i++) {
      if (!Number.isFinite(floats[i])) throw bad(`${where}: element ${i} is not a finite ${datatype} number`)
    }
  } else if (!options.allowNonFinite && datatype === 'FP16') {
    const halves = data as Uint16Array
    for (let i = 0; i < halves.length; i++) {
      if ((halves[i] & 0x7c00) === 0x7c00) throw bad(`${where}: element ${i} is not a finite FP16 number`)
    }
  }
  return { type, data, dims: input.shape }
}

/**
 * A client's shape as error messages quote it: its first 8 dimensions at
 * most. Its rank is the client's: one of 300,000 dimensions came back whole.
 */
function shownShape (shape: number[]): string {
  return shape.length > 8 ? `[${shape.slice(0, 8).join(', ')}, ...]` : `[${shape.join(', ')}]`
}

/**
 * Checks one input's name, datatype and shape against the model's metadata.
 * `symbols` collects the sizes given to named dynamic dimensions, so two
 * inputs that share `batch` must agree on it.
 */
export function checkInput (input: RequestInput, info: TensorInfo | undefined, known: string[], symbols: Map<string, { size: number, input: string }>): Datatype {
  if (!info) throw bad(`unknown input '${shown(input.name)}'; the model's inputs are ${known.map(n => `'${n}'`).join(', ')}`)
  const expected = datatypeOf(info.type)
  if (!expected) throw bad(`input '${input.name}' has type ${info.type}, which this server cannot feed`)
  if (input.datatype !== expected) throw bad(`input '${input.name}': expected datatype ${expected}, got ${input.datatype}`)
  if (input.shape.length !== info.shape.length) {
    throw bad(`input '${input.name}': expected shape [${oipShape(info.shape).join(', ')}] (rank ${info.shape.length}), got ${shownShape(input.shape)} (rank ${input.shape.length})`)
  }
  for (let i = 0; i < info.shape.length; i++) {
    const d = info.shape[i]
    const got = input.shape[i]
    if (typeof d === 'number' && d >= 0 && got !== d) {
      throw bad(`input '${input.name}': dimension ${i} must be ${d}, got ${got} (expected shape [${oipShape(info.shape).join(', ')}])`)
    }
    // ONNX Runtime reports an unnamed dynamic dimension as '': no name to share.
    if (typeof d === 'string' && d !== '') {
      const seen = symbols.get(d)
      if (seen && seen.size !== got) {
        throw bad(`input '${input.name}': dimension ${i} ('${d}') is ${got}, but input '${seen.input}' gives '${d}' = ${seen.size}`)
      }
      symbols.set(d, { size: got, input: input.name })
    }
  }
  return expected
}

/** Checks the batch (first dimension of every input) against the model's maximum. */
export function checkBatch (inputs: RequestInput[], maxBatchSize: number): void {
  if (maxBatchSize <= 0) return
  for (const input of inputs) {
    const batch = input.shape[0]
    if (batch !== undefined && batch > maxBatchSize) {
      throw bad(`input '${input.name}': batch size ${batch} is over the model's maximum of ${maxBatchSize}`)
    }
  }
}

/** A tensor's elements as JSON text, row-major and flat (64-bit integers exact). */
export function dataJson (tensor: Tensor): string {
  const d = tensor.data
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return `[${d.join(',')}]`
  if (tensor.type === 'bool') return `[${Array.from(d as ArrayLike<number | boolean>, v => (v ? 'true' : 'false')).join(',')}]`
  if (Array.isArray(d)) return JSON.stringify(d)
  // FP32 in the fewest digits that read back as the same float32 (0.1, not
  // 0.10000000149011612): half the text, a third of the time.
  if (d instanceof Float32Array) {
    const text = float32ArrayJson(d)
    if (text !== undefined) return text
  }
  const numbers = d as Exclude<Tensor['data'], string[] | boolean[] | BigInt64Array | BigUint64Array>
  // JSON.stringify of a plain array writes the digits straight into one
  // buffer; a join (typed or plain) makes a string per number through V8's
  // number-to-string cache: for 544 floats a model computed, 60 against 110+ us
  // (framework/serializer.ts says more).
  const plain = new Array<number>(numbers.length)
  let finite = true
  for (let i = 0; i < numbers.length; i++) {
    const v = numbers[i]
    plain[i] = v
    if (!Number.isFinite(v)) finite = false
  }
  if (finite) return JSON.stringify(plain)
  // JSON has no NaN/Infinity: a model's non-finite output becomes null.
  const text = d instanceof Float32Array ? float32Json : String
  return `[${plain.map(v => (Number.isFinite(v) ? text(v) : 'null')).join(',')}]`
}

/** A tensor's elements as binary data: raw little-endian, BYTES length-prefixed, BOOL one byte each. */
export function dataBinary (tensor: Tensor): Uint8Array {
  const d = tensor.data
  if (tensor.type === 'string') {
    const parts = (d as string[]).map(s => Buffer.from(s, 'utf8'))
    const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0))
    let at = 0
    for (const p of parts) {
      out.writeUInt32LE(p.length, at)
      p.copy(out, at + 4)
      at += 4 + p.length
    }
    return out
  }
  if (Array.isArray(d)) return Uint8Array.from(d as boolean[], v => (v ? 1 : 0))
  const view = d as Exclude<Tensor['data'], string[] | boolean[]>
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
}
