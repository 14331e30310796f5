// Response serialization: fast-json-stringify (fastify's own compiler) for every
// schema, except that a schema holding arrays of numbers, the usual shape of a
// model's answer (logits, probabilities, embeddings), gets a writer of our own.
//
// Why: fast-json-stringify 7 on Node 20 writes a number array one element at a
// time (`json += asNumber(v)`): each number becomes a string of its own, through
// V8's number-to-string cache, and the ~2n pieces are flattened for the socket.
// JSON.stringify writes the digits straight into one buffer. For 544 floats a
// model computed (distinct values), 145-230 us against 60 us on this machine;
// the per-element way only wins when the same numbers are written again and
// again (the cache hits), which a model's answers do not do.
//
// The writer knows a small subset of JSON Schema (object, array, number,
// integer, string, boolean, null; required and optional properties) and only
// plain values: exactly-typed, finite numbers, arrays without holes, objects
// without toJSON. Anything else, in the schema or in a value, is left to
// fast-json-stringify, so the output is the same text either way (the tests
// compare the two on generated values), coercions and errors included.
//
// One exception: a number schema with OpenAPI's `format: 'float'` (a model's
// float32 output) is written in the fewest digits that read back as the same
// float32 (framework/float32-json.ts): 0.1, not 0.10000000149011612. The
// values are the same; the text is about half as long and a third as costly
// to write. A value the writer does not take goes to fast-json-stringify
// whole, which writes doubles.
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import { float32ArrayJson, float32Json } from './float32-json.ts'

type Write = (value: unknown) => string

/** Thrown by a writer when a value is not plain: the caller falls back. */
const NOT_PLAIN = new Error('not a plain value')
function notPlain (): never { throw NOT_PLAIN }

// Keywords that do not change what fast-json-stringify writes. Any other
// keyword (default, nullable, const, enum, format, anyOf, $ref, ...) sends the
// schema to fast-json-stringify.
const NEUTRAL = new Set(['title', 'description', '$comment', 'examples', 'deprecated', 'readOnly', 'writeOnly',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minLength', 'maxLength', 'pattern', 'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties'])
const SHAPE: Record<string, string[]> = {
  object: ['properties', 'required', 'additionalProperties'],
  array: ['items'],
}

const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)

/** A number schema marked as float32 (OpenAPI's `format: 'float'`). */
const isFloat32 = (s: Record<string, unknown>) => s.type === 'number' && s.format === 'float'

/** A writer for `schema`, or undefined if it is outside the subset. */
function writerFor (schema: unknown): { write: Write, numbers: boolean } | undefined {
  if (typeof schema !== 'object' || schema === null) return undefined
  const s = schema as Record<string, unknown>
  const type = s.type
  if (typeof type !== 'string') return undefined
  const allowed = SHAPE[type] ?? []
  if (Object.keys(s).some(k => k !== 'type' && !NEUTRAL.has(k) && !allowed.includes(k) && !(k === 'format' && isFloat32(s)))) return undefined
  switch (type) {
    // A float32 number needs this writer wherever it is (`numbers: true`): a
    // schema whose float32s are not in a number array, such as a classifier's
    // {label, score}, went to fast-json-stringify whole, which writes doubles.
    case 'number': return isFloat32(s)
      ? { write: v => (isFiniteNumber(v) && float32Json(v)) || notPlain(), numbers: true }
      : { write: v => isFiniteNumber(v) ? '' + v : notPlain(), numbers: false }
    case 'integer': return { write: v => Number.isInteger(v) ? '' + (v as number) : notPlain(), numbers: false }
    case 'string': return { write: v => typeof v === 'string' ? JSON.stringify(v) : notPlain(), numbers: false }
    case 'boolean': return { write: v => v === true ? 'true' : v === false ? 'false' : notPlain(), numbers: false }
    case 'null': return { write: v => v === null ? 'null' : notPlain(), numbers: false }
    case 'array': return arrayWriter(s.items)
    case 'object': return objectWriter(s)
    default: return undefined
  }
}

function arrayWriter (items: unknown): { write: Write, numbers: boolean } | undefined {
  const item = writerFor(items)
  if (!item) return undefined
  const type = (items as { type: string }).type
  if (isFloat32(items as Record<string, unknown>)) {
    return {
      numbers: true,
      write: (v) => {
        if (!Array.isArray(v) || (v as { toJSON?: unknown }).toJSON !== undefined) notPlain()
        return float32ArrayJson(v) ?? notPlain()
      },
    }
  }
  if (type === 'number' || type === 'integer') {
    const ok = type === 'number' ? isFiniteNumber : Number.isInteger
    return {
      numbers: true,
      write: (v) => {
        if (!Array.isArray(v) || (v as { toJSON?: unknown }).toJSON !== undefined) notPlain()
        for (let i = 0; i < v.length; i++) if (!ok(v[i])) notPlain()
        return JSON.stringify(v)
      },
    }
  }
  const write = item.write
  return {
    numbers: item.numbers,
    write: (v) => {
      if (!Array.isArray(v)) notPlain()
      let out = '['
      for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : ',') + write(v[i])
      return out + ']'
    },
  }
}

function objectWriter (s: Record<string, unknown>): { write: Write, numbers: boolean } | undefined {
  if (s.additionalProperties !== undefined && s.additionalProperties !== false) return undefined
  const properties = (s.properties ?? {}) as Record<string, unknown>
  const required = (s.required ?? []) as string[]
  if (!Array.isArray(required) || required.some(k => !Object.hasOwn(properties, k))) return undefined
  const fields: Array<{ key: string, prefix: string, required: boolean, write: Write }> = []
  let numbers = false
  for (const [key, sub] of Object.entries(properties)) {
    const w = writerFor(sub)
    if (!w) return undefined
    numbers ||= w.numbers
    fields.push({ key, prefix: JSON.stringify(key) + ':', required: required.includes(key), write: w.write })
  }
  // fast-json-stringify writes the required properties first.
  fields.sort((a, b) => Number(b.required) - Number(a.required))
  return {
    numbers,
    write: (v) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { toJSON?: unknown }).toJSON === 'function') notPlain()
      let out = '{'
      let first = true
      for (const f of fields) {
        const x = (v as Record<string, unknown>)[f.key]
        if (x === undefined) {
          if (f.required) notPlain()
          continue
        }
        out += (first ? '' : ',') + f.prefix + f.write(x)
        first = false
      }
      return out + '}'
    },
  }
}

/**
 * Wraps `fallback` (the serializer fast-json-stringify compiled for `schema`)
 * with our writer when the schema is in the subset and holds a number array
 * or a float32 number;
 * otherwise returns `fallback` itself. A value the writer does not take as
 * plain goes to `fallback` whole.
 */
export function withNumberArrays (schema: unknown, fallback: Write): Write {
  const w = writerFor(schema)
  if (!w?.numbers) return fallback
  const write = w.write
  return function serializeNumberArrays (value: unknown) {
    try {
      return write(value)
    } catch {
      return fallback(value)
    }
  }
}

/**
 * fastify's serializer factory (`schemaController.compilersFactory.buildSerializer`):
 * its default, fast-json-stringify with the app's shared schemas and options,
 * with number arrays written by `withNumberArrays`.
 */
export const buildSerializer: SerializerFactory = (externalSchemas, serializerOpts) => {
  const compile = SerializerSelector()(externalSchemas, serializerOpts)
  return route => withNumberArrays(route.schema, compile(route))
}
