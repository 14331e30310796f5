// request.deadline (the light AbortSignal look-alike every request gets) and
// request.abortSignal (a real AbortSignal made from it on first use).
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { connect } from 'node:net'
import { ClientGoneError, RequestDeadline } from '../../framework/deadline.ts'
import { Resource, responder } from '../../framework/resource.ts'
import { bareApp } from '../fixtures/build.ts'

t.test('RequestDeadline behaves like an AbortSignal for its listeners', async t => {
  const deadline = new RequestDeadline()
  t.equal(deadline.aborted, false)
  t.equal(deadline.remainingMs, Infinity)
  const calls: string[] = []
  const kept = () => calls.push('kept')
  const removed = () => calls.push('removed')
  deadline.addEventListener('abort', kept)
  deadline.addEventListener('abort', removed)
  deadline.removeEventListener('abort', removed)
  deadline.removeEventListener('abort', () => {}) // unknown: ignored
  t.doesNotThrow(() => deadline.throwIfAborted())
  const reason = new ClientGoneError()
  deadline.abort(reason)
  deadline.abort(new Error('second abort is ignored'))
  t.same(calls, ['kept'], 'each listener once, removed ones never')
  t.equal(deadline.aborted, true)
  t.equal(deadline.reason, reason)
  t.equal(deadline.remainingMs, 0)
  t.throws(() => deadline.throwIfAborted(), reason)
  deadline.addEventListener('abort', () => calls.push('late'))
  t.same(calls, ['kept'], 'a listener added after the abort is not called')
})

class Waiter extends Resource {
  seen: Array<{ deadline: boolean, signal: boolean, reason: string }> = []
  onPost = responder({
    schema: { body: Type.Object({ ms: Type.Number() }), response: { 200: Type.Object({ ok: Type.Boolean() }) } },
    timeoutMs: 100,
    handler: async (request) => {
      const early = request.body.ms < 0
      const signal = early ? request.abortSignal : undefined
      await new Promise(resolve => setTimeout(resolve, Math.abs(request.body.ms)))
      const real = signal ?? request.abortSignal
      this.seen.push({ deadline: request.deadline.aborted, signal: real.aborted, reason: String((real.reason as Error | undefined)?.name) })
      return { ok: true }
    },
  })
}

t.test('request.abortSignal is a real AbortSignal that follows the deadline, made before or after it fires', async t => {
  const app = await bareApp(t)
  const waiter = new Waiter()
  app.mount('/wait', waiter)
  await app.loadResources()
  const quick = await app.inject({ method: 'POST', url: '/wait', payload: { ms: 1 } })
  t.equal(quick.statusCode, 200)
  t.same(waiter.seen.shift(), { deadline: false, signal: false, reason: 'undefined' })
  // Made before the deadline: aborted by it. Made after: born aborted.
  for (const ms of [-250, 250]) {
    const slow = await app.inject({ method: 'POST', url: '/wait', payload: { ms } })
    t.equal(slow.statusCode, 504)
    await new Promise(resolve => setTimeout(resolve, 300))
    t.ok(waiter.seen.length > 0, 'the handler finished')
    t.same(waiter.seen.shift(), { deadline: true, signal: true, reason: 'DeadlineError' }, `abortSignal read ${ms < 0 ? 'before' : 'after'} the deadline`)
  }
})

class Sleeper extends Resource {
  onPost = responder({
    schema: { response: { 200: Type.Object({ ok: Type.Boolean() }) } },
    handler: async () => {
      await new Promise(resolve => setTimeout(resolve, 20))
      return { ok: true }
    },
  })
}

t.test('a deadline longer than a timer can wait (24.8 days) is no deadline, not one that fires at once', async t => {
  const app = await bareApp(t, { requestTimeoutMs: 0 })
  app.mount('/sleep', new Sleeper())
  await app.loadResources()
  for (const seconds of ['3000000', '1e10']) {
    const res = await app.inject({ method: 'POST', url: '/sleep', headers: { 'x-request-timeout': seconds } })
    t.equal(res.statusCode, 200, `${seconds} s: ${res.body}`)
  }
  const short = await app.inject({ method: 'POST', url: '/sleep', headers: { 'x-request-timeout': '0.005' } })
  t.equal(short.statusCode, 504, 'a short one still fires')
})

