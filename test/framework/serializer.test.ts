// Number arrays in responses: our writer must give the same text as
// fast-json-stringify (fastify's default) for every value, and hand anything
// that is not plain to it.
import t, { type Test } from 'tap'
import fjs from 'fast-json-stringify'
import { Type } from '@sinclair/typebox'
import { buildSerializer, withNumberArrays } from '../../framework/serializer.ts'
import { createApp } from '../../framework/create-app.ts'
import { Resource, responder } from '../../framework/resource.ts'

/** fast-json-stringify's answer, or its error's message. */
function outcome (f: (v: unknown) => string, v: unknown): string {
  try {
    return 'ok ' + f(v)
  } catch (e) {
    return 'error ' + (e as Error).message
  }
}

/** Our writer with a counting fallback. */
function counted (schema: object) {
  const slow = fjs(schema)
  let calls = 0
  const fast = withNumberArrays(schema, v => { calls++; return slow(v) })
  return { slow, fast, calls: () => calls }
}

// A small seeded generator (mulberry32), so a failure names a reproducible case.
function rng (seed: number) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const Row = Type.Array(Type.Number())
const schemas = {
  rows: Type.Object({ outputs: Type.Array(Row) }),
  ints: Type.Object({ ids: Type.Array(Type.Integer()), n: Type.Integer() }),
  labelled: Type.Object({
    label: Type.String(),
    scores: Row,
    top: Type.Optional(Type.Integer()),
    mean: Type.Number(),
    ok: Type.Boolean(),
    none: Type.Optional(Type.Null()),
    nested: Type.Optional(Type.Object({ embedding: Row, name: Type.String() }, { additionalProperties: false })),
  }),
  items: Type.Array(Type.Object({ text: Type.String(), probs: Row })),
  bare: Row,
  optional: Type.Object({ a: Type.Optional(Row), b: Type.Optional(Type.String()) }),
}

// Plain values of every kind, and the not-plain ones fast-json-stringify
// coerces, writes as null or [] or {}, or refuses.
function anyNumber (r: () => number): unknown {
  const odd = [NaN, Infinity, -Infinity, -0, 0, 1e21, 1e-7, -1.5, 2 ** 53, '1.5', 'x', null, undefined, true, 3n, {}, [], [1]]
  const k = r()
  if (k < 0.4) return Math.fround((r() - 0.5) * 10 ** Math.floor(r() * 12 - 6))
  if (k < 0.7) return Math.floor((r() - 0.5) * 2000)
  return odd[Math.floor(r() * odd.length)]
}
function anyString (r: () => number): unknown {
  const all = ['', 'plain', 'quote " and \\ backslash', 'tab\tnew\nline', '\u2028', '\ud800 lone', '😀 pair', 'x'.repeat(60), 'y'.repeat(60) + '"', 5, null, undefined]
  return all[Math.floor(r() * all.length)]
}
function mutate (r: () => number, plain: unknown): unknown {
  if (r() < 0.75) return plain
  const k = r()
  if (k < 0.15) return null
  if (k < 0.3) return undefined
  if (k < 0.4) return 'text'
  if (k < 0.5) return Array.isArray(plain) ? Object.assign([...plain], { 1: undefined }) : [plain]
  if (k < 0.6) return Array.isArray(plain) ? new Float32Array(plain.length) : { toJSON: () => plain }
  if (k < 0.7) return Array.isArray(plain) ? [...plain, , 1] : new Date(0) // eslint-disable-line no-sparse-arrays
  if (k < 0.8) return typeof plain === 'object' && plain !== null && !Array.isArray(plain) ? { ...plain, extra: 1 } : 7
  return anyNumber(r)
}
function valueFor (schema: Record<string, unknown>, r: () => number): unknown {
  let plain: unknown
  switch (schema.type) {
    case 'number':
    case 'integer': return anyNumber(r)
    case 'string': return anyString(r)
    case 'boolean': return r() < 0.45 ? true : r() < 0.9 ? false : mutate(r, 1)
    case 'null': return r() < 0.8 ? null : mutate(r, null)
    case 'array': plain = Array.from({ length: Math.floor(r() * 6) }, () => valueFor(schema.items as Record<string, unknown>, r)); break
    default: {
      const o: Record<string, unknown> = {}
      for (const [k, sub] of Object.entries(schema.properties as Record<string, Record<string, unknown>>)) {
        if (r() < 0.9) o[k] = valueFor(sub, r)
      }
      plain = o
    }
  }
  return mutate(r, plain)
}
/** A value where every number is finite, every field present: what a model's answer looks like. */
function plainFor (schema: Record<string, unknown>, r: () => number): unknown {
  switch (schema.type) {
    case 'number': return Math.fround((r() - 0.5) * 100)
    case 'integer': return Math.floor(r() * 100)
    case 'string': return 'w' + Math.floor(r() * 9)
    case 'boolean': return r() < 0.5
    case 'null': return null
    case 'array': return Array.from({ length: 1 + Math.floor(r() * 5) }, () => plainFor(schema.items as Record<string, unknown>, r))
    default: return Object.fromEntries(Object.entries(schema.properties as Record<string, Record<string, unknown>>).map(([k, sub]) => [k, plainFor(sub, r)]))
  }
}

