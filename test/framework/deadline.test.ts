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