t.test('a body that has not all arrived at the deadline: 408 and the connection closes (not a 504 that kept it open)', async t => {
  const app = await bareApp(t, { requestTimeoutMs: 200 })
  app.mount('/sleep', new Sleeper())
  await app.loadResources()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const started = Date.now()
  const text = await new Promise<string>((resolve, reject) => {
    let text = ''
    // 20 bytes announced, 5 sent, and nothing more.
    const socket = connect(port, '127.0.0.1', () => socket.write('POST /sleep HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"ms"'))
    socket.on('data', chunk => { text += chunk })
    socket.on('close', () => resolve(text))
    socket.on('error', reject)
    setTimeout(() => { socket.destroy(); resolve(`${text} (still open after 3 s)`) }, 3000)
  })
  t.match(text, /^HTTP\/1.1 408 /)
  t.match(text, /\r\nconnection: close\r\n/i)
  t.same(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), { error: 'the request body did not arrive within 0.2 s', code: 'REQUEST_TIMEOUT', statusCode: 408 })
  t.ok(Date.now() - started < 2000, 'closed by the server at once')
  // A body that arrived and a handler past the deadline: still 504.
  const late = await app.inject({ method: 'POST', url: '/sleep', headers: { 'x-request-timeout': '0.005' } })
  t.equal(late.statusCode, 504)
})

/** Sleeps `ms` milliseconds, under the app's deadline. */
class Napper extends Resource {
  onPost = responder({
    schema: { body: Type.Object({ ms: Type.Number() }), response: { 200: Type.Object({ ok: Type.Boolean() }) } },
    handler: async (request) => {
      await new Promise(resolve => setTimeout(resolve, request.body.ms))
      return { ok: !request.deadline.aborted }
    },
  })
}

/** Opens a connection, writes `head`, then `drip` every `everyMs` (if any); resolves with what the server wrote and when it closed. */
function slowClient (port: number, head: string, drip?: { byte: string, everyMs: number }): Promise<{ text: string, closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    let text = ''
    let timer: NodeJS.Timeout | undefined
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(head)
      if (drip) timer = setInterval(() => { if (socket.writable) socket.write(drip.byte) }, drip.everyMs)
    })
    const done = (suffix = '') => {
      clearInterval(timer)
      clearTimeout(giveUp)
      resolve({ text: text + suffix, closedAfterMs: Date.now() - started })
    }
    socket.on('data', chunk => { text += chunk })
    socket.on('close', () => done())
    socket.on('error', err => { if ((err as NodeJS.ErrnoException).code !== 'EPIPE' && (err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err) })
    const giveUp = setTimeout(() => { socket.destroy(); done(' (still open after 4 s)') }, 4000)
  })
}

const errorOf = (text: string) => JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))