/**
 * Runs 3000 generated values through our writer and fast-json-stringify;
 * `agree` judges each pair of outcomes (told whether ours fell back). Returns
 * how many disagreed and how many the writer answered itself.
 */
function compareGenerated (t: Test, name: string, schema: Record<string, unknown>, seed: number,
  agree: (ours: string, theirs: string, fellBack: boolean) => boolean) {
  const { slow, fast, calls } = counted(schema)
  t.not(fast, slow, `${name}: the writer is used`)
  const r = rng(seed)
  let differ = 0
  let fastPath = 0
  for (let i = 0; i < 3000; i++) {
    const v = i % 3 === 0 ? plainFor(schema, r) : valueFor(schema, r)
    const before = calls()
    const a = outcome(fast, v)
    const b = outcome(slow, v)
    const fellBack = calls() > before
    if (!fellBack) fastPath++
    if (!agree(a, b, fellBack) && differ++ < 3) t.fail(`${name} #${i}: ${a} against ${b}`)
  }
  t.equal(differ, 0, `${name}: 3000 values`)
  t.ok(fastPath >= 1000, `${name}: the writer answered ${fastPath} of them itself`)
}

t.test('the same text (or the same error) as fast-json-stringify for generated values, except what does not fit the schema', async t => {
  // A value that leaves the schema is refused with our error, naming the field,
  // where fast-json-stringify threw its own or coerced it (null as 0, 5 as "5").
  const refused = 'error the answer does not match the response schema: answer'
  for (const [name, schema] of Object.entries(schemas)) compareGenerated(t, name, schema, name.length * 7919, (a, b) => a === b || a.startsWith(refused))
})

t.test('plain values never reach fast-json-stringify; others always do', async t => {
  const { fast, calls } = counted(schemas.rows)
  t.equal(fast({ outputs: [[1, -0.5, 1e-7], []] }), '{"outputs":[[1,-0.5,1e-7],[]]}')
  t.equal(calls(), 0)
  for (const v of [{ outputs: [[1, NaN]] }, { outputs: [[Infinity]] }, { outputs: [['1']] }, { outputs: null }, {}, { outputs: [new Float32Array(2)] }, { outputs: [Object.assign([1], { toJSON: () => [2] })] }]) {
    outcome(fast, v)
  }
  t.equal(calls(), 1, 'an array with toJSON falls back; NaN, Infinity, a string, null, a missing field, a typed array are refused')
  t.throws(() => fast({ outputs: [[1, Infinity]] }), /answer\.outputs\[0\]\[1\] is Infinity, which JSON cannot hold/, "fast-json-stringify's null would be a wrong answer")
})

