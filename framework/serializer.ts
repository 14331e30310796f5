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
// without toJSON. A schema outside the subset is left to fast-json-stringify;
// so is a value the writer does not take, unless it leaves the schema (a
// typed array, a null for a number, a missing field: describeMismatch), which
// is refused naming the field, where fast-json-stringify coerced it or threw
// words that named none. The output is the same text either way (the tests
// compare the two on generated values).
//
// One exception: a number schema with OpenAPI's `format: 'float'` (a model's
// float32 output) is written in the fewest digits that read back as the same
// float32 (framework/float32-json.ts): 0.1, not 0.10000000149011612. The
// values are the same; the text is about half as long and a third as costly
// to write. A value the writer does not take goes to fast-json-stringify
// whole, which writes doubles.
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import { float32ArrayJson, float32Json } from './float32-json.ts'
import { shownValue } from './errors.ts'

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
 * Where `value` leaves the schema, as "answer.rows[1].y is a Float32Array,
 * not an array", with what to do; undefined if it does not (or the schema is
 * outside the writer's subset, or the value has a toJSON: left to
 * fast-json-stringify). Only run once a value was refused (the error path).
 * Rounding a fraction for an integer schema is fast-json-stringify's own
 * documented coercion (its `rounding` option), not reported.
 */
export function describeMismatch (schema: unknown, value: unknown, path = 'answer'): string | undefined {
  if (!writerFor(schema)) return undefined
  const s = schema as Record<string, unknown>
  const v = value
  if (ArrayBuffer.isView(v)) {
    return `${path} is ${shownValue(v)}: a response schema takes plain arrays, so return Array.from(...) of it` +
      (v instanceof Float32Array ? " (with Type.Number({ format: 'float' }) items, float32 values are written in their shortest digits)" : '')
  }
  if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') return undefined
  const not = (what: string) => `${path} is ${shownValue(v)}, not ${what}`
  switch (s.type) {
    case 'number':
    case 'integer':
      // A BigInt (an int64 output's Array.from) is written whole by fast-json-stringify.
      if (typeof v === 'bigint') return undefined
      if (typeof v !== 'number') return not(s.type === 'number' ? 'a number' : 'an integer')
      return Number.isFinite(v) ? undefined : `${path} is ${v}, which JSON cannot hold (it would be written as null, or refused)`
    case 'string': return typeof v === 'string' ? undefined : not('a string')
    case 'boolean': return typeof v === 'boolean' ? undefined : not('true or false')
    case 'null': return v === null ? undefined : not('null')
    case 'array': {
      if (!Array.isArray(v)) return not('an array')
      for (let i = 0; i < v.length; i++) {
        const why = i in v ? describeMismatch(s.items, v[i], `${path}[${i}]`) : `${path}[${i}] is a hole in the array`
        if (why) return why
      }
      return undefined
    }
    default: {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return not('an object')
      const required = s.required as string[] | undefined
      for (const [key, sub] of Object.entries(s.properties as Record<string, unknown> ?? {})) {
        const x = (v as Record<string, unknown>)[key]
        const at = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
        if (x === undefined) {
          if (required?.includes(key)) return `${at} is missing: the response schema requires it`
          continue
        }
        const why = describeMismatch(sub, x, at)
        if (why) return why
      }
      return undefined
    }
  }
}

/** The error a value that does not fit its response schema is logged with (a 500). */
export class ResponseMismatchError extends Error {
  constructor (where: string, why: string, options?: { cause?: unknown }) {
    super(`the answer does not match ${where}: ${why}`, options)
    this.name = 'ResponseMismatchError'
  }
}

/**
 * Wraps `fallback` (the serializer fast-json-stringify compiled for `schema`)
 * with our writer when the schema is in the subset and holds a number array
 * or a float32 number;
 * otherwise returns `fallback` itself. A value the writer does not take as
 * plain is checked against the schema (describeMismatch): one that does not
 * fit is refused with a ResponseMismatchError, where fast-json-stringify
 * would have coerced it into a wrong 200 (null as 0, "false" as true, an
 * object as "[object Object]", Infinity as null); any other goes to
 * `fallback` whole. Values the writer takes never pay for the check.
 */
export function withNumberArrays (schema: unknown, fallback: Write, where = 'the response schema'): Write {
  const w = writerFor(schema)
  if (!w?.numbers) return fallback
  const write = w.write
  return function serializeNumberArrays (value: unknown) {
    try {
      return write(value)
    } catch {
      const why = describeMismatch(schema, value)
      if (why) throw new ResponseMismatchError(where, why)
      return fallback(value)
    }
  }
}

/**
 * fast-json-stringify's serializer, whose errors name no field of a nested
 * value ('"a" is required!') and say nothing of a typed array ("The value of
 * '#/properties/y' does not match schema definition."): when it throws, the
 * error says where the value leaves the schema and what to do, its own kept
 * as the cause. A value it takes costs one try block.
 */
function explained (schema: unknown, serialize: Write, where: string): Write {
  return function serializeExplained (value: unknown) {
    try {
      return serialize(value)
    } catch (err) {
      const why = describeMismatch(schema, value)
      throw why ? new ResponseMismatchError(where, why, { cause: err }) : err
    }
  }
}

/**
 * fastify's serializer factory (`schemaController.compilersFactory.buildSerializer`):
 * its default, fast-json-stringify with the app's shared schemas and options,
 * with number arrays written by `withNumberArrays`, and errors that name the
 * field (`explained`).
 */
export const buildSerializer: SerializerFactory = (externalSchemas, serializerOpts) => {
  const compile = SerializerSelector()(externalSchemas, serializerOpts)
  return route => {
    const where = `the ${route.httpStatus} response schema of ${route.method} ${route.url}`
    return withNumberArrays(route.schema, explained(route.schema, compile(route), where), where)
  }
}
