// The app as users see it: routes, errors, validation, docs, readiness.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { METHODS, request as httpRequest, type IncomingMessage } from 'node:http'
import { gzipSync } from 'node:zlib'
import { build, bareApp } from './fixtures/build.ts'
import { Faulty, Greeter, PastDeadline, Pause, Unloadable } from './fixtures/resources.ts'

t.test('every resource file is mounted in app.ts', async t => {
  const appSource = readFileSync(new URL('../app.ts', import.meta.url), 'utf8')
  const files = readdirSync(new URL('../resources/', import.meta.url)).filter(f => f.endsWith('.ts'))
  t.ok(files.length > 0)
  for (const file of files) {
    const source = readFileSync(new URL(`../resources/${file}`, import.meta.url), 'utf8')
    const classes = [...source.matchAll(/export class (\w+) extends \w*Resource\b/g)].map(m => m[1])
    t.ok(classes.length > 0, `${file} exports a resource class`)
    for (const name of classes) t.match(appSource, new RegExp(`app\\.mount\\([^\\n]*new ${name}\\(`), `${name} is mounted`)
  }
})

t.test('health: live and ready', async t => {
  const app = await build(t)
  const live = await app.inject({ url: '/health/live' })
  t.equal(live.statusCode, 200)
  t.same(live.json(), { status: 'live' })
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready' })
})

t.test('readiness is 503 with the reason while loading, and resources refuse', async t => {
  const app = await bareApp(t)
  app.mount('/hello/{name}', new Greeter('hi'))
  await app.ready()
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.same(ready.json(), { error: 'not ready: loading models', code: 'NOT_READY', statusCode: 503 })
  t.equal(ready.headers['retry-after'], '1')
  const res = await app.inject({ url: '/hello/bob' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'NOT_READY')
  await app.loadResources()
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200)
  t.equal((await app.inject({ url: '/hello/bob' })).statusCode, 200)
})

t.test('a failed load keeps readiness at 503 with the model error', async t => {
  const app = await bareApp(t)
  app.mount('/broken', new Unloadable())
  await app.ready()
  await t.rejects(app.loadResources(), /model 'does-not-exist' not found/)
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json().error, /model 'does-not-exist' not found in the models directory/)
  const route = await app.inject({ url: '/broken' })
  t.equal(route.statusCode, 503)
  t.notMatch(route.json().error, /\/tmp\/|\\/, 'clients do not see the server\'s paths')
})

t.test('draining: readiness 503; requests still served, with Connection: close', async t => {
  const app = await build(t)
  app.drain()
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().code, 'SHUTTING_DOWN')
  const res = await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3, 4]] } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.connection, 'close')
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200)
})

t.test('draining as a replaced cluster worker: readiness stays 200; a drain for the server\'s stop then turns it 503', async t => {
  const app = await build(t)
  app.drain({ replaced: true })
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 200, ready.body)
  const res = await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3, 4]] } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.connection, 'close', 'clients still move to the other workers')
  app.drain()
  const stopping = await app.inject({ url: '/health/ready' })
  t.equal(stopping.statusCode, 503)
  t.equal(stopping.json().code, 'SHUTTING_DOWN')
})