t.test("format: 'float' numbers: float32's shortest text where the writer answers, fast-json-stringify's otherwise", async t => {
  const Float = Type.Number({ format: 'float' })
  const schema = Type.Object({ outputs: Type.Array(Type.Array(Float)), mean: Float, label: Type.String() })
  const { fast, calls } = counted(schema)
  t.equal(fast({ outputs: [[Math.fround(0.1), -1.5, 3.4028234663852886e38], []], mean: Math.fround(0.3), label: 'x' }),
    '{"outputs":[[0.1,-1.5,3.4028235e+38],[]],"mean":0.3,"label":"x"}')
  t.equal(fast({ outputs: [[0.1, 1 / 3]], mean: 1 / 3, label: 'x' }), '{"outputs":[[0.1,0.3333333333333333]],"mean":0.3333333333333333,"label":"x"}',
    'a double that is no float32 keeps its double text')
  t.equal(calls(), 0)
  // Ours: the same float32 values, never longer; what falls back: fast-json-stringify's text.
  const f32 = (text: string) => {
    const v = JSON.parse(text.slice(3))
    return JSON.stringify({ ...v, outputs: v.outputs.map((row: number[]) => row.map(Math.fround)), mean: Math.fround(v.mean) })
  }
  compareGenerated(t, 'float', schema, 977, (a, b, fellBack) => a.startsWith('error the answer does not match') || (fellBack ? a === b : f32(a) === f32(b) && a.length <= b.length))
})

t.test("format: 'float' numbers outside any number array (a classifier's score) are written in float32's text too", async t => {
  const Float = Type.Number({ format: 'float' })
  const score = Math.fround(0.9)
  // Before: these schemas hold no number array, went to fast-json-stringify whole,
  // and answered 0.8999999761581421, the float32 spelt out as a double.
  const cases: Array<[object, unknown, string]> = [
    [Type.Object({ label: Type.String(), score: Float }), { label: 'cat', score }, '{"label":"cat","score":0.9}'],
    [Type.Array(Type.Object({ label: Type.String(), score: Float })), [{ label: 'cat', score }, { label: 'dog', score: Math.fround(0.1) }],
      '[{"label":"cat","score":0.9},{"label":"dog","score":0.1}]'],
    [Type.Object({ score: Type.Optional(Float) }), { score }, '{"score":0.9}'],
    [Float, score, '0.9'],
  ]
  for (const [schema, value, text] of cases) {
    const { fast, calls } = counted(schema)
    t.equal(fast(value), text, JSON.stringify(schema))
    t.equal(calls(), 0)
  }
  // A double that is no float32 keeps its double text; a NaN is refused, naming the field (fast-json-stringify refused it too).
  const { fast, calls } = counted(cases[0][0])
  t.equal(fast({ label: 'x', score: 1 / 3 }), '{"label":"x","score":0.3333333333333333}')
  t.match(outcome(fast, { label: 'x', score: NaN }), /^error .*answer\.score is NaN/)
  t.equal(calls(), 0)
})

t.test('schemas outside the subset, or without a number array, keep fast-json-stringify', async t => {
  const slow = (v: unknown) => String(v)
  for (const schema of [
    Type.Object({ text: Type.String(), n: Type.Number() }),
    Type.Object({ x: Type.Union([Row, Type.String()]) }),
    Type.Object({ x: Row, when: Type.String({ format: 'date-time' }) }),
    Type.Object({ x: Row, y: Type.Number({ default: 1 }) }),
    Type.Object({ x: Row }, { additionalProperties: true }),
    Type.Object({ x: Row, kind: Type.Literal('a') }),
    Type.Tuple([Type.Number(), Type.Number()]),
    { type: 'object', properties: { x: Row }, required: ['x', 'y'] },
    { type: ['array', 'null'], items: { type: 'number' } },
    { type: 'array', items: { type: 'number' }, nullable: true },
    { $ref: 'rows#' },
    { type: 'array', items: { type: 'date' } },
    { type: 'object', properties: { x: Row }, required: 'x' },
    Type.Array(Type.Any()),
    Type.Array(Type.Number({ format: 'double' })),
    Type.Array(Type.Integer({ format: 'float' })),
    { type: 'object' },
    undefined,
  ]) {
    t.equal(withNumberArrays(schema, slow), slow, JSON.stringify(schema) ?? 'no schema')
  }
})

