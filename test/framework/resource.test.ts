// The resource contract: responders by name, URI templates, suffixes, double mounts.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { bareApp } from '../fixtures/build.ts'
import { Greeter } from '../fixtures/resources.ts'
import { Resource, respondersOf, responder } from '../../framework/resource.ts'
import { toFastifyPath } from '../../framework/create-app.ts'
import { HttpError, type ErrorCode } from '../../framework/errors.ts'

t.test('URI templates with parameters; the same class mounted twice with different options', async t => {
  const app = await bareApp(t)
  app.mount('/hello/{name}', new Greeter('hello'))
  app.mount('/hola/{name}', new Greeter('hola'))
  app.mount('/hola/meta', new Greeter('hola'), { suffix: 'Metadata' })
  await app.loadResources()
  t.same((await app.inject({ url: '/hello/ada' })).json(), { message: 'hello, ada' })
  t.same((await app.inject({ url: '/hola/ada?times=2' })).json(), { message: 'hola, adahola, ada' })
  t.same((await app.inject({ url: '/hola/meta' })).json(), { greeting: 'hola' }, 'suffixed responder on its own route')
  const put = await app.inject({ method: 'PUT', url: '/hello/ada', payload: { count: 3 } })
  t.same(put.json(), { name: 'ada', count: 3 })
  // Query strings are coerced (they are strings by nature), bodies are not.
  const badQuery = await app.inject({ url: '/hello/ada?times=9' })
  t.equal(badQuery.statusCode, 400)
  t.equal(badQuery.json().error, 'querystring.times must be <= 3')
  const badBody = await app.inject({ method: 'PUT', url: '/hello/ada', payload: { count: '3' } })
  t.equal(badBody.json().error, 'body.count must be integer')
  // Suffixed mount answers only the suffixed verbs.
  const post = await app.inject({ method: 'POST', url: '/hola/meta', payload: {} })
  t.equal(post.statusCode, 405)
  t.equal(post.headers.allow, 'GET, HEAD, OPTIONS')
})

t.test('responders are found by name, with and without suffix', async t => {
  const g = new Greeter('x')
  t.same([...respondersOf(g).keys()].sort(), ['GET', 'PUT'])
  t.same([...respondersOf(g, 'Metadata').keys()], ['GET'])
  t.same([...respondersOf(g, 'Nothing').keys()], [])
})

t.test('mistakes fail at mount time with a clear message', async t => {
  class NotAResponder extends Resource {
    onGet = async () => ({})
  }
  class Empty extends Resource {}
  const app = await bareApp(t)
  t.throws(() => app.mount('/x', new NotAResponder()), /NotAResponder\.onGet looks like a responder but was not made with responder/)
  t.throws(() => app.mount('/y', new Empty()), /Empty has no responders to mount at \/y/)
  t.throws(() => app.mount('/z', new Greeter('a'), { suffix: 'Nope' }), /no responders with suffix 'Nope'/)
  t.throws(() => toFastifyPath('no-slash'), /must start with '\//)
  t.equal(toFastifyPath('/a/{id}/b/{other_id}'), '/a/:id/b/:other_id')
  // Served literally while OpenAPI listed a parameter: refused instead.
  t.throws(() => toFastifyPath('/a/{model-name}'), /'\{model-name\}' is not a parameter/)
  t.throws(() => toFastifyPath('/a/{1st}'), /'\{1st\}' is not a parameter/)
  t.throws(() => toFastifyPath('/a/{open'), /'\{open' is not a parameter/)
})

t.test('a responder under a name no route finds is refused at mount, not left unserved', async t => {
  const spec = { schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } }, handler: async () => ({ ok: true }) }
  class Typo extends Resource {
    onPost = responder(spec)
    onPots = responder(spec)
  }
  class LowerCase extends Resource {
    onget = responder(spec)
  }
  class BadSuffix extends Resource {
    onGet = responder(spec)
    onGet_meta = responder(spec)
  }
  const app = await bareApp(t)
  // Before, Typo mounted with POST alone (its onPots a silent 405), LowerCase had "no responders".
  t.throws(() => app.mount('/typo', new Typo()), /Typo\.onPots was made with responder\(\) but no route can find it: name it on<Verb> or on<Verb><Suffix>/)
  t.throws(() => app.mount('/lower', new LowerCase()), /LowerCase\.onget was made with responder\(\) but no route can find it/)
  t.throws(() => app.mount('/suffix', new BadSuffix()), /BadSuffix\.onGet_meta was made with responder\(\)/)
  // Other fields and getters are not responders, and are not read through getters.
  class Fine extends Resource {
    onPost = responder(spec)
    options = { on: true }
    get onlyWhenLoaded (): never { throw new Error('read before load') }
  }
  app.mount('/fine', new Fine())
})

