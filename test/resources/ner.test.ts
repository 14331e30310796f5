// /ner with the committed model: known sentences, every input form, every limit.
import t, { type Test } from 'tap'
import { build, bareApp, MODELS_DIR } from '../fixtures/build.ts'
import { EntityRecognizer } from '../../resources/ner.ts'
import { AbortedError, OverloadedError } from '../../framework/pool.ts'
import { ClientGoneError, RequestDeadline, type AbortSignalLike } from '../../framework/deadline.ts'

const ner = (app: Awaited<ReturnType<typeof build>>, payload: unknown) =>
  app.inject({ method: 'POST', url: '/ner', payload: payload as object })

t.test('finds PER, LOC and ORG with offsets into the text', async t => {
  const app = await build(t)
  const text = 'Barack Obama visited Paris with Microsoft engineers.'
  const res = await ner(app, { text })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(body.entities, [
    { text: 'Barack Obama', label: 'PER', start: 0, end: 12 },
    { text: 'Paris', label: 'LOC', start: 21, end: 26 },
    { text: 'Microsoft', label: 'ORG', start: 32, end: 41 },
  ])
  for (const e of body.entities) t.equal(text.slice(e.start, e.end), e.text)
  t.same(body.tokens.map((tok: any) => tok.tag), ['B-PER', 'I-PER', 'O', 'B-LOC', 'O', 'B-ORG', 'O', 'O'])
  for (const tok of body.tokens) t.equal(text.slice(tok.start, tok.end), tok.text)
})

t.test('offsets count UTF-16 units: correct after astral characters', async t => {
  const app = await build(t)
  const text = '😀😀 Angela Merkel met Emmanuel Macron in Berlin.'
  const body = (await ner(app, { text })).json()
  t.ok(body.entities.length >= 2)
  for (const e of body.entities) t.equal(text.slice(e.start, e.end), e.text, `${e.label} ${e.text}`)
  t.ok(body.entities.some((e: any) => e.label === 'LOC' && e.text === 'Berlin'))
})

t.test('a soft hyphen inside a name does not cut the entity in the middle of a word', async t => {
  const app = await build(t)
  const text = 'Angela Mer\u00adkel visited Paris.'
  const body = (await ner(app, { text })).json()
  t.same(body.entities[0], { text: 'Angela Mer\u00adkel', label: 'PER', start: 0, end: 14 })
})

t.test('pre-tokenized input gets tags for exactly those tokens', async t => {
  const app = await build(t)
  const tokens = ['Angela', 'Merkel', 'lives', 'in', 'Berlin', '.']
  const body = (await ner(app, { tokens })).json()
  t.same(body.tokens.map((x: any) => x.text), tokens)
  t.same(body.tokens.map((x: any) => [x.start, x.end]), [[0, 6], [7, 13], [14, 19], [20, 22], [23, 29], [30, 31]])
  t.same(body.entities.find((e: any) => e.label === 'LOC'), { text: 'Berlin', label: 'LOC', start: 23, end: 29 })
  t.same((await ner(app, { tokens: [] })).json(), { entities: [], tokens: [] })
})

t.test('several texts are answered in order, empty ones with empty results', async t => {
  const app = await build(t)
  const texts = ['Paris is in France.', '', 'Google hired Sundar Pichai.']
  const body = (await ner(app, { texts })).json()
  t.equal(body.results.length, 3)
  t.same(body.results[1], { entities: [], tokens: [] })
  const single = await Promise.all(texts.map(async text => (await ner(app, { text })).json()))
  t.same(body.results, single, 'batched answers equal one-by-one answers')
  t.same((await ner(app, { texts: [] })).json(), { results: [] })
})