t.test('405 with Allow for verbs a resource lacks; OPTIONS lists them', async t => {
  const app = await build(t)
  for (const method of ['PUT', 'PATCH', 'DELETE'] as const) {
    const res = await app.inject({ method, url: '/scale', payload: { rows: [] } })
    t.equal(res.statusCode, 405, method)
    t.equal(res.headers.allow, 'POST, GET, HEAD, OPTIONS')
    t.same(res.json(), { error: `${method} is not allowed on /scale; allowed: POST, GET, HEAD, OPTIONS`, code: 'METHOD_NOT_ALLOWED', statusCode: 405 })
  }
  // 405 is decided before the body is parsed: bad JSON does not turn it into 400.
  const bad = await app.inject({ method: 'DELETE', url: '/scale', payload: '{nope', headers: { 'content-type': 'application/json' } })
  t.equal(bad.statusCode, 405)
  const options = await app.inject({ method: 'OPTIONS', url: '/scale' })
  t.equal(options.statusCode, 204)
  t.equal(options.headers.allow, 'POST, GET, HEAD, OPTIONS')
  // So is OPTIONS: a body sent with it made it a 400 or a 415.
  for (const [url, type, payload] of [['/scale', 'application/json', '{nope'], ['/scale', 'text/plain', 'x'], ['/v2/models/scaler/infer', 'text/plain', 'x'], ['/health/live', 'application/json', '{']]) {
    const withBody = await app.inject({ method: 'OPTIONS', url, payload, headers: { 'content-type': type } })
    t.equal(withBody.statusCode, 204, `OPTIONS ${url} with a ${type} body`)
    t.ok(withBody.headers.allow)
  }
  const head = await app.inject({ method: 'HEAD', url: '/scale' })
  t.equal(head.statusCode, 200)
})

t.test('every method is 405 with Allow on a path that exists, TRACE never echoes; 404 stays for unknown paths', async t => {
  // fastify routes TRACE and QUERY besides the usual verbs, and no 405 route
  // was registered for them; the methods it did not know (PROPFIND, SEARCH,
  // ...) matched no route at all: every one of them was a 404 on /ner.
  const app = await build(t)
  const others = METHODS.filter(m => !['CONNECT', 'GET', 'HEAD', 'OPTIONS'].includes(m))
  for (const [url, allow, shown] of [
    ['/health/ready', 'GET, HEAD, OPTIONS', '/health/ready'],
    ['/ner', 'POST, GET, HEAD, OPTIONS', '/ner'],
    ['/v2/models/scaler/infer', 'POST, OPTIONS', '/v2/models/{name}/infer'],
    ['/docs', 'GET, HEAD, OPTIONS', '/docs'],
  ]) {
    for (const method of others) {
      if (allow.startsWith(`${method},`)) continue
      const res = await app.inject({ method: method as 'GET', url, headers: { 'content-type': 'application/json' }, payload: '{nope' })
      t.equal(res.statusCode, 405, `${method} ${url}`)
      t.equal(res.headers.allow, allow, `${method} ${url}: Allow`)
      t.same(res.json(), { error: `${method} is not allowed on ${shown}; allowed: ${allow}`, code: 'METHOD_NOT_ALLOWED', statusCode: 405 }, `${method} ${url}: body`)
    }
  }
  // Over a real connection: a TRACE with credentials gets the 405 in the
  // error format, and nothing of the request comes back.
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  for (const url of ['/ner', '/health/ready']) {
    const text = await rawExchange(port, `TRACE ${url} HTTP/1.1\r\nHost: x\r\nCookie: session=hunter2\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n`)
    t.match(text, /^HTTP\/1.1 405 /, `TRACE ${url}: 405`)
    t.match(text, /\r\nallow: [A-Z, ]*GET, HEAD, OPTIONS\r\n/i, `TRACE ${url}: Allow`)
    t.match(text, /\r\ncontent-type: application\/json/i, `TRACE ${url}: JSON, not message/http`)
    t.notMatch(text, /hunter2|s3cret|Cookie|Authorization/i, `TRACE ${url}: the request is not echoed`)
    t.equal(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).code, 'METHOD_NOT_ALLOWED')
  }
  for (const method of ['TRACE', 'PROPFIND', 'SEARCH']) {
    const text = await rawExchange(port, `${method} /nope HTTP/1.1\r\nHost: x\r\nCookie: session=hunter2\r\nConnection: close\r\n\r\n`)
    t.match(text, /^HTTP\/1.1 404 /, `${method} /nope: 404`)
    t.notMatch(text, /hunter2/)
    t.same(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), { error: `No route for ${method} /nope`, code: 'NOT_FOUND', statusCode: 404 })
  }
  // The served verbs are served as before.
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200)
  t.equal((await app.inject({ method: 'OPTIONS', url: '/ner' })).statusCode, 204)
})