t.test('a responder made without a schema or a handler is refused at mount, naming it', async t => {
  // responder()'s types require both; a JavaScript resource, or a cast, may still leave one out.
  const made = responder as (spec: object) => ReturnType<typeof responder>
  class NoSchema extends Resource {
    onGet = made({ handler: async () => ({}) })
  }
  class NoHandler extends Resource {
    onPost = made({ schema: {} })
  }
  class SchemaNotObject extends Resource {
    onGetMetadata = made({ schema: 'none', handler: async () => ({}) })
  }
  const app = await bareApp(t)
  // Before: "Cannot destructure property 'body' of 'r.schema' as it is undefined" at mount, and
  // a mount without a handler went through, every request a 500.
  t.throws(() => app.mount('/a', new NoSchema()), /NoSchema\.onGet was made with responder\(\) without a schema: give one \(schema: \{\} when the route takes and declares nothing\)/)
  t.throws(() => app.mount('/b', new NoHandler()), /NoHandler\.onPost was made with responder\(\) without a handler function/)
  t.throws(() => app.mount('/c', new SchemaNotObject(), { suffix: 'Metadata' }), /SchemaNotObject\.onGetMetadata was made with responder\(\) without a schema/)
})

t.test('mounting a class instead of an instance, or no object, is refused naming the mistake', async t => {
  class Doubler extends Resource {
    onGet = responder({ schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } }, handler: async () => ({ ok: true }) })
  }
  const mount = (app: Awaited<ReturnType<typeof bareApp>>, resource: unknown) => app.mount('/d', resource as Resource)
  const app = await bareApp(t)
  // Before: "Function has no responders to mount at /d", and null a TypeError on reading 'constructor'.
  t.throws(() => mount(app, Doubler), /cannot mount the class Doubler at \/d: mount an instance of it \(new Doubler\(\.\.\.\)\)/)
  t.throws(() => mount(app, null), /cannot mount null at \/d: give a resource object \(an instance of a class extending Resource\)/)
  t.throws(() => mount(app, 'doubler'), /cannot mount a string at \/d: give a resource object/)
})

t.test('a resource that does not extend Resource is served, its lifecycle methods being optional', async t => {
  // falcon's resources are plain objects; the README calls load, warmup and close optional.
  // Before: loadResources() failed on "resource.load is not a function", and close on "r.close is not a function".
  class Plain {
    onGet = responder({ schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } }, handler: async () => ({ ok: true }) })
  }
  const app = await bareApp(t)
  app.mount('/plain', new Plain() as unknown as Resource)
  await app.loadResources()
  t.same((await app.inject({ url: '/plain' })).json(), { ok: true })
  await app.close()
})

t.test('a responder timeoutMs that is not a number of milliseconds >= 0 is refused at mount, not served without a deadline', async t => {
  const made = (timeoutMs: unknown) => class Slow extends Resource {
    onPost = responder({ timeoutMs: timeoutMs as number, schema: {}, handler: async () => ({}) })
  }
  const app = await bareApp(t)
  // Before: each mounted, and its requests had no deadline at all.
  for (const bad of ['5s', -1, Number.NaN, Infinity]) {
    t.throws(() => app.mount('/slow', new (made(bad))()), /Slow\.onPost: timeoutMs must be a number of milliseconds >= 0 \(0: no deadline\), got /, String(bad))
  }
  app.mount('/none', new (made(0))())
  app.mount('/short', new (made(250))())
})