t.test('several texts: the bytes and headers fastify writes for each text alone', async t => {
  const app = await build(t)
  const texts = ['Paris is in France.', '', 'He said "hi" \\ back\u2028slash\u2029 \t', 'a\u0000b \u001f', '\ud800 x \udc00', '👨‍👩‍👧 Angela Merkel', 'e\u0301te\u0301 שלום', '   ']
  const res = await ner(app, { texts })
  const singles = await Promise.all(texts.map(text => ner(app, { text })))
  t.equal(res.body, `{"results":[${singles.map(r => r.body).join(',')}]}`)
  t.equal(res.headers['content-type'], singles[0].headers['content-type'])
  t.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)))
  t.equal((await ner(app, { texts: [texts[0]] })).body, `{"results":[${singles[0].body}]}`, 'one text')
})

t.test('an empty or blank text gives an empty result', async t => {
  const app = await build(t)
  t.same((await ner(app, { text: '' })).json(), { entities: [], tokens: [] })
  t.same((await ner(app, { text: ' \n\t ' })).json(), { entities: [], tokens: [] })
})

t.test('any Unicode: NUL, lone surrogates, RTL, combining marks, emoji give 200', async t => {
  const app = await build(t)
  for (const text of ['The Constructor of __proto__ arrived.', 'a\u0000b', '\ud800', 'x \udc00 y', 'שלום עולם', 'e\u0301te\u0301', '👨‍👩‍👧 family', '\uffff\ufffe', 'مرحبا Paris']) {
    const res = await ner(app, { text })
    t.equal(res.statusCode, 200, JSON.stringify(text))
    for (const tok of res.json().tokens) t.equal(text.slice(tok.start, tok.end), tok.text)
  }
})

t.test('bad input: one error format, never a 500', async t => {
  const app = await build(t)
  const cases: Array<[unknown, number, RegExp]> = [
    [{}, 400, /needs one of the fields text, tokens or texts/],
    [{ text: 'a', texts: ['b'] }, 400, /body has text and texts; give exactly one/],
    [{ text: 5 }, 400, /body\.text must be string/],
    [{ tokens: ['a', ''] }, 400, /body\.tokens\[1\] must NOT have fewer than 1 characters/],
    [{ texts: 'abc' }, 400, /body\.texts must be array/],
    [{ text: 'a', lang: 'en' }, 400, /unknown field 'lang'/],
    // A token of white space or invisible characters only is no token (raw text has them as separators).
    [{ tokens: ['Paris', ' '] }, 400, /body\.tokens\[1\] is blank \(white space, control or invisible characters only\)/],
    [{ tokens: ['\u200b', 'Paris'] }, 400, /body\.tokens\[0\] is blank/],
    [{ tokens: ['New', '\n\t', 'York'] }, 400, /body\.tokens\[1\] is blank/],
  ]
  for (const [payload, status, message] of cases) {
    const res = await ner(app, payload)
    t.equal(res.statusCode, status, JSON.stringify(payload))
    t.match(res.json().error, message)
  }
})

t.test('a body whose bytes are not UTF-8 is a 400, not tagged with U+FFFD in their place', async t => {
  // Decoded as it was, 'caf\xe9 Paris' (Latin-1) was tagged as 'caf\ufffd Paris'.
  const app = await build(t)
  const latin1 = Buffer.concat([Buffer.from('{"text": "caf'), Buffer.from([0xe9]), Buffer.from(' Paris"}')])
  for (const type of ['application/json', 'application/json; charset=iso-8859-1']) {
    const res = await app.inject({ method: 'POST', url: '/ner', payload: latin1, headers: { 'content-type': type } })
    t.equal(res.statusCode, 400, type)
    t.same(res.json(), { error: 'the body is not valid UTF-8: JSON bodies are read as UTF-8 whatever charset the content-type names', code: 'INVALID_JSON', statusCode: 400 })
  }
  const utf8 = await app.inject({ method: 'POST', url: '/ner', payload: Buffer.from('{"text": "caf\u00e9 Paris"}'), headers: { 'content-type': 'application/json' } })
  t.equal(utf8.statusCode, 200)
  t.equal(utf8.json().tokens[0].text, 'caf\u00e9')
  // A byte-order mark is UTF-8 too, and still read.
  const bom = await app.inject({ method: 'POST', url: '/ner', payload: Buffer.from('\ufeff{"text": "Paris"}'), headers: { 'content-type': 'application/json' } })
  t.equal(bom.statusCode, 200)
})