t.test('buildSerializer: fastify\'s compiler, with shared schemas and options', async t => {
  const compile = buildSerializer({ Rows: { $id: 'Rows', type: 'array', items: Row } }, { rounding: 'ceil' })
  const viaRef = compile({ method: 'POST', url: '/', httpStatus: '200', schema: { type: 'object', properties: { r: { $ref: 'Rows#' } } } })
  t.equal(viaRef({ r: [[1.5]] }), '{"r":[[1.5]]}', 'a $ref resolves through the shared schemas')
  const ints = compile({ method: 'POST', url: '/', httpStatus: '200', schema: Type.Object({ ids: Type.Array(Type.Integer()) }) })
  t.equal(ints({ ids: [1, 2] }), '{"ids":[1,2]}')
  t.equal(ints({ ids: [1, 2.5] }), '{"ids":[1,3]}', 'a fraction goes to fast-json-stringify, which rounds as told')
})

t.test('a responder returning number arrays answers the same bytes through the app', async t => {
  class Scores extends Resource {
    onPost = responder({
      schema: {
        body: Type.Object({ n: Type.Integer() }),
        response: { 200: Type.Object({ scores: Type.Array(Row), label: Type.String() }) },
      },
      handler: async (request) => request.body.n < 0
        ? { scores: [[NaN]], label: 'bad' }
        : { scores: [Array.from(Float32Array.from({ length: request.body.n }, (_, i) => Math.sin(i)))], label: 'é"' },
    })
  }
  const app = await createApp({ modelsDir: '/nonexistent' })
  t.teardown(() => app.close())
  app.mount('/scores', new Scores())
  await app.loadResources()
  const res = await app.inject({ method: 'POST', url: '/scores', payload: { n: 544 } })
  t.equal(res.statusCode, 200)
  const expected = { scores: [Array.from(Float32Array.from({ length: 544 }, (_, i) => Math.sin(i)))], label: 'é"' }
  t.equal(res.body, JSON.stringify(expected))
  const bad = await app.inject({ method: 'POST', url: '/scores', payload: { n: -1 } })
  t.equal(bad.statusCode, 500, 'NaN cannot be written: fast-json-stringify refuses it, as before')
  t.same(bad.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 }, 'in the error format, without the serializer\'s message')
})

t.test("a responder's format: 'float' numbers answer in float32's shortest text through the app", async t => {
  class Logits extends Resource {
    onPost = responder({
      schema: { response: { 200: Type.Object({ logits: Type.Array(Type.Number({ format: 'float' })) }) } },
      handler: async () => ({ logits: Array.from(Float32Array.from([0.1, -2.2, 1e-7, 123456.78])) }),
    })
  }
  const app = await createApp({ modelsDir: '/nonexistent' })
  t.teardown(() => app.close())
  app.mount('/logits', new Logits())
  await app.loadResources()
  const res = await app.inject({ method: 'POST', url: '/logits' })
  t.equal(res.statusCode, 200)
  t.equal(res.body, '{"logits":[0.1,-2.2,1e-7,123456.78]}')
  const docs = await app.inject({ url: '/openapi.json' })
  t.match(docs.body, '"format":"float"', 'the OpenAPI document says float')
})