t.test('a params schema that names a field the URI template lacks is refused at mount, not a 400 on every request', async t => {
  class Item extends Resource {
    onGet = responder({
      schema: { params: Type.Object({ itemId: Type.String() }), response: { 200: Type.Object({ id: Type.String() }) } },
      handler: async (request) => ({ id: request.params.itemId }),
    })
  }
  class Fine extends Resource {
    onGet = responder({
      schema: { params: Type.Object({ id: Type.String() }), response: { 200: Type.Object({ id: Type.String() }) } },
      handler: async (request) => ({ id: request.params.id }),
    })
  }
  const app = await bareApp(t)
  // Before, it mounted, and every GET /items/5 was a 400 blaming the client: "params is missing the required field 'itemId'".
  t.throws(() => app.mount('/items/{id}', new Item()), /Item\.onGet: its params schema declares 'itemId', which \/items\/\{id\} does not have \(its parameters: id\)/)
  t.throws(() => app.mount('/items', new Item()), /Item\.onGet: its params schema declares 'itemId', which \/items does not have \(it has no parameters\)/)
  app.mount('/fine/{id}', new Fine())
  // A schema that declares some of the parameters only is fine: the others are not validated.
  app.mount('/fine/{id}/parts/{part}', new Fine())
  // fastify's wildcard is the parameter '*'.
  class Files extends Resource {
    onGet = responder({
      schema: { params: Type.Object({ '*': Type.String() }), response: { 200: Type.Object({ path: Type.String() }) } },
      handler: async (request) => ({ path: request.params['*'] }),
    })
  }
  app.mount('/files/*', new Files())
  await app.loadResources()
  t.same((await app.inject({ url: '/fine/5/parts/2' })).json(), { id: '5' })
  t.same((await app.inject({ url: '/files/a/b.txt' })).json(), { path: 'a/b.txt' })
})

t.test('a path mounted twice, or one the app serves itself, is refused naming what is there', async t => {
  const spec = { schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } }, handler: async () => ({ ok: true }) }
  class Reader extends Resource { onGet = responder(spec) }
  class Writer extends Resource { onPost = responder(spec) }
  const app = await bareApp(t)
  app.mount('/things/{id}', new Reader())
  // Before: fastify's "Method 'POST' already declared for route '/things/:name'",
  // a POST nobody declared (the 405 that Reader's mount answers it with).
  t.throws(() => app.mount('/things/{name}', new Writer()), /cannot mount Writer at \/things\/\{name\}: \/things\/\{id\} is already mounted \(Reader\); one resource per path: give Writer another path/)
  t.throws(() => app.mount('/things/{id}/', new Reader()), /cannot mount Reader at \/things\/\{id\}\/: \/things\/\{id\} is already mounted \(Reader\)/)
  // Before: "Method 'GET' already declared for route '/health/ready'".
  t.throws(() => app.mount('/health/ready', new Reader()), /cannot mount Reader at \/health\/ready: the app serves \/health\/ready itself \(health, metrics, docs\)/)
  // Another path is fine, and so is the same resource on another path.
  app.mount('/things', new Writer())
  app.mount('/other/{id}', new Reader())
  await app.loadResources()
  t.equal((await app.inject({ method: 'POST', url: '/things' })).statusCode, 200)
  t.equal((await app.inject({ url: '/things/1' })).statusCode, 200)
})

t.test('a resource mounted after loadResources() is refused: it would be served unloaded', async t => {
  const app = await bareApp(t)
  app.mount('/hello/{name}', new Greeter('hello'))
  await app.loadResources()
  t.throws(() => app.mount('/late/{name}', new Greeter('late')), /cannot mount \/late\/\{name\} after loadResources\(\)/)
})

t.test('an Intersect body accepts the fields of every part, and still no others', async t => {
  class Both extends Resource {
    onPost = responder({
      schema: { body: Type.Intersect([Type.Object({ a: Type.Number() }), Type.Object({ b: Type.Number() })]) },
      handler: async request => ({ sum: request.body.a + request.body.b }),
    })
  }
  const app = await bareApp(t)
  app.mount('/both', new Both())
  await app.loadResources()
  const ok = await app.inject({ method: 'POST', url: '/both', payload: { a: 1, b: 2 } })
  t.equal(ok.statusCode, 200, ok.body)
  t.same(ok.json(), { sum: 3 })
  t.equal((await app.inject({ method: 'POST', url: '/both', payload: { a: 1 } })).statusCode, 400)
})