t.test('limits: text length, batch size, token count answer 413', async t => {
  const app = await bareApp(t, { modelsDir: MODELS_DIR })
  app.mount('/ner', new EntityRecognizer({ model: 'ner', limits: { maxTextLength: 20, maxBatch: 2, maxTokens: 3 } }))
  await app.loadResources()
  const cases: Array<[unknown, RegExp]> = [
    [{ text: 'x'.repeat(21) }, /body\.text is 21 UTF-16 code units long; at most 20 are accepted/],
    [{ texts: ['a', 'b', 'c'] }, /body\.texts has 3 texts; at most 2 are accepted/],
    [{ texts: ['a', 'y'.repeat(30)] }, /body\.texts\[1\] is 30 UTF-16 code units long/],
    [{ tokens: ['a', 'b', 'c', 'd'] }, /body\.tokens has 4 tokens; at most 3 are accepted/],
    [{ tokens: ['z'.repeat(25)] }, /body\.tokens\[0\] is 25 UTF-16 code units long/],
    // The length counts UTF-16 code units, as offsets do: 11 emoji are 22.
    [{ text: '😀'.repeat(11) }, /body\.text is 22 UTF-16 code units long; at most 20 are accepted/],
    // The token limit holds for raw text too, once tokenized.
    [{ text: 'a b c d' }, /body\.text has 4 tokens; at most 3 are accepted/],
    [{ texts: ['a b', 'a b c d'] }, /body\.texts\[1\] has 4 tokens; at most 3 are accepted/],
  ]
  for (const [payload, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/ner', payload: payload as object })
    t.equal(res.statusCode, 413, JSON.stringify(payload).slice(0, 40))
    t.equal(res.json().code, 'PAYLOAD_TOO_LARGE')
    t.match(res.json().error, message)
  }
  t.equal((await app.inject({ method: 'POST', url: '/ner', payload: { text: 'x'.repeat(20) } })).statusCode, 200, 'at the limit is fine')
})

t.test('several texts: once one run is refused (503), the others leave the queue and no more start', async t => {
  // Left queued, a failed request's runs kept the model's queue full: two or
  // three concurrent requests of 64 texts then refused each other, most rounds
  // until none of them was answered.
  const app = await bareApp(t, { modelsDir: MODELS_DIR })
  const recognizer = new EntityRecognizer({ model: 'ner' })
  app.mount('/ner', recognizer)
  await app.loadResources()
  const signals: AbortSignalLike[] = []
  ;(recognizer as any).model = {
    run: (_feeds: unknown, { signal }: { signal: AbortSignalLike }) => {
      signals.push(signal)
      // The third text is refused; the first two wait in the queue.
      if (signals.length === 3) return Promise.reject(new OverloadedError('ner', 64, 64))
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new AbortedError(signal.reason))))
    },
  }
  const texts = Array.from({ length: 64 }, (_, i) => `Text ${i}: Angela Merkel visited Paris.`)
  const res = await app.inject({ method: 'POST', url: '/ner', payload: { texts } })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'OVERLOADED')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(signals.length, 3, 'no text is run after the refusal')
  t.ok(signals.slice(0, 2).every(s => s.aborted), 'the queued runs are taken out')
})

t.test('several texts whose client leaves before any run: dropped as the queue drops a run (AbortedError), not an error of its own', async t => {
  const app = await bareApp(t, { modelsDir: MODELS_DIR })
  const recognizer = new EntityRecognizer({ model: 'ner' })
  app.mount('/ner', recognizer)
  await app.loadResources()
  ;(recognizer as any).model = {
    run: (_feeds: unknown, { signal }: { signal: AbortSignalLike }) =>
      signal.aborted ? Promise.reject(new AbortedError(signal.reason)) : new Promise(() => {}),
  }
  const deadline = new RequestDeadline()
  const tagged = (recognizer as any).tag({ texts: ['Angela Merkel', 'visited Paris'] }, deadline)
  deadline.abort(new ClientGoneError())
  await t.rejects(tagged, AbortedError)
  await t.rejects((recognizer as any).tag({ texts: ['Angela Merkel', 'visited Paris'] }, deadline), AbortedError, 'already gone')
})