/** An app whose responders answer `answers[name]` under `schemas[name]`, and the error lines it logs. */
async function answering (t: Test, cases: Record<string, [object, unknown]>) {
  const lines: string[] = []
  const app = await createApp({ modelsDir: '/nonexistent', logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } as never })
  t.teardown(() => app.close())
  for (const [name, [schema, value]] of Object.entries(cases)) {
    class Answer extends Resource {
      onGet = responder({ schema: { response: { 200: schema as ReturnType<typeof Type.Object> } }, handler: async () => value as never })
    }
    app.mount(`/${name}`, new Answer())
  }
  await app.loadResources()
  return { app, lines }
}

t.test('a typed array or a missing field in an answer is a 500 whose log names the field and what to do (it said "The value of \'#/properties/y\' does not match schema definition.")', async t => {
  const Float = Type.Number({ format: 'float' })
  const { app, lines } = await answering(t, {
    f32: [Type.Object({ y: Type.Array(Float) }), { y: new Float32Array([0.5]) }],
    deep: [Type.Object({ r: Type.Array(Type.Object({ s: Type.Array(Type.Number()) })) }), { r: [{ s: [1] }, { s: new Float64Array([1]) }] }],
    ids: [Type.Object({ ids: Type.Array(Type.Integer()), label: Type.String() }), { ids: new BigInt64Array([1n]), label: 'x' }],
    missing: [Type.Object({ o: Type.Object({ a: Type.Number(), b: Type.String() }) }), { o: { b: 'x' } }],
  })
  const expected: Record<string, RegExp> = {
    f32: /the answer does not match the 200 response schema of GET \/f32: answer\.y is a Float32Array: a response schema takes plain arrays, so return Array\.from\(\.\.\.\) of it \(with Type\.Number\(\{ format: 'float' \}\) items/,
    deep: /GET \/deep: answer\.r\[1\]\.s is a Float64Array: .*Array\.from/,
    ids: /GET \/ids: answer\.ids is a BigInt64Array: .*Array\.from/,
    missing: /GET \/missing: answer\.o\.a is missing: the response schema requires it/,
  }
  for (const [name, message] of Object.entries(expected)) {
    const res = await app.inject({ url: `/${name}` })
    t.equal(res.statusCode, 500, name)
    t.same(res.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 }, name)
    t.match(lines.join(''), message, name)
  }
})

t.test("an answer of the wrong type in a model's answer schema is a 500 naming the field, not fast-json-stringify's silent coercion into a wrong 200", async t => {
  const Answer = Type.Object({ label: Type.String(), scores: Type.Array(Type.Number({ format: 'float' })), ok: Type.Boolean() })
  const good = { label: 'cat', scores: [0.5], ok: true }
  const { app, lines } = await answering(t, {
    good: [Answer, good],
    label: [Answer, { ...good, label: { name: 'cat' } }], // was "[object Object]"
    number: [Answer, { ...good, label: 5 }], // was "5"
    infinite: [Answer, { ...good, scores: [0.5, Infinity] }], // was null
    nulled: [Answer, { ...good, scores: [null] }], // was 0
    ok: [Answer, { ...good, ok: 'false' }], // was true
  })
  t.equal((await app.inject({ url: '/good' })).body, '{"label":"cat","scores":[0.5],"ok":true}')
  const expected: Record<string, RegExp> = {
    label: /GET \/label: answer\.label is an object, not a string/,
    number: /GET \/number: answer\.label is 5, not a string/,
    infinite: /GET \/infinite: answer\.scores\[1\] is Infinity, which JSON cannot hold/,
    nulled: /GET \/nulled: answer\.scores\[0\] is null, not a number/,
    ok: /GET \/ok: answer\.ok is \\"false\\", not true or false/, // quoted in the JSON log line
  }
  for (const [name, message] of Object.entries(expected)) {
    const res = await app.inject({ url: `/${name}` })
    t.equal(res.statusCode, 500, `${name}: ${res.body}`)
    t.match(lines.join(''), message, name)
  }
})