t.test('with no deadline (--timeout 0) a body that does not arrive within the body timeout: 408, closed; other requests unharmed', async t => {
  // The body read was bounded by the deadline alone: with none, a client
  // sending a byte every few seconds, or its headers and then nothing, held
  // its connection (and the request) for ever.
  const app = await bareApp(t, { requestTimeoutMs: 0, bodyTimeoutMs: 400 })
  app.mount('/wait', new Napper())
  app.mount('/sleep', new Sleeper())
  await app.loadResources()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const head = 'POST /sleep HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n'
  const dripping = slowClient(port, `${head}{"a":`, { byte: ' ', everyMs: 50 })
  const silent = slowClient(port, head)
  // Meanwhile, on other connections: requests are served, including one
  // whose handler runs past the body timeout (no deadline: it is not cut).
  const others = await Promise.all([
    app.inject({ method: 'POST', url: '/sleep' }),
    fetch(`http://127.0.0.1:${port}/sleep`, { method: 'POST' }).then(r => r.status),
    fetch(`http://127.0.0.1:${port}/wait`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ms: 700 }) }).then(r => r.status),
  ])
  t.equal(others[0].statusCode, 200)
  t.same(others.slice(1), [200, 200], 'served over HTTP, one of them for longer than the body timeout')
  for (const [what, { text, closedAfterMs }] of [['a byte every 50 ms', await dripping], ['headers, then nothing', await silent]] as const) {
    t.match(text, /^HTTP\/1.1 408 /, `${what}: 408`)
    t.match(text, /\r\nconnection: close\r\n/i, `${what}: Connection: close`)
    t.same(errorOf(text), { error: 'the request body did not arrive within 0.4 s', code: 'REQUEST_TIMEOUT', statusCode: 408 }, `${what}: the error format`)
    t.ok(closedAfterMs >= 350 && closedAfterMs < 2000, `${what}: closed by the server after the body timeout (${closedAfterMs} ms)`)
  }
  t.equal((await app.inject({ url: '/wait', method: 'POST', payload: { ms: 1 } })).statusCode, 200, 'still serving')
})

t.test('a body timeout shorter than the deadline answers first; a longer one leaves it to the deadline', async t => {
  for (const [requestTimeoutMs, bodyTimeoutMs, said] of [[5000, 300, '0.3'], [300, 5000, '0.3']] as const) {
    const app = await bareApp(t, { requestTimeoutMs, bodyTimeoutMs })
    app.mount('/sleep', new Sleeper())
    await app.loadResources()
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    const { text, closedAfterMs } = await slowClient(port, 'POST /sleep HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"ms"')
    t.match(text, /^HTTP\/1.1 408 /, `deadline ${requestTimeoutMs} ms, body timeout ${bodyTimeoutMs} ms`)
    t.equal(errorOf(text).error, `the request body did not arrive within ${said} s`)
    t.ok(closedAfterMs < 2000, `closed after ${closedAfterMs} ms`)
    // A body in time and a handler past the deadline: still the deadline's 504.
    const late = await app.inject({ method: 'POST', url: '/sleep', headers: { 'x-request-timeout': '0.005' } })
    t.equal(late.statusCode, 504)
  }
})

t.test('Node bounds reading a request too, also one already answered; that one closes without a second answer', async t => {
  const app = await bareApp(t, { requestTimeoutMs: 0, bodyTimeoutMs: 400 })
  app.mount('/sleep', new Sleeper())
  await app.loadResources()
  // Node's requestTimeout was fastify's 0 (no limit): the headers' time and the body timeout now.
  t.equal(app.server.requestTimeout, app.server.headersTimeout + 400)
  // The same, made short enough to watch. Node checks them every second
  // (its default, 30 s, would not close these within the 2.5 s below).
  app.server.requestTimeout = 600
  app.server.headersTimeout = 300
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  // A 405 is answered from the headers; Node reads and discards the body,
  // which never comes. It wrote a 408 after the 405 when it gave up.
  const { text, closedAfterMs } = await slowClient(port, 'PUT /sleep HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{')
  t.match(text, /^HTTP\/1.1 405 /)
  t.equal(text.match(/HTTP\/1.1/g)?.length, 1, `one answer: ${JSON.stringify(text.slice(-120))}`)
  t.ok(closedAfterMs >= 500 && closedAfterMs < 2500, `closed after Node's requestTimeout (${closedAfterMs} ms)`)
  // Headers that never end: Node's 408, in the error format.
  const headers = await slowClient(port, 'POST /sleep HTTP/1.1\r\nHost: x\r\n')
  t.match(headers.text, /^HTTP\/1.1 408 /)
  t.same(errorOf(headers.text), { error: 'the request did not arrive in time', code: 'REQUEST_TIMEOUT', statusCode: 408 })
})