t.test('an error with a 4xx statusCode that is not an HttpError is a 500 that hides its message', async t => {
  class Leaky extends Resource {
    onGet = responder({
      schema: {},
      handler: async () => { throw Object.assign(new Error('GET http://internal/secret failed'), { statusCode: 404 }) },
    })
  }
  const app = await bareApp(t)
  app.mount('/leaky', new Leaky())
  await app.loadResources()
  const res = await app.inject({ url: '/leaky' })
  t.equal(res.statusCode, 500)
  t.same(res.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
})

t.test('a handler that rejects with nothing (reject(), throw null) is a 500 in the error format, its log saying so', async t => {
  class Empty extends Resource {
    // A promise rejected with no reason, as `reject()` does.
    onGet = responder({ schema: {}, handler: () => Promise.reject(undefined) })
    onPost = responder({ schema: {}, handler: async () => { throw null } })
  }
  const lines: string[] = []
  const app = await bareApp(t, { logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } as never })
  app.mount('/empty', new Empty())
  await app.loadResources()
  // Before: {"statusCode":500,"code":"FST_ERR_FAILED_ERROR_SERIALIZATION","message":"Failed to serialize an error. ..."}.
  for (const method of ['GET', 'POST'] as const) {
    const res = await app.inject({ method, url: '/empty' })
    t.equal(res.statusCode, 500)
    t.same(res.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 }, method)
  }
  t.match(lines.join(''), /a handler threw or rejected with undefined/)
  t.match(lines.join(''), /a handler threw or rejected with null/)
})

t.test('an HttpError with a code the registry lacks is refused where it is made, not a 500 in fastify\'s words', async t => {
  // Before: the error handler answered {"error":"Internal Server Error","code":"FST_ERR_BAD_STATUS_CODE",...}.
  t.throws(() => new HttpError('TEAPOT' as ErrorCode, 'short and stout'), /HttpError: unknown code 'TEAPOT': use one of framework\/errors\.ts's ERROR_CODES \(BAD_REQUEST, /)
  t.equal(new HttpError('UNPROCESSABLE', 'no').statusCode, 422)
})

t.test('an HttpError with a header Node cannot send is refused where it is made, naming the header (it failed at send time with ERR_INVALID_CHAR)', async t => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ 'x-reason': 'line one\nline two' }, /HttpError: header 'x-reason' has an invalid value: .*newline/],
    [{ 'x-reason': 'caf\u00e9 \u2603' }, /HttpError: header 'x-reason' has an invalid value/],
    [{ 'retry after': '1' }, /HttpError: header name 'retry after' is not a valid HTTP header name/],
    [{ 'content-length': '5' }, /HttpError: header 'content-length' is set by the server for the error body/],
  ]
  for (const [headers, message] of bad) t.throws(() => new HttpError('NOT_READY', 'wait', { headers }), message, JSON.stringify(headers))
  t.same(new HttpError('NOT_READY', 'wait', { headers: { 'retry-after': '2' } }).headers, { 'retry-after': '2' })

  // A handler that makes one is a 500 in the error format, its log naming the header.
  class Header extends Resource {
    onGet = responder({ schema: {}, handler: async () => { throw new HttpError('TOO_MANY_REQUESTS', 'slow down', { headers: { 'x-limit': 'ten\r\nper second' } }) } })
  }
  const lines: string[] = []
  const app = await bareApp(t, { logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } as never })
  app.mount('/header', new Header())
  await app.loadResources()
  const res = await app.inject({ url: '/header' })
  t.equal(res.statusCode, 500)
  t.same(res.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  t.match(lines.join(''), /header 'x-limit' has an invalid value/)
})

t.test('close: every resource closes and the models are released, even when one close fails', async t => {
  const calls: string[] = []
  class Closing extends Resource {
    constructor (private readonly name: string, private readonly fails: boolean) { super() }
    async close () {
      calls.push(this.name)
      if (this.fails) throw new Error(`${this.name} failed to close`)
    }
    onGet = responder({ schema: {}, handler: async () => ({}) })
  }
  const app = await bareApp(t)
  app.mount('/one', new Closing('one', true))
  app.mount('/two', new Closing('two', false))
  await app.loadResources()
  await t.rejects(app.close(), /one failed to close/)
  t.same(calls, ['one', 'two'])
  t.equal(app.models.pool.computing, 0)
  await t.rejects(app.models.pool.run('x', {}), /inference pool is closed/, 'the models were released')
})

