// Writes ONNX models from a small graph description, with no ML framework.
//
// Used by the tests (tiny fixture models made on the fly), by training (the
// NER and POS taggers are exported through it) and by the benchmark (seeded
// synthetic models). It only builds bytes: loading and running models is the
// job of framework/models.ts, the one module that talks to ONNX Runtime.
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
const DataType = onnx.TensorProto.DataType

/** Element types by their ONNX Runtime names (the names `ort.Tensor` uses). */
export type ElementType =
  | 'float32' | 'float64' | 'int8' | 'int16' | 'int32' | 'int64'
  | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'bool' | 'string' | 'float16'

const ELEMENT_TYPES: Record<ElementType, number> = {
  float32: DataType.FLOAT,
  float64: DataType.DOUBLE,
  int8: DataType.INT8,
  int16: DataType.INT16,
  int32: DataType.INT32,
  int64: DataType.INT64,
  uint8: DataType.UINT8,
  uint16: DataType.UINT16,
  uint32: DataType.UINT32,
  uint64: DataType.UINT64,
  bool: DataType.BOOL,
  string: DataType.STRING,
  float16: DataType.FLOAT16,
}

/** A dimension is a fixed size or a symbolic name (dynamic). */
export type Dim = number | string

export interface ValueSpec {
  name: string
  type: ElementType
  shape: Dim[]
}

export type TypedData =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array

export interface Initializer {
  name: string
  type: ElementType
  dims: number[]
  /** Raw little-endian element data; strings go in `strings` instead. */
  data?: TypedData
  strings?: string[]
}

export type AttributeValue = number | string | number[] | string[] | Initializer
export interface NodeSpec {
  op: string
  inputs: string[]
  outputs: string[]
  attributes?: Record<string, AttributeValue>
  name?: string
  domain?: string
}

export interface GraphSpec {
  name: string
  inputs: ValueSpec[]
  outputs: ValueSpec[]
  nodes: NodeSpec[]
  initializers?: Initializer[]
  /** Free-form key/value pairs stored in the model (e.g. label names as JSON). */
  metadata?: Record<string, string>
  opset?: number
  producer?: string
  docString?: string
}

function valueInfo ({ name, type, shape }: ValueSpec) {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[type],
        shape: { dim: shape.map(d => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  }
}

function tensor (init: Initializer) {
  const out: Record<string, unknown> = { name: init.name, dataType: ELEMENT_TYPES[init.type], dims: init.dims }
  if (init.type === 'string') {
    out.stringData = (init.strings ?? []).map(s => Buffer.from(s, 'utf8'))
  } else if (init.data !== undefined) {
    const d = init.data
    out.rawData = new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
  }
  return out
}

function attribute (name: string, value: AttributeValue) {
  const A = onnx.AttributeProto.AttributeType
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: A.INT, i: value } : { name, type: A.FLOAT, f: value }
  }
  if (typeof value === 'string') return { name, type: A.STRING, s: Buffer.from(value, 'utf8') }
  if (Array.isArray(value)) {
    if (value.every(v => typeof v === 'string')) {
      return { name, type: A.STRINGS, strings: (value as string[]).map(s => Buffer.from(s, 'utf8')) }
    }
    const nums = value as number[]
    return nums.every(Number.isInteger) ? { name, type: A.INTS, ints: nums } : { name, type: A.FLOATS, floats: nums }
  }
  return { name, type: A.TENSOR, t: tensor(value) }
}

/** Serializes a graph description to ONNX model bytes. */
export function buildModel (spec: GraphSpec): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: spec.producer ?? 'onnx-serve',
    docString: spec.docString ?? '',
    opsetImport: [{ domain: '', version: spec.opset ?? 17 }],
    metadataProps: Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: spec.name,
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      initializer: (spec.initializers ?? []).map(tensor),
      node: spec.nodes.map((n, i) => ({
        name: n.name ?? `${n.op}_${i}`,
        opType: n.op,
        domain: n.domain ?? '',
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes ?? {}).map(([k, v]) => attribute(k, v)),
      })),
    },
  })
  return onnx.ModelProto.encode(model).finish()
}

/**
 * A small seeded PRNG (mulberry32) so synthetic weights are identical on every
 * machine and every run: generated models are byte-for-byte reproducible.
 */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Float32 weights uniformly drawn from [-scale, scale) with a seeded PRNG. */
export function randomWeights (count: number, seed: number, scale = 0.1): Float32Array {
  const rand = seededRandom(seed)
  const out = new Float32Array(count)
  for (let i = 0; i < count; i++) out[i] = (rand() * 2 - 1) * scale
  return out
}