t.test('an unknown path is a 404 from its headers: its body is never parsed nor waited for', async t => {
  const app = await build(t)
  const cases: Array<[string, { method: 'POST' | 'PUT', headers?: Record<string, string>, payload?: string }]> = [
    ['a body that is not JSON', { method: 'POST', headers: { 'content-type': 'application/json' }, payload: '{not json' }],
    ['an unsupported content type', { method: 'POST', headers: { 'content-type': 'text/csv' }, payload: 'a,b' }],
    ['a body over the limit', { method: 'PUT', headers: { 'content-type': 'application/json' }, payload: `"${'x'.repeat(2 * 1024 * 1024)}"` }],
  ]
  for (const [what, request] of cases) {
    const res = await app.inject({ url: '/nope', ...request })
    t.equal(res.statusCode, 404, what)
    t.same(res.json(), { error: `No route for ${request.method} /nope`, code: 'NOT_FOUND', statusCode: 404 }, what)
  }
  // Over a socket: the headers announce a body that never comes; the 404 does not wait for it.
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const socket = connect(port, '127.0.0.1', () => socket.write('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{'))
  t.teardown(() => socket.destroy())
  const head = await new Promise<string>((resolve, reject) => {
    socket.once('data', chunk => resolve(chunk.toString()))
    socket.once('error', reject)
    setTimeout(() => resolve('no answer within 3 s'), 3000).unref()
  })
  t.match(head, /^HTTP\/1.1 404 /)
  // Known paths still read their bodies: a bad one is a 400 there.
  t.equal((await app.inject({ method: 'POST', url: '/ner', headers: { 'content-type': 'application/json' }, payload: '{not json' })).statusCode, 400)
})

t.test('a trailing slash names the same route: /ner/ is /ner, for resources, health, OIP and the 405s', async t => {
  const app = await build(t)
  const sentence = JSON.stringify({ text: 'Alice lives in Paris.' })
  const plain = await app.inject({ method: 'POST', url: '/ner', headers: { 'content-type': 'application/json' }, payload: sentence })
  const slashed = await app.inject({ method: 'POST', url: '/ner/', headers: { 'content-type': 'application/json' }, payload: sentence })
  t.equal(slashed.statusCode, 200, `POST /ner/: ${slashed.body}`)
  t.same(slashed.json(), plain.json())
  t.equal((await app.inject({ url: '/health/ready/' })).statusCode, 200)
  t.equal((await app.inject({ url: '/v2/models/scaler/' })).json().name, 'scaler')
  const wrongVerb = await app.inject({ method: 'DELETE', url: '/ner/' })
  t.equal(wrongVerb.statusCode, 405)
  t.equal(wrongVerb.headers.allow, 'POST, GET, HEAD, OPTIONS')
  t.equal((await app.inject({ url: '/nope/' })).statusCode, 404, 'an unknown path stays unknown')
})

t.test('HEAD is 405 on a resource without GET', async t => {
  const app = await bareApp(t)
  app.mount('/faulty', new Faulty())
  await app.loadResources()
  const res = await app.inject({ method: 'HEAD', url: '/faulty' })
  t.equal(res.statusCode, 405)
  t.equal(res.headers.allow, 'POST, OPTIONS')
})

