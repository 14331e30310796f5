// What the framework reads of an ONNX file's graph itself, besides what ONNX
// Runtime reports: the index limits of the model's embedding lookups.
//
// An input that feeds a Gather (or GatherElements) over a weight table (the
// taggers' feature ids, bench/models.ts's `tagger`) must hold row numbers of
// that table, whether it is read directly or through nodes that pass each of
// its values on unchanged (Identity, Reshape, Unsqueeze, a widening Cast...:
// exporters often put one before the lookup). ONNX
// Runtime fails the whole run on one id out of range, with an error that does
// not say whose fault it is, so the server answered 500. Knowing each such
// input's limit, the model store refuses the request with a 400 instead,
// before it is queued (models.ts).
//
// The file is walked field by field (protobuf's wire format) through a small
// window: the weights are skipped, not read. A tagger's file is mostly its
// table, and reading it whole on the main thread, beside the sessions that
// already hold it, would add its size to the server's peak memory.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto

/** An input whose values index the rows of a weight table: each must be in [-limit, limit). */
export interface IndexLimit {
  input: string
  limit: number
  /** The weight table and the Gather node that reads it, for the error message. */
  table: string
  node: string
}

// Field numbers of onnx.proto.
const MODEL_GRAPH = 7
const GRAPH_NODE = 1
const GRAPH_INITIALIZER = 5
const GRAPH_INPUT = 11
const TENSOR_DIMS = 1
const TENSOR_NAME = 8

// ONNX element types (TensorProto.DataType).
const INT32 = 6
const INT64 = 7

/**
 * Ops that hand on every value of their first input unchanged, only
 * rearranged: an input read through a chain of them still indexes the table
 * value for value. (Not Expand or Tile: to an empty shape, they drop values
 * the lookup then never reads.) Cast is one of them when it widens or keeps
 * an integer (checked along the chain, indexedInput).
 */
