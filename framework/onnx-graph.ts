// What the framework reads of an ONNX file's graph itself, besides what ONNX
// Runtime reports: the index limits of the model's embedding lookups.
//
// An input that feeds a Gather over a weight table (the taggers' feature ids,
// bench/models.ts's `tagger`) must hold row numbers of that table. ONNX
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

/**
 * The index limits of the model in `path`: each graph input read directly as
 * the indices of a Gather over an initializer (with the smallest limit when
 * it feeds several). None for a file this walk cannot read; ONNX Runtime,
 * which loaded it, is the judge of whether it is a model.
 */
export function indexLimits (path: string): IndexLimit[] {
  let fd: number | undefined
  try {
    fd = openSync(path, 'r')
    const f = new FileBytes(fd)
    const size = fstatSync(fd).size
    const tables = new Map<string, number[]>()
    const inputs = new Set<string>()
    const gathers: Array<{ data: string, indices: string, axis: number, node: string }> = []
    for (const top of fields(f, 0, size)) {
      if (top.number !== MODEL_GRAPH || top.wire !== 2) continue
      for (const field of fields(f, top.at, top.end)) {
        if (field.wire !== 2) continue
        if (field.number === GRAPH_INITIALIZER) {
          const { name, dims } = tensorShape(f, field.at, field.end)
          tables.set(name, dims)
        } else if (field.number === GRAPH_INPUT) {
          inputs.add(onnx.ValueInfoProto.decode(f.bytes(field.at, field.value)).name)
        } else if (field.number === GRAPH_NODE) {
          const node = onnx.NodeProto.decode(f.bytes(field.at, field.value))
          if (node.opType !== 'Gather' || (node.domain !== '' && node.domain !== 'ai.onnx') || node.input.length < 2) continue
          const axis = node.attribute.find(a => a.name === 'axis')
          gathers.push({ data: node.input[0], indices: node.input[1], axis: axis ? Number(axis.i) : 0, node: node.name })
        }
      }
    }
    const limits = new Map<string, IndexLimit>()
    for (const g of gathers) {
      const dims = tables.get(g.data)
      // Indices that are an initializer too, or a table that is also a graph
      // input (a default the caller may override), have no fixed limit.
      if (!dims || tables.has(g.indices) || !inputs.has(g.indices) || inputs.has(g.data)) continue
      const axis = g.axis < 0 ? g.axis + dims.length : g.axis
      if (axis < 0 || axis >= dims.length) continue
      const limit = dims[axis]
      const known = limits.get(g.indices)
      if (!known || limit < known.limit) limits.set(g.indices, { input: g.indices, limit, table: g.data, node: g.node })
    }
    return [...limits.values()]
  } catch {
    return []
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}