t.test('lifecycle: load, warmup and close run in order, once per resource', async t => {
  const calls: string[] = []
  class Tracked extends Resource {
    async load () { calls.push('load') }
    async warmup () { calls.push('warmup') }
    async close () { calls.push('close') }
    onGet = responder({ schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } }, handler: async () => ({ ok: true }) })
    onGetInfo = responder({ schema: {}, handler: async () => ({}) })
  }
  const app = await bareApp(t)
  const tracked = new Tracked()
  app.mount('/t', tracked)
  app.mount('/t/info', tracked, { suffix: 'Info' })
  await app.ready()
  await Promise.all([app.loadResources(), app.loadResources()])
  t.same(calls, ['load', 'warmup'])
  await app.close()
  t.same(calls, ['load', 'warmup', 'close'])
})

t.test('a load or warmup that throws fails naming the resource and the step', async t => {
  class Fine extends Resource { onGet = responder({ schema: {}, handler: async () => ({}) }) }
  class Flaky extends Resource {
    async load () { throw new Error('ECONNREFUSED 127.0.0.1:6379') }
    onGet = responder({ schema: {}, handler: async () => ({}) })
  }
  class Cold extends Resource {
    async warmup () { throw new TypeError("Cannot read properties of undefined (reading 'run')") }
    onGet = responder({ schema: {}, handler: async () => ({}) })
  }
  // Before: the bare message, "ECONNREFUSED 127.0.0.1:6379", on stderr and in readiness, with no word of whose.
  for (const [Failing, expected] of [
    [Flaky, /^Flaky\.load\(\) failed: ECONNREFUSED 127\.0\.0\.1:6379$/],
    [Cold, /^Cold\.warmup\(\) failed: Cannot read properties of undefined \(reading 'run'\)$/],
  ] as const) {
    const app = await bareApp(t)
    app.mount('/fine', new Fine())
    app.mount('/failing', new Failing())
    const err = await app.loadResources().then(() => undefined, (e: Error) => e)
    t.match(err?.message, expected)
    t.type((err as Error).cause, Error, 'the original error is its cause')
    const ready = await app.inject({ url: '/health/ready' })
    t.equal(ready.statusCode, 503)
    t.match(ready.json().reason ?? ready.body, `${Failing.name}.`, 'readiness names the resource')
  }
})

t.test('a load that exceeds the load timeout fails readiness', async t => {
  class Sluggish extends Resource {
    async load () { await new Promise(resolve => setTimeout(resolve, 5000)) }
    onGet = responder({ schema: {}, handler: async () => ({}) })
  }
  const app = await bareApp(t, { loadTimeoutMs: 100 })
  app.mount('/s', new Sluggish())
  await t.rejects(app.loadResources(), /models did not load within 0.1 s \(the load timeout\)/)
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 503)
})

t.test('an async responder that returns nothing and sends nothing is a logged 500, not an empty 200', async t => {
  // responder()'s types refuse the async ones now (HandlerReturn in
  // framework/resource.ts); the run-time check stays for untyped callers.
  class Forgetful extends Resource {
    onPost = responder({
      schema: { body: Type.Object({ x: Type.Number() }), response: { 200: Type.Object({ y: Type.Number() }) } },
      // @ts-expect-error an async handler with a 200 schema must return its answer
      handler: async (request) => { void request.body.x },
    })

    onGet = responder({
      schema: { response: { 200: Type.Object({ y: Type.Number() }) } },
      handler: () => undefined,
    })

    onPut = responder({
      schema: { response: { 204: Type.Null() } },
      handler: async (_request, reply) => { reply.code(204) },
    })

    // Typed code writes `return reply.send(...)`; not returning it is still answered.
    onDelete = responder({
      schema: { response: { 200: Type.Object({ y: Type.Number() }) } },
      // @ts-expect-error returns nothing (the types cannot tell it sent)
      handler: async (_request, reply) => { reply.send({ y: 1 }) },
    })

    onGetSuffixed = responder({
      schema: { response: { 200: Type.Object({ y: Type.Number() }) } },
      // @ts-expect-error an async handler with a 200 schema must return its answer
      handler: async () => undefined,
    })
  }
  const lines: string[] = []
  const app = await bareApp(t, { requestTimeoutMs: 300, logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } as never })
  const forgetful = new Forgetful()
  app.mount('/f', forgetful)
  app.mount('/f/s', forgetful, { suffix: 'Suffixed' })
  await app.loadResources()

  const post = await app.inject({ method: 'POST', url: '/f', payload: { x: 1 } })
  t.equal(post.statusCode, 500, 'an async responder: fastify sent an empty 200')
  t.same(post.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  // A sync one may still send from a callback: left to its deadline.
  const get = await app.inject({ url: '/f' })
  t.equal(get.statusCode, 504, 'a sync responder: waits for the deadline')
  t.equal((await app.inject({ url: '/f/s' })).statusCode, 500)
  t.match(lines.join(''), /Forgetful\.onPost returned nothing and sent nothing/)
  t.match(lines.join(''), /Forgetful\.onGetSuffixed returned nothing/)

  // What is not forgetting: a 204, and an answer sent with reply.send.
  t.equal((await app.inject({ method: 'PUT', url: '/f' })).statusCode, 204)
  const sent = await app.inject({ method: 'DELETE', url: '/f' })
  t.equal(sent.statusCode, 200)
  t.same(sent.json(), { y: 1 })
})