t.test('one error format: unknown route, malformed JSON, wrong type, unknown field, missing field', async t => {
  const app = await build(t)
  const cases: Array<[string, Record<string, unknown>, number, string, RegExp]> = [
    ['unknown route', { method: 'GET', url: '/nope?x=1' }, 404, 'NOT_FOUND', /^No route for GET \/nope$/],
    // Quoted whole, a path of 10,000 characters made a 10 kB message (up to Node's 16 KB header limit).
    ['a long unknown path', { method: 'GET', url: `/${'a'.repeat(10_000)}` }, 404, 'NOT_FOUND', /^No route for GET \/a{99}\.\.\.$/],
    // fastify's message said neither where nor why ("Body is not valid JSON but content-type is set to 'application/json'").
    ['malformed JSON', { method: 'POST', url: '/scale', payload: '{"rows": [', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_JSON', /^Body is not valid JSON: Unexpected end of JSON input$/],
    ['JSON then text', { method: 'POST', url: '/scale', payload: '{"rows": []} and more', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_JSON', /^Body is not valid JSON: .*position 13/],
    // Valid JSON, refused by fastify's parser (prototype poisoning): it said "not valid JSON".
    ['a __proto__ key', { method: 'POST', url: '/scale', payload: '{"rows": [[1, 2, 3, 4]], "__proto__": {}}', headers: { 'content-type': 'application/json' } }, 400, 'BAD_REQUEST', /^body has a __proto__ or constructor\.prototype key, which is refused \(prototype poisoning\)$/],
    ['a constructor.prototype key', { method: 'POST', url: '/scale', payload: '{"rows": [[1, 2, 3, 4]], "constructor": {"prototype": {}}}', headers: { 'content-type': 'application/json' } }, 400, 'BAD_REQUEST', /prototype poisoning/],
    ['empty JSON body', { method: 'POST', url: '/scale', payload: '', headers: { 'content-type': 'application/json' } }, 400, 'INVALID_JSON', /empty/i],
    ['string for number', { method: 'POST', url: '/scale', payload: { rows: [['1.5', 2, 3, 4]] } }, 400, 'VALIDATION_FAILED', /^body\.rows\[0\]\[0\] must be number$/],
    ['unknown field', { method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3, 4]], extra: true } }, 400, 'VALIDATION_FAILED', /^body has an unknown field 'extra'$/],
    // Quoted whole, a 500 kB name made a 500 kB message.
    ['a long unknown field', { method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3, 4]], ['k'.repeat(500_000)]: true } }, 400, 'VALIDATION_FAILED', /^body has an unknown field 'k{100}\.\.\.'$/],
    ['missing field', { method: 'POST', url: '/scale', payload: {} }, 400, 'VALIDATION_FAILED', /^body is missing the required field 'rows'$/],
    ['wrong row length', { method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3]] } }, 400, 'VALIDATION_FAILED', /^body\.rows\[0\] must NOT have fewer than 4 items$/],
    ['no body at all', { method: 'POST', url: '/scale' }, 400, 'VALIDATION_FAILED', /^the request has no body: send a JSON object with content-type application\/json$/],
    ['body not an object', { method: 'POST', url: '/scale', payload: '[1]', headers: { 'content-type': 'application/json' } }, 400, 'VALIDATION_FAILED', /^body must be object$/],
    // fastify's own message was "Unsupported Media Type": neither what came nor what to send.
    ['text/plain', { method: 'POST', url: '/scale', payload: 'rows', headers: { 'content-type': 'text/plain' } }, 415, 'UNSUPPORTED_MEDIA_TYPE', /^content-type 'text\/plain' is not supported: send the body as application\/json$/],
    ['no content type', { method: 'POST', url: '/scale', payload: 'rows', headers: { 'content-type': '' } }, 415, 'UNSUPPORTED_MEDIA_TYPE', /^the body has no content-type: send it as application\/json$/],
    ['a long content type', { method: 'POST', url: '/scale', payload: 'rows', headers: { 'content-type': `text/${'x'.repeat(500)}` } }, 415, 'UNSUPPORTED_MEDIA_TYPE', /^content-type 'text\/x{95}\.\.\.' is not supported/],
    // fastify ignores Content-Encoding: a gzip body was "not valid JSON", a plain one labelled gzip was read.
    ['gzip body', { method: 'POST', url: '/scale', payload: gzipSync('{"rows": [[1, 2, 3, 4]]}'), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }, 415, 'UNSUPPORTED_MEDIA_TYPE', /^content-encoding 'gzip' is not supported on this route: send the body uncompressed$/],
    ['plain body labelled br', { method: 'POST', url: '/scale', payload: '{"rows": [[1, 2, 3, 4]]}', headers: { 'content-type': 'application/json', 'content-encoding': 'br' } }, 415, 'UNSUPPORTED_MEDIA_TYPE', /^content-encoding 'br' is not supported/],
    ['a path that does not decode', { method: 'GET', url: '/%zz' }, 400, 'BAD_REQUEST', /not a valid url component/],
  ]
  for (const [name, request, status, code, message] of cases) {
    const res = await app.inject(request as never)
    t.equal(res.statusCode, status, `${name}: status`)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['code', 'error', 'statusCode'], `${name}: exactly the error fields`)
    t.equal(body.code, code, `${name}: code`)
    t.equal(body.statusCode, status, `${name}: statusCode field`)
    t.match(body.error, message, `${name}: message`)
    t.match(res.headers['content-type'], /application\/json/)
  }
})