const PASS_VALUES = new Set(['Identity', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Transpose', 'Cast'])
/** Lookups whose indices must be within the table's size along their axis, or ONNX Runtime fails the run. */
const LOOKUPS = new Set(['Gather', 'GatherElements'])

/** A file's bytes, read through a window of 64 kB. */
class FileBytes {
  private window = Buffer.alloc(1 << 16)
  private start = 0
  private end = 0

  constructor (private readonly fd: number) {}

  byte (at: number): number {
    if (at < this.start || at >= this.end) {
      const n = readSync(this.fd, this.window, 0, this.window.length, at)
      if (n <= 0) throw new Error('unexpected end of file')
      this.start = at
      this.end = at + n
    }
    return this.window[at - this.start]
  }

  bytes (at: number, length: number): Buffer {
    const out = Buffer.alloc(length)
    if (readSync(this.fd, out, 0, length, at) !== length) throw new Error('unexpected end of file')
    return out
  }
}

/** A varint at `at`: its value (exact up to 2^53) and where the next field starts. */
function varint (f: FileBytes, at: number): [number, number] {
  let value = 0
  let scale = 1
  for (let i = 0; i < 10; i++) {
    const b = f.byte(at++)
    value += (b & 0x7f) * scale
    if (b < 0x80) return [value, at]
    scale *= 128
  }
  throw new Error('malformed varint')
}

interface Field { number: number, wire: number, at: number, end: number, value: number }

/** The fields of the message in [start, end): varints carry their value, length-delimited ones their span. */
function * fields (f: FileBytes, start: number, end: number): Generator<Field> {
  let at = start
  while (at < end) {
    const [key, next] = varint(f, at)
    const wire = key & 7
    const number = Math.floor(key / 8)
    if (wire === 0) {
      const [value, after] = varint(f, next)
      yield { number, wire, at: next, end: after, value }
      at = after
    } else if (wire === 2) {
      const [length, body] = varint(f, next)
      yield { number, wire, at: body, end: body + length, value: length }
      at = body + length
    } else if (wire === 1 || wire === 5) {
      at = next + (wire === 1 ? 8 : 4)
    } else {
      throw new Error(`unsupported wire type ${wire}`)
    }
    if (at > end) throw new Error('a field runs past its message')
  }
}

/** An initializer's name and dimensions, its data skipped. */
function tensorShape (f: FileBytes, start: number, end: number): { name: string, dims: number[] } {
  let name = ''
  const dims: number[] = []
  for (const field of fields(f, start, end)) {
    if (field.number === TENSOR_NAME && field.wire === 2) name = f.bytes(field.at, field.value).toString('utf8')
    else if (field.number === TENSOR_DIMS && field.wire === 0) dims.push(field.value)
    else if (field.number === TENSOR_DIMS && field.wire === 2) {
      for (let at = field.at; at < field.end;) {
        const [dim, next] = varint(f, at)
        dims.push(dim)
        at = next
      }
    }
  }
  return { name, dims }
}

/** A value's producer, for the ops that pass values on (PASS_VALUES). */
interface Pass { from: string, op: string, to: number }

/**
 * The graph input whose values reach `name` unchanged, through the ops that
 * pass values on, if any: a Cast must go to int64, or to int32 from int32
 * (the types the model store checks); a narrowing one may wrap an id into
 * range, so past it the input's values are not the indices.
 */
function indexedInput (name: string, producers: Map<string, Pass>, inputs: Map<string, number>): string | undefined {
  const casts: number[] = []
  for (let hops = 0; hops < 64 && !inputs.has(name); hops++) {
    const pass = producers.get(name)
    if (!pass) return undefined
    if (pass.op === 'Cast') casts.unshift(pass.to)
    name = pass.from
  }
  let type = inputs.get(name)
  if (type === undefined) return undefined
  for (const to of casts) {
    if (!(to === INT64 && (type === INT32 || type === INT64)) && !(to === INT32 && type === INT32)) return undefined
    type = to
  }
  return name
}

/**
 * The index limits of the model in `path`: each graph input whose values
 * reach the indices of a Gather or GatherElements over an initializer,
 * directly or through ops that pass them on (with the smallest limit when it
 * feeds several). None for a file this walk cannot read; ONNX Runtime, which
 * loaded it, is the judge of whether it is a model.
 */
export function indexLimits (path: string): IndexLimit[] {
  let fd: number | undefined
  try {
    fd = openSync(path, 'r')
    const f = new FileBytes(fd)
    const size = fstatSync(fd).size
    const tables = new Map<string, number[]>()
    /** Graph inputs by name, with their element type. */
    const inputs = new Map<string, number>()
    const producers = new Map<string, Pass>()
    const lookups: Array<{ data: string, indices: string, axis: number, node: string }> = []
    for (const top of fields(f, 0, size)) {
      if (top.number !== MODEL_GRAPH || top.wire !== 2) continue
      for (const field of fields(f, top.at, top.end)) {
        if (field.wire !== 2) continue
        if (field.number === GRAPH_INITIALIZER) {
          const { name, dims } = tensorShape(f, field.at, field.end)
          tables.set(name, dims)
        } else if (field.number === GRAPH_INPUT) {
          const input = onnx.ValueInfoProto.decode(f.bytes(field.at, field.value))
          inputs.set(input.name, input.type?.tensorType?.elemType ?? 0)
        } else if (field.number === GRAPH_NODE) {
          const node = onnx.NodeProto.decode(f.bytes(field.at, field.value))
          if ((node.domain !== '' && node.domain !== 'ai.onnx') || node.input.length < 1) continue
          const attribute = (name: string) => node.attribute.find(a => a.name === name)
          if (PASS_VALUES.has(node.opType) && node.output.length > 0) {
            producers.set(node.output[0], { from: node.input[0], op: node.opType, to: Number(attribute('to')?.i ?? 0) })
          } else if (LOOKUPS.has(node.opType) && node.input.length >= 2) {
            lookups.push({ data: node.input[0], indices: node.input[1], axis: Number(attribute('axis')?.i ?? 0), node: node.name })
          }
        }
      }
    }
    const limits = new Map<string, IndexLimit>()
    for (const g of lookups) {
      const dims = tables.get(g.data)
      // Indices that are an initializer too, or a table that is also a graph
      // input (a default the caller may override), have no fixed limit.
      const input = indexedInput(g.indices, producers, inputs)
      if (!dims || input === undefined || tables.has(input) || inputs.has(g.data)) continue
      const axis = g.axis < 0 ? g.axis + dims.length : g.axis
      if (axis < 0 || axis >= dims.length) continue
      const limit = dims[axis]
      const known = limits.get(input)
      if (!known || limit < known.limit) limits.set(input, { input, limit, table: g.data, node: g.node })
    }
    return [...limits.values()]
  } catch {
    return []
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}
