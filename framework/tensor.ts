// Tensors as the framework passes them around: plain data, no ONNX Runtime
// types, so resources never import onnxruntime-node.
import type { ElementType, TypedData } from './onnx-builder.ts'

export type { ElementType, TypedData }

export interface Tensor {
  type: ElementType
  data: TypedData | string[] | boolean[]
  dims: number[]
}

/** The data of each element type, as onnxruntime-node gives it (TYPED_ARRAYS, and strings). */
export interface TensorDataOf {
  float32: Float32Array
  float64: Float64Array
  int8: Int8Array
  int16: Int16Array
  int32: Int32Array
  int64: BigInt64Array
  uint8: Uint8Array
  uint16: Uint16Array
  uint32: Uint32Array
  uint64: BigUint64Array
  bool: Uint8Array
  string: string[]
  float16: Uint16Array
}

/** A tensor whose element type is known: a model output its resource's contract declares. */
export interface TypedTensor<T extends ElementType> extends Tensor {
  type: T
  data: TensorDataOf[T]
}

/** Metadata of a model input or output: -1 (or a name) marks a dynamic dimension. */
export interface TensorInfo {
  name: string
  type: ElementType | 'non-tensor'
  shape: Array<number | string>
}

/** What a resource expects of a model's input or output. */
export interface TensorSpec {
  type: ElementType
  /** Fixed sizes must match; -1 or a name accepts any size. Omit to accept any shape. */
  shape?: Array<number | string>
}

export interface ModelContract {
  inputs: Record<string, TensorSpec>
  outputs: Record<string, TensorSpec>
}

export const TYPED_ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
  float16: Uint16Array,
} as const

export function formatShape (shape: Array<number | string>): string {
  return `[${shape.map(d => (typeof d === 'number' && d < 0 ? '?' : String(d))).join(', ')}]`
}

const isFixed = (d: number | string) => typeof d === 'number' && d >= 0

/**
 * Compares what a resource expects with what a model declares; returns the
 * mismatches as sentences naming expected and actual (empty when they agree).
 */
export function checkContract (contract: ModelContract, actual: { inputs: TensorInfo[], outputs: TensorInfo[] }): string[] {
  const problems: string[] = []
  const side = (kind: 'input' | 'output', expected: Record<string, TensorSpec>, got: TensorInfo[]) => {
    const byName = new Map(got.map(i => [i.name, i]))
    for (const [name, spec] of Object.entries(expected)) {
      const info = byName.get(name)
      const want = `${spec.type} ${spec.shape ? formatShape(spec.shape) : '[any]'}`
      if (!info) {
        problems.push(`${kind} '${name}': expected ${want}, but the model has no such ${kind} (it has ${got.map(i => `'${i.name}'`).join(', ') || 'none'})`)
        continue
      }
      const have = `${info.type} ${formatShape(info.shape)}`
      const shapeOk = !spec.shape || (spec.shape.length === info.shape.length &&
        spec.shape.every((d, i) => !isFixed(d) || d === info.shape[i]))
      if (info.type !== spec.type || !shapeOk) problems.push(`${kind} '${name}': expected ${want}, got ${have}`)
    }
    if (kind === 'input') {
      for (const info of got) {
        if (!Object.hasOwn(expected, info.name)) problems.push(`input '${info.name}': not expected by the resource (expected only ${Object.keys(expected).map(n => `'${n}'`).join(', ')})`)
      }
    }
  }
  side('input', contract.inputs, actual.inputs)
  side('output', contract.outputs, actual.outputs)
  return problems
}

/**
 * Rows of numbers (a JSON body's `[[...], ...]`) as one row-major tensor of
 * `width` columns. One pass into a preallocated array: `rows.flat()` then
 * `Float32Array.from` cost several times more on the request path. Returns
 * undefined when a row does not have `width` elements, or holds a number the
 * type cannot hold (beyond float32's range; for int64, not a safe integer).
 */
export function tensorFromRows (rows: readonly (readonly number[])[], width: number, type: 'float32' | 'int64' = 'float32'): Tensor | undefined {
  const n = rows.length
  if (type === 'int64') {
    const data = new BigInt64Array(n * width)
    for (let r = 0; r < n; r++) {
      const row = rows[r]
      if (row.length !== width) return undefined
      for (let c = 0, at = r * width; c < width; c++) {
        const v = row[c]
        if (!Number.isSafeInteger(v)) return undefined
        data[at + c] = BigInt(v)
      }
    }
    return { type, data, dims: [n, width] }
  }
  const data = new Float32Array(n * width)
  for (let r = 0; r < n; r++) {
    const row = rows[r]
    if (row.length !== width) return undefined
    for (let c = 0, at = r * width; c < width; c++) {
      // Beyond float32's range (1e39 is valid JSON), the model would get Infinity.
      data[at + c] = row[c]
      if (!Number.isFinite(data[at + c])) return undefined
    }
  }
  return { type, data, dims: [n, width] }
}

/** A row-major tensor's data as `rows` plain arrays (the JSON answer's `[[...], ...]`). */
export function rowsFromTensor (data: ArrayLike<number>, rows: number): number[][] {
  const per = data.length / rows
  const out = new Array<number[]>(rows)
  for (let r = 0; r < rows; r++) {
    const row = new Array<number>(per)
    for (let c = 0, at = r * per; c < per; c++) row[c] = data[at + c]
    out[r] = row
  }
  return out
}
