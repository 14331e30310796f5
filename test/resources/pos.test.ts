// /pos with the committed model.
import t from 'tap'
import { build } from '../fixtures/build.ts'

const pos = (app: Awaited<ReturnType<typeof build>>, payload: unknown) =>
  app.inject({ method: 'POST', url: '/pos', payload: payload as object })

t.test('tags known sentences', async t => {
  const app = await build(t)
  const cases: Array<[string, string[]]> = [
    ['I love Paris.', ['PRON', 'VERB', 'PROPN', 'PUNCT']],
    ['The cat sat on the mat.', ['DET', 'NOUN', 'VERB', 'ADP', 'DET', 'NOUN', 'PUNCT']],
    ["I don't know.", ['PRON', 'AUX', 'PART', 'VERB', 'PUNCT']],
  ]
  for (const [text, tags] of cases) {
    const body = (await pos(app, { text })).json()
    t.same(body.tokens.map((x: any) => x.tag), tags, text)
    for (const tok of body.tokens) t.equal(text.slice(tok.start, tok.end), tok.text)
  }
})

t.test('every input form', async t => {
  const app = await build(t)
  const tokens = (await pos(app, { tokens: ['She', 'sings', '.'] })).json().tokens
  t.same(tokens, [{ text: 'She', start: 0, end: 3, tag: 'PRON' }, { text: 'sings', start: 4, end: 9, tag: 'VERB' }, { text: '.', start: 10, end: 11, tag: 'PUNCT' }])
  const texts = ['She runs fast.', '', 'Go!']
  const body = (await pos(app, { texts })).json()
  t.equal(body.results.length, 3)
  t.same(body.results[1], { tokens: [] })
  for (let i = 0; i < texts.length; i++) t.same(body.results[i], (await pos(app, { text: texts[i] })).json())
  t.same((await pos(app, { text: '' })).json(), { tokens: [] })
})

t.test('several texts: the bytes and headers fastify writes for each text alone', async t => {
  const app = await build(t)
  const texts = ['She runs fast.', '', 'He said "hi" \\ back\u2028slash\u2029 \t', 'a\u0000b \u001f', '\ud800 x \udc00', '👨‍👩‍👧 family']
  const res = await pos(app, { texts })
  const singles = await Promise.all(texts.map(text => pos(app, { text })))
  t.equal(res.body, `{"results":[${singles.map(r => r.body).join(',')}]}`)
  t.equal(res.headers['content-type'], singles[0].headers['content-type'])
  t.equal((await pos(app, { texts: [texts[0]] })).body, `{"results":[${singles[0].body}]}`, 'one text')
})

t.test('bad input and Unicode edge cases', async t => {
  const app = await build(t)
  t.equal((await pos(app, { text: '\u0000\ud800\u202e' })).statusCode, 200)
  const both = await pos(app, { text: 'a', tokens: ['a'] })
  t.equal(both.statusCode, 400)
  t.match(both.json().error, /give exactly one of text, tokens or texts/)
  const big = await pos(app, { text: 'x'.repeat(10_001) })
  t.equal(big.statusCode, 413)
})

t.test('GET describes the model', async t => {
  const app = await build(t)
  const body = (await app.inject({ url: '/pos' })).json()
  t.equal(body.labels.length, 17)
  t.match(body.licence, /CC BY-SA 4\.0/)
  t.match(body.licence, /UD English EWT/)
  t.ok(body.accuracy.accuracy >= 0.95 || body.accuracy.tokenAccuracy >= 0.95 || Object.values(body.accuracy).some((v: any) => typeof v === 'number' && v >= 0.95), JSON.stringify(body.accuracy))
})

t.test('the OpenAPI document gives the default limits', async t => {
  const app = await build(t)
  const doc = (await app.inject({ url: '/openapi.json' })).json()
  const body = doc.paths['/pos'].post.requestBody.content['application/json'].schema
  t.match(body.properties.text.description, /at most 10000 UTF-16 code units and 2000 tokens/)
  t.match(body.properties.texts.description, /at most 64 texts/)
})

t.test('the licence and its attribution: GET /pos and the OIP model metadata give the same, from config.json', async t => {
  const app = await build(t)
  const licence = (await app.inject({ url: '/pos' })).json().licence
  for (const part of ['CC BY-SA 4.0', 'UD English EWT', 'Silveira', 'https://creativecommons.org/licenses/by-sa/4.0/']) t.match(licence, part)
  const metadata = (await app.inject({ url: '/v2/models/pos' })).json()
  t.equal(metadata.parameters?.licence, licence, 'OIP model metadata')
})

t.test('--max-queue-items 0: a lone request of several texts on an idle server is served, not refused by its own texts', async t => {
  // Each text is its own model run; with no queue, the second text found the
  // one thread busy with the first and the request was a 503 OVERLOADED.
  const app = await build(t, { batching: { maxQueueItems: 0 } })
  for (const url of ['/pos', '/ner']) {
    const res = await app.inject({ method: 'POST', url, payload: { texts: ['I love Paris.', 'Go!', 'Barack Obama visited Berlin.'] } })
    t.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`)
    t.equal(res.json().results?.length, 3, url)
  }
})