/** Sends raw bytes on a new connection; resolves with everything the server wrote before closing it. */
function rawExchange (port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
    let text = ''
    socket.on('data', chunk => { text += chunk })
    socket.on('close', () => resolve(text))
    socket.on('error', reject)
  })
}

t.test('requests Node cannot parse get the error format, and the connection closes', async t => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const cases: Array<[string, string, number, string]> = [
    ['a header line without a colon', 'GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'BAD_REQUEST'],
    ['Content-Length with Transfer-Encoding', 'POST /scale HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'BAD_REQUEST'],
    ['headers over 16 KB', `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    // Node answered these two itself, with no body.
    ['an HTTP/1.1 request without Host', 'POST /scale HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"rows": [[1, 2, 3, 4]]}', 400, 'BAD_REQUEST'],
    // Node passed the body on still gzip-coded: a plain one labelled so was served.
    ['a transfer coding besides chunked', 'POST /scale HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nContent-Type: application/json\r\n\r\n18\r\n{"rows": [[1, 2, 3, 4]]}\r\n0\r\n\r\n', 501, 'NOT_IMPLEMENTED'],
    // Node closed this one without an answer.
    ['CONNECT', 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n', 405, 'METHOD_NOT_ALLOWED'],
    ['an Expect other than 100-continue', 'POST /scale HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"rows": [[1, 2, 3, 4]]}', 417, 'EXPECTATION_FAILED'],
  ]
  for (const [what, bytes, status, code] of cases) {
    const text = await rawExchange(port, bytes)
    t.match(text, new RegExp(`^HTTP/1.1 ${status} `), `${what}: status`)
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
    t.same(Object.keys(body).sort(), ['code', 'error', 'statusCode'], `${what}: the error fields`)
    t.match(body, { code, statusCode: status }, what)
  }
  // HTTP/1.0 has no Host to require.
  t.match(await rawExchange(port, 'GET /health/live HTTP/1.0\r\n\r\n'), /^HTTP\/1.1 200 /)
})

t.test('a body refused once read whole keeps its connection: a request pipelined behind it is answered', async t => {
  // fastify closed the connection after every body its parser refused ("the
  // client may send more data"), though these parsers read the body whole
  // first: the good request pipelined behind a malformed one got no answer.
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const post = (path: string, body: string | Buffer, headers = 'Content-Type: application/json\r\n') =>
    Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`), Buffer.from(body)])
  const good = post('/scale', '{"rows": [[1, 2, 3, 4]]}')
  const cases: Array<[string, Buffer, number]> = [
    ['malformed JSON', post('/scale', '{"rows": ['), 400],
    ['a body that is not UTF-8', post('/scale', Buffer.from([0x7b, 0xff, 0x7d])), 400],
    ['an empty JSON body', post('/scale', ''), 400],
    ['a __proto__ key', post('/scale', '{"__proto__": {}}'), 400],
    ['a gzip body on a resource route', post('/scale', gzipSync('{}'), 'Content-Type: application/json\r\nContent-Encoding: gzip\r\n'), 415],
    ['OIP: malformed JSON', post('/v2/models/scaler/infer', '{"inputs": ['), 400],
    ['OIP: a header length past the body', post('/v2/models/scaler/infer', '{}', 'Inference-Header-Content-Length: 99\r\n'), 400],
    ['OIP: a body that is not gzip', post('/v2/models/scaler/infer', 'plain', 'Content-Type: application/json\r\nContent-Encoding: gzip\r\n'), 400],
    ['OIP: an unsupported content type', post('/v2/models/scaler/infer', '{}', 'Content-Type: text/csv\r\n'), 415],
  ]
  for (const [what, bad, status] of cases) {
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.concat([bad, good])))
      let got = ''
      socket.on('data', chunk => {
        got += chunk
        // Both answers are in once the second one's body (the scaled rows) is.
        if (/"rows":\[\[/.test(got)) socket.end()
      })
      socket.on('close', () => resolve(got))
      socket.on('error', reject)
      setTimeout(() => socket.destroy(), 3000).unref()
    })
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map(m => Number(m[1]))
    t.same(statuses, [status, 200], `${what}: answered, then the request behind it`)
    t.notMatch(text, /connection: close/i, `${what}: the connection is kept`)
  }
})