t.test('a responder that returns a typed array of numbers (a model output) is a logged 500, not its raw bytes in a 200', async t => {
  // The types refuse it (a Float32Array is not the schema's answer); an untyped caller may still do it.
  class RawOutput extends Resource {
    onPost = responder({
      schema: { body: Type.Object({ x: Type.Number() }), response: { 200: Type.Array(Type.Number()) } },
      handler: async () => new Float32Array([1.5, 2]) as unknown as number[],
    })

    onGet = responder({
      schema: {},
      handler: () => new Int32Array([7]),
    })

    // Bytes are bytes: a Buffer (or a Uint8Array) is sent as fastify sends it.
    onPut = responder({
      schema: {},
      handler: async (_request, reply) => reply.type('text/plain').send(Buffer.from('ok')),
    })
  }
  const lines: string[] = []
  const app = await bareApp(t, { logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } as never })
  app.mount('/raw', new RawOutput())
  await app.loadResources()

  // Before: 200, application/octet-stream, the 8 bytes of the floats.
  const post = await app.inject({ method: 'POST', url: '/raw', payload: { x: 1 } })
  t.equal(post.statusCode, 500)
  t.same(post.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  const get = await app.inject({ url: '/raw' })
  t.equal(get.statusCode, 500, 'a sync responder too')
  t.match(lines.join(''), /RawOutput\.onPost returned a Float32Array, which would be sent as its raw bytes: return its values in the JSON answer \(Array\.from\)/)
  t.match(lines.join(''), /RawOutput\.onGet returned an Int32Array/)
  const put = await app.inject({ method: 'PUT', url: '/raw' })
  t.equal(put.statusCode, 200)
  t.equal(put.body, 'ok')
})

t.test('a sync responder that answers later from a callback (reply.send) is answered, not a 500', async t => {
  // fastify's sync handlers may return nothing and send from a callback.
  class Later extends Resource {
    onGet = responder({
      schema: { response: { 200: Type.Object({ y: Type.Number() }) } },
      handler: (_request, reply) => { setTimeout(() => reply.send({ y: 2 }), 20) },
    })
  }
  const app = await bareApp(t, { requestTimeoutMs: 2000 })
  app.mount('/later', new Later())
  await app.loadResources()
  const res = await app.inject({ url: '/later' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { y: 2 })
})

t.test('a responder kept under a helper name and mounted under route names (shared by two verbs) is served', async t => {
  class Shared extends Resource {
    private readonly update = responder({
      schema: { body: Type.Object({ x: Type.Number() }), response: { 200: Type.Object({ y: Type.Number() }) } },
      handler: async (request) => ({ y: request.body.x * 2 }),
    })

    onPut = this.update
    onPatch = this.update
  }
  const app = await bareApp(t)
  app.mount('/shared', new Shared())
  await app.loadResources()
  for (const method of ['PUT', 'PATCH'] as const) {
    const res = await app.inject({ method, url: '/shared', payload: { x: 2 } })
    t.equal(res.statusCode, 200, method)
    t.same(res.json(), { y: 4 }, method)
  }
})