t.test('GET describes the model with its measured accuracy', async t => {
  const app = await build(t)
  const body = (await app.inject({ url: '/ner' })).json()
  t.same(body.labels, ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC'])
  t.equal(body.task, 'ner')
  t.ok(body.accuracy.f1 >= 0.65, `F1 ${body.accuracy.f1}`)
  t.match(body.licence, /CC BY-SA 4\.0/)
  t.match(body.licence, /CC BY 4\.0/, 'the Broad Twitter Corpus and WNUT17 are CC BY 4.0, not CC BY-SA')
  t.same(body.limits, { maxTextLength: 10000, maxBatch: 64, maxTokens: 2000 })
})

t.test('a model for the wrong task fails at load', async t => {
  const app = await bareApp(t, { modelsDir: MODELS_DIR })
  app.mount('/ner', new EntityRecognizer({ model: 'pos' }))
  await t.rejects(app.loadResources(), /model 'pos' .* is a 'pos' model, not 'ner'/)
})

t.test('the OpenAPI document gives the limits this instance enforces (413 beyond them)', async t => {
  const app = await bareApp(t, { modelsDir: MODELS_DIR })
  app.mount('/ner', new EntityRecognizer({ model: 'ner', limits: { maxTextLength: 20, maxBatch: 2, maxTokens: 3 } }))
  await app.loadResources()
  const doc = (await app.inject({ url: '/openapi.json' })).json()
  const body = doc.paths['/ner'].post.requestBody.content['application/json'].schema
  t.match(body.properties.text.description, /at most 20 UTF-16 code units and 3 tokens/)
  t.match(body.properties.text.description, /413/)
  t.match(body.properties.tokens.description, /at most 3 tokens of at most 20 UTF-16 code units/)
  t.match(body.properties.texts.description, /at most 2 texts, each of at most 20 UTF-16 code units and 3 tokens/)
})

t.test('the licence and its attributions: GET /ner and the OIP model metadata give the same, from config.json', async t => {
  const app = await build(t)
  const licence = (await app.inject({ url: '/ner' })).json().licence
  t.match(licence, /CC BY-SA 4\.0/)
  for (const source of ['UNER English-EWT', 'UD English EWT', 'Broad Twitter Corpus', 'WNUT17', 'Mayhew', 'Silveira', 'Derczynski', 'https://creativecommons.org/licenses/by-sa/4.0/']) {
    t.match(licence, source, `names ${source}`)
  }
  const metadata = (await app.inject({ url: '/v2/models/ner' })).json()
  t.equal(metadata.parameters?.licence, licence, 'OIP model metadata')
})

t.test('limits: a limit given as undefined keeps its default; one that is no integer >= 1 is refused when the resource is made', async t => {
  const app = await bareApp(t, { modelsDir: MODELS_DIR })
  app.mount('/ner', new EntityRecognizer({ model: 'ner', limits: { maxBatch: undefined, maxTokens: 5 } }))
  await app.loadResources()
  t.same((await app.inject({ url: '/ner' })).json().limits, { maxTextLength: 10000, maxBatch: 64, maxTokens: 5 })
  const many = await app.inject({ method: 'POST', url: '/ner', payload: { texts: Array(65).fill('a') } })
  t.equal(many.statusCode, 413, 'the default batch limit holds')
  for (const [limits, message] of [
    [{ maxTextLength: NaN }, /limits\.maxTextLength must be an integer >= 1, got NaN/],
    [{ maxTokens: -1 }, /limits\.maxTokens must be an integer >= 1, got -1/],
    [{ maxBatch: 2.5 }, /limits\.maxBatch must be an integer >= 1, got 2\.5/],
    [{ maxBatch: '64' }, /limits\.maxBatch must be an integer >= 1, got "64"/],
    [{ maxbatch: 10 }, /limits has an unknown field 'maxbatch' \(known: maxTextLength, maxBatch, maxTokens\)/],
  ] as const) {
    t.throws(() => new EntityRecognizer({ model: 'ner', limits: limits as any }), { name: 'TypeError', message }, JSON.stringify(limits))
  }
})

/**
 * Holds the answers of `app`'s only inference thread until `until()` holds
 * (checked every few milliseconds; released after 20 s in any case): a thread
 * descheduled on a busy host, or a first batch that computes longer than a
 * burst takes to arrive. The runs still compute on the real model.
 */
function holdThread (t: Test, app: Awaited<ReturnType<typeof build>>, until: () => boolean) {
  const pool = (app.models as any).pool
  const thread = pool.threads[0]
  const call = thread.call.bind(thread)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const poll = setInterval(() => { if (until()) release() }, 2)
  const limit = setTimeout(release, 20_000)
  void gate.then(() => { clearInterval(poll); clearTimeout(limit) })
  thread.call = async (msg: { op: string }, transfer: ArrayBuffer[]) => {
    const answer = await call(msg, transfer)
    if (msg.op === 'run') await gate
    return answer
  }
  t.teardown(release)
  return (key: string) => pool.stats(key)
}

t.test('a burst of four requests of 17 texts on an idle server (68 texts: a batch computing and one waiting) is admitted whole', async t => {
  // The defaults (batches of 64, 64 items queued, one thread). The first text
  // takes the idle thread alone; the 67 others arrive while it computes. They
  // were refused past 64 waiting, though the batch computing had room for 63
  // more: the burst fits in a batch computing plus a batch waiting.
  const app = await build(t)
  const texts = (r: number) => Array.from({ length: 17 }, (_, i) => `Request ${r}, text ${i}: Angela Merkel met Tim Cook of Apple in Berlin.`)
  const alone = await Promise.all([0, 1, 2, 3].map(async r => (await ner(app, { texts: texts(r) })).json()))
  const stats = holdThread(t, app, () => stats('ner').queuedItems >= 67 || stats('ner').refused > 0)
  const burst = await Promise.all([0, 1, 2, 3].map(r => ner(app, { texts: texts(r) })))
  t.same(burst.map(res => res.statusCode), [200, 200, 200, 200], 'every request admitted')
  t.equal(stats('ner').refused, 0, 'nothing refused')
  t.same(burst.map(res => res.json()), alone, 'the same entities as each request sent alone')
  t.same(alone[0].results[0].entities.map((e: any) => [e.text, e.label]), [['Angela Merkel', 'PER'], ['Tim Cook', 'PER'], ['Apple', 'ORG'], ['Berlin', 'LOC']])
})

t.test('a burst past a batch computing and a batch waiting is still refused at once: 503 OVERLOADED with Retry-After', async t => {
  const app = await build(t)
  const texts = (r: number) => Array.from({ length: 30 }, (_, i) => `Request ${r}, text ${i}: Paris is in France.`)
  const stats = holdThread(t, app, () => stats('ner').refused > 0)
  // 150 texts: one computing, at most 127 waiting.
  const burst = await Promise.all([0, 1, 2, 3, 4].map(r => ner(app, { texts: texts(r) })))
  const refused = burst.filter(res => res.statusCode === 503)
  t.ok(refused.length >= 1, `${refused.length} refused`)
  t.same(burst.filter(res => res.statusCode !== 503).map(res => res.statusCode), Array(5 - refused.length).fill(200), 'the others answered')
  for (const res of refused) {
    t.equal(res.headers['retry-after'], '1')
    t.equal(res.json().code, 'OVERLOADED')
    t.match(res.json().error, /model 'ner' is overloaded: \d+ items queued/)
    t.notMatch(res.body, /\bat .*\.ts:\d+/, 'no stack')
  }
})