/** One request on a keep-alive agent-less connection; resolves with the response once read. */
function get (port: number, path: string, headers: Record<string, string> = {}): Promise<{ res: IncomingMessage, body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', path, headers: { connection: 'keep-alive', ...headers } }, res => {
      let body = ''
      res.on('data', chunk => { body += chunk })
      res.on('end', () => resolve({ res, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('--keep-alive 0 closes each connection after its answer (fastify would read 0 as 72 s)', async t => {
  const app = await build(t, { keepAliveTimeoutMs: 0 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const { res } = await get(port, '/health/live')
  t.equal(res.statusCode, 200)
  t.equal(res.headers.connection, 'close')
  t.notOk(res.headers['keep-alive'], 'no Keep-Alive: timeout=72')
})

t.test('a request in flight when the drain begins answers with Connection: close', async t => {
  const app = await bareApp(t)
  app.mount('/pause', new Pause(150))
  await app.loadResources()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const inFlight = get(port, '/pause')
  await new Promise(resolve => setTimeout(resolve, 50))
  app.drain()
  const { res } = await inFlight
  t.equal(res.statusCode, 200)
  t.equal(res.headers.connection, 'close', 'the client leaves; its connection does not hold the drain open')
})

t.test('a client that reads nothing of a large answer has its connection closed after the send timeout', async t => {
  // Node sets no limit: the 6 MB answer to 64 texts and its connection were held for good.
  const app = await build(t, { sendTimeoutMs: 300 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const body = JSON.stringify({ texts: Array.from({ length: 64 }, () => 'a '.repeat(1999) + 'a') })
  const connections = () => new Promise<number>((resolve, reject) => app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
  // A client that never reads: it does not even see the server close (its socket is paused).
  const socket = connect(port, '127.0.0.1', () => socket.write(`POST /pos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`))
  socket.pause()
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  let open = 1
  for (let waited = 0; waited < 8000 && open > 0; waited += 100) {
    await new Promise(resolve => setTimeout(resolve, 100))
    open = await connections()
  }
  t.equal(open, 0, 'the server closed the connection')
  // A client that reads gets the whole answer, small or large (inject's stand-in socket too).
  const small = await app.inject({ method: 'POST', url: '/pos', payload: { text: 'Go!' } })
  t.equal(small.statusCode, 200)
  const injected = await app.inject({ method: 'POST', url: '/pos', payload: body, headers: { 'content-type': 'application/json' } })
  t.equal(injected.statusCode, 200)
  t.equal(injected.json().results.length, 64)
  const { res, body: answer } = await new Promise<{ res: IncomingMessage, body: string }>((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', path: '/pos', method: 'POST', headers: { 'content-type': 'application/json' } }, res => {
      let text = ''
      res.on('data', chunk => { text += chunk })
      res.on('end', () => resolve({ res, body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })
  t.equal(res.statusCode, 200)
  t.equal(JSON.parse(answer).results.length, 64)
})

t.test('body over the limit is 413 in the error format', async t => {
  const app = await build(t, { bodyLimit: 200 })
  const rows = Array.from({ length: 20 }, () => [1, 2, 3, 4])
  const res = await app.inject({ method: 'POST', url: '/scale', payload: { rows } })
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'PAYLOAD_TOO_LARGE')
  // fastify's message was "Request body is too large", which did not say how large may be.
  t.equal(res.json().error, 'the request body is larger than this route\'s limit of 200 bytes')
  // Refused on Content-Length alone, before reading, and on the OIP routes too.
  const declared = await app.inject({ method: 'POST', url: '/scale', payload: '{}', headers: { 'content-type': 'application/json', 'content-length': '100000' } })
  t.equal(declared.statusCode, 413)
  t.match(declared.json().error, /limit of 200 bytes/)
  const oip = await app.inject({ method: 'POST', url: '/v2/models/scaler/infer', payload: { inputs: [{ name: 'x', shape: [20, 4], datatype: 'FP32', data: rows.flat() }] } })
  t.equal(oip.statusCode, 413)
  t.match(oip.json().error, /limit of 200 bytes/)
})

t.test('a 5xx never shows its message or stack, and is logged with its cause', async t => {
  const lines: string[] = []
  const app = await bareApp(t, { logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } as never })
  app.mount('/faulty', new Faulty())
  await app.loadResources()
  const res = await app.inject({ method: 'POST', url: '/faulty', payload: { kind: 'bug' } })
  t.equal(res.statusCode, 500)
  t.same(res.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  t.notMatch(res.body, /hunter2|secret|at /)
  t.match(lines.join(''), /hunter2/, 'the real error is in the log')
  const client = await app.inject({ method: 'POST', url: '/faulty', payload: { kind: 'client' } })
  t.same(client.json(), { error: 'kind client is refused', code: 'BAD_REQUEST', statusCode: 400 })
  // The app keeps serving after the failure.
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200)
})

t.test('a client that leaves while its body is read is not logged as an error', async t => {
  // fastify's body reader passes Node's 'aborted' (ECONNRESET) on to the error
  // handler, which logged it as an unhandled error with its stack (a 500).
  const lines: string[] = []
  const app = await build(t, { logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } as never })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  for (const url of ['/scale', '/v2/models/scaler/infer']) {
    await new Promise<void>(resolve => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`POST ${url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"rows": [`)
        setTimeout(() => socket.destroy(), 50)
      })
      socket.on('close', () => setTimeout(resolve, 50))
    })
  }
  t.same(lines, [], 'nothing logged at warn or above')
  t.equal((await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3, 4]] } })).statusCode, 200, 'still serving')
})

t.test('a handler that ends after its deadline answered 504 logs nothing, unless it failed for real', async t => {
  // fastify logs a late answer as a warning ("Reply was already sent") and a
  // late failure as an error with its stack, for requests that ended as they
  // should: the deadline answered.
  const lines: string[] = []
  const app = await bareApp(t, { logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } as never })
  app.mount('/late', new PastDeadline())
  await app.loadResources()
  for (const method of ['GET', 'POST'] as const) {
    const res = await app.inject({ method, url: '/late', ...(method === 'POST' ? { payload: {} } : {}) })
    t.equal(res.statusCode, 504, `${method}: the deadline answers`)
    t.equal(res.json().code, 'TIMEOUT')
  }
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(lines, [], 'no warning, no error')
  // A failure of its own that comes after the 504 is still logged.
  const failed = await app.inject({ method: 'PUT', url: '/late', payload: {} })
  t.equal(failed.statusCode, 504)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(lines.length, 1, 'one line')
  t.match(lines.join(''), /a real failure after the deadline/)
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200, 'the app keeps serving')
})

t.test('the docs page\'s files refuse a Range or precondition they cannot meet with a 4xx in the error format, not a 500', async t => {
  // @fastify/send's http-errors (416, 412) reached the app's error handler as
  // errors of ours: a 500 logged with its stack. Its 403 had code BAD_REQUEST.
  const errors: string[] = []
  const app = await build(t, { logger: { level: 'error', stream: { write: (line: string) => { errors.push(line) } } } })
  const url = '/docs/static/swagger-ui.css'
  const whole = await app.inject({ url })
  t.equal(whole.statusCode, 200)
  const size = Buffer.byteLength(whole.body)
  const cases: Array<[string, Record<string, string>, string, number, string]> = [
    ['a Range past the end', { range: `bytes=${size + 10}-` }, url, 416, 'RANGE_NOT_SATISFIABLE'],
    ['an If-Match no version matches', { 'if-match': '"nope"' }, url, 412, 'PRECONDITION_FAILED'],
    ['an If-Unmodified-Since before the file', { 'if-unmodified-since': 'Mon, 01 Jan 1990 00:00:00 GMT' }, url, 412, 'PRECONDITION_FAILED'],
    ['a path with a NUL byte', {}, '/docs/static/%00', 403, 'FORBIDDEN'],
  ]
  for (const [what, headers, path, status, code] of cases) {
    const res = await app.inject({ url: path, headers })
    t.equal(res.statusCode, status, `${what}: ${res.body}`)
    t.match(res.json(), { code, statusCode: status }, what)
    t.same(Object.keys(res.json()).sort(), ['code', 'error', 'statusCode'], `${what}: the error fields`)
  }
  const range = await app.inject({ url, headers: { range: `bytes=${size + 10}-` } })
  t.equal(range.headers['content-range'], `bytes */${size}`, 'a 416 says the size (RFC 9110 15.5.17)')
  // A satisfiable range is still served.
  const part = await app.inject({ url, headers: { range: 'bytes=0-9' } })
  t.equal(part.statusCode, 206)
  t.equal(part.body, whole.body.slice(0, 10))
  t.same(errors, [], 'nothing logged as an error')
})

t.test('OpenAPI lists every mounted route; /docs serves a page', async t => {
  const app = await build(t)
  const doc = (await app.inject({ url: '/openapi.json' })).json()
  t.equal(doc.openapi, '3.0.3')
  t.ok(doc.paths['/scale'].post, 'POST /scale')
  t.ok(doc.paths['/scale'].get, 'GET /scale')
  t.notOk(doc.paths['/scale'].delete, '405 routes are hidden')
  t.ok(doc.paths['/health/ready'].get)
  t.ok(doc.paths['/scale'].post.requestBody.content['application/json'].schema.properties.rows)
  t.ok(doc.paths['/scale'].post.responses['200'])
  t.ok(doc.paths['/scale'].post.responses['4XX'] ?? doc.paths['/scale'].post.responses['4xx'])
  // Other verbs as on the other routes: 405 with Allow, and OPTIONS (they were 404s).
  const put = await app.inject({ method: 'PUT', url: '/openapi.json' })
  t.equal(put.statusCode, 405)
  t.same(put.json(), { error: 'PUT is not allowed on /openapi.json; allowed: GET, HEAD, OPTIONS', code: 'METHOD_NOT_ALLOWED', statusCode: 405 })
  t.equal(put.headers.allow, 'GET, HEAD, OPTIONS')
  const options = await app.inject({ method: 'OPTIONS', url: '/openapi.json' })
  t.equal(options.statusCode, 204)
  t.equal(options.headers.allow, 'GET, HEAD, OPTIONS')
  t.notOk((await app.inject({ url: '/openapi.json' })).json().paths['/openapi.json'], 'still not in the document itself')
  const docs = await app.inject({ url: '/docs' })
  t.equal(docs.statusCode, 200)
  t.match(docs.headers['content-type'], /text\/html/)
  t.match(docs.body, /swagger/i)
})
