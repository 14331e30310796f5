// Queue bounds and deadlines as clients see them: 503 + Retry-After at once
// when a model's queue is full (health still answers), 504 at the deadline
// with the model never running that request, and a disconnected client's
// request dropped before it computes.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request as httpRequest } from 'node:http'
import { createApp } from '../../framework/create-app.ts'
import { RowsResource, affineModel, slowAffineModel } from '../fixtures/batching.ts'


/** An app with /affine (fast) and /slow (about half a second per run) on one inference thread. */
async function app (t: Test, config: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-batching-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'affine.onnx'), affineModel())
  writeFileSync(join(dir, 'affine.json'), JSON.stringify(config))
  writeFileSync(join(dir, 'slow.onnx'), slowAffineModel(100, 512))
  const app = await createApp({ modelsDir: dir, threads: 1, requestTimeoutMs: 10_000 })
  t.teardown(() => app.close())
  app.mount('/affine', new RowsResource('affine'))
  app.mount('/slow', new RowsResource('slow'))
  await app.ready()
  await app.loadResources()
  return app
}

const body = (v: number, n = 1) => ({ rows: Array.from({ length: n }, () => [v, v, v, v]) })

t.test('concurrent requests are batched and each gets its own answer', async t => {
  const a = await app(t)
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  await new Promise(resolve => setImmediate(resolve))
  const answers = await Promise.all([1, 2, 3, 4, 5].map(v => a.inject({ method: 'POST', url: '/affine', payload: body(v, v % 2 + 1) })))
  answers.forEach((res, i) => {
    const v = i + 1
    t.equal(res.statusCode, 200)
    t.same(res.json(), body(v * 2 + 1, v % 2 + 1))
  })
  t.equal((await slow).statusCode, 200)
  t.match(a.models.pool.stats('affine'), { batches: 1, requests: 5, items: 8 })
})

t.test('a full queue answers 503 with Retry-After at once; health is never refused', async t => {
  const a = await app(t, { maxQueueItems: 3 })
  t.equal(a.models.pool.batchOptions('affine').maxQueueItems, 3, 'from affine.json')
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  await new Promise(resolve => setImmediate(resolve))
  const admitted = [a.inject({ method: 'POST', url: '/affine', payload: body(1, 2) })]
  await new Promise(resolve => setTimeout(resolve, 20))
  admitted.push(a.inject({ method: 'POST', url: '/affine', payload: body(2) }))
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(a.models.pool.stats('affine').queuedItems, 3)
  const started = performance.now()
  const refused = await a.inject({ method: 'POST', url: '/affine', payload: body(3) })
  const ms = performance.now() - started
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.match(refused.json(), { code: 'OVERLOADED', statusCode: 503, error: /model 'affine' is overloaded/ })
  t.ok(ms < 100, `refused in ${ms.toFixed(1)} ms, while the thread is busy`)
  t.equal((await a.inject({ url: '/health/ready' })).statusCode, 200)
  t.equal((await a.inject({ url: '/health/live' })).statusCode, 200)
  for (const res of await Promise.all(admitted)) t.equal(res.statusCode, 200)
  await slow
})

t.test('a request past its deadline answers 504 and the model never runs it', async t => {
  const a = await app(t)
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  await new Promise(resolve => setImmediate(resolve))
  const started = performance.now()
  const res = await a.inject({ method: 'POST', url: '/affine', payload: body(1), headers: { 'x-request-timeout': '0.1' } })
  t.equal(res.statusCode, 504)
  t.match(res.json(), { code: 'TIMEOUT', error: 'request timed out after 0.1 s' })
  t.ok(performance.now() - started < 400, 'answered at the deadline, not when the thread freed up')
  t.equal((await slow).statusCode, 200)
  t.match(a.models.pool.stats('affine'), { requests: 0, items: 0, dropped: 1, queuedItems: 0 })
})

t.test('a disconnected client\'s request is dropped before it computes', async t => {
  const a = await app(t)
  await a.listen({ port: 0, host: '127.0.0.1' })
  const { port } = a.server.address() as { port: number }
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  await new Promise(resolve => setImmediate(resolve))
  const payload = JSON.stringify(body(1))
  const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/affine', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } })
  req.on('error', () => {})
  req.end(payload)
  // Wait until the request is queued, then hang up.
  while (a.models.pool.stats('affine').queuedItems === 0) await new Promise(resolve => setTimeout(resolve, 5))
  req.destroy()
  while (a.models.pool.stats('affine').dropped === 0) await new Promise(resolve => setTimeout(resolve, 5))
  t.equal((await slow).statusCode, 200)
  t.match(a.models.pool.stats('affine'), { requests: 0, dropped: 1, queuedItems: 0 })
})

t.test('a model with maxQueueItems 0 (config.json) is refused over a socket while the thread computes, and served once it is free', async t => {
  const a = await app(t, { maxQueueItems: 0 })
  await a.listen({ port: 0, host: '127.0.0.1' })
  const { port } = a.server.address() as { port: number }
  const post = (path: string, payload: unknown) => fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) })
  t.equal((await post('/affine', body(1))).status, 200, 'an idle thread: admitted')
  const slow = post('/slow', body(0))
  while (a.models.pool.computing === 0) await new Promise(resolve => setTimeout(resolve, 5))
  const refused = await post('/affine', body(2))
  t.equal(refused.status, 503)
  t.equal(refused.headers.get('retry-after'), '1')
  t.match(await refused.json(), { code: 'OVERLOADED', error: /model 'affine' is overloaded: every inference thread is computing, and its requests do not queue/ })
  t.equal((await fetch(`http://127.0.0.1:${port}/health/live`)).status, 200, 'health is never refused')
  t.equal((await slow).status, 200)
  const served = await post('/affine', body(3))
  t.equal(served.status, 200, 'the thread free again: admitted')
  t.same(await served.json(), body(7))
  t.match(a.models.pool.stats('affine'), { requests: 2, refused: 1, queuedItems: 0 })
})

t.test('a bad batching option in config.json fails the load with the file named', async t => {
  await t.rejects(app(t, { maxBatchSize: 0 }), /invalid batching options in .*affine\.json: maxBatchSize must be a positive integer/)
})

/** Fills affine's queue (at most 3 items) behind a busy thread; returns the admitted requests and the slow one. */
async function fillQueue (a: Awaited<ReturnType<typeof app>>) {
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  await new Promise(resolve => setImmediate(resolve))
  const admitted = [a.inject({ method: 'POST', url: '/affine', payload: body(1, 3) })]
  while (a.models.pool.stats('affine').queuedItems < 3) await new Promise(resolve => setTimeout(resolve, 5))
  return { slow, admitted }
}

t.test('a full queue refuses in onRequest, before the body is read or parsed', async t => {
  const a = await app(t, { maxQueueItems: 3 })
  const { slow, admitted } = await fillQueue(a)
  // Not JSON at all: a refusal decided after parsing would be 400.
  const refused = await a.inject({ method: 'POST', url: '/affine', headers: { 'content-type': 'application/json' }, payload: '{not json' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.match(refused.json(), { code: 'OVERLOADED', error: /model 'affine' is overloaded: 3 items queued \(at most 3\)/ })
  t.equal(a.models.pool.stats('affine').refused, 1)
  // Another model's route is not refused.
  t.equal((await a.inject({ method: 'OPTIONS', url: '/affine' })).statusCode, 204)
  for (const res of await Promise.all(admitted)) t.equal(res.statusCode, 200)
  t.equal((await a.inject({ method: 'POST', url: '/affine', headers: { 'content-type': 'application/json' }, payload: '{not json' })).statusCode, 400, 'parsed again once the queue has room')
  await slow
})

t.test('over a socket, a full queue is refused in the HTTP server\'s handler, before fastify', async t => {
  const a = await app(t, { maxQueueItems: 3 })
  await a.listen({ port: 0, host: '127.0.0.1' })
  const { port } = a.server.address() as { port: number }
  const send = (method: string, path: string, payload: string) => new Promise<{ status: number, headers: Record<string, unknown>, body: string }>((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', method, path, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', d => { text += d })
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }))
    })
    req.on('error', reject)
    req.end(payload)
  })
  // Refusals decided in fastify's hooks, counted to show that early ones are not.
  let hooked = 0
  const refusal = a.models.pool.refusal.bind(a.models.pool)
  a.models.pool.refusal = (key: string) => {
    const refused = refusal(key)
    // Past V8's 10 frames by default: each onRequest hook before the route's is one more.
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 100
    if (refused && new Error().stack?.includes('hookRunner')) hooked++
    Error.stackTraceLimit = limit
    return refused
  }
  const { slow, admitted } = await fillQueue(a)
  const refused = await send('POST', '/affine', '{not json')
  t.equal(refused.status, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.equal(refused.headers['content-type'], 'application/json; charset=utf-8')
  t.same(JSON.parse(refused.body), { error: "model 'affine' is overloaded: 3 items queued (at most 3); retry later", code: 'OVERLOADED', statusCode: 503 })
  t.equal((await send('POST', '/affine?x=1', '{not json')).status, 503, 'with a query string')
  t.equal((await send('POST', '/affine/?x=1', '{not json')).status, 503, 'with a trailing slash (the same route)')
  t.equal(hooked, 0, 'refused before fastify')
  t.equal(a.models.pool.stats('affine').refused, 3)
  // A verb the route lacks is still fastify's 405; an unknown path its 404.
  t.equal((await send('PUT', '/affine', '{}')).status, 405)
  t.equal((await send('POST', '/affine/x', '{}')).status, 404)
  const metrics = await send('GET', '/metrics', '')
  t.match(metrics.body, /^http_requests_total\{method="POST",route="\/affine",status_code="503"\} 3$/m, 'early refusals are counted in /metrics all the same')
  t.match(metrics.body, /^http_request_duration_seconds_count\{method="POST",route="\/affine",status_code="503"\} 3$/m)
  // While draining, fastify answers (and asks the client to close), still refusing.
  a.drain()
  const draining = await send('POST', '/affine', '{not json')
  t.equal(draining.status, 503)
  t.equal(hooked, 1, 'through fastify while draining')
  for (const res of await Promise.all(admitted)) t.equal(res.statusCode, 200)
  await slow
})

t.test('OIP infer refuses in onRequest too when the model\'s queue is full', async t => {
  const { openInferenceProtocol } = await import('../../framework/oip.ts')
  const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-batching-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'affine.onnx'), affineModel())
  writeFileSync(join(dir, 'affine.json'), JSON.stringify({ maxQueueItems: 3 }))
  writeFileSync(join(dir, 'slow.onnx'), slowAffineModel(100, 512))
  const a = await createApp({ modelsDir: dir, threads: 1, requestTimeoutMs: 10_000 })
  t.teardown(() => a.close())
  await a.register(openInferenceProtocol)
  await a.ready()
  await a.loadResources()
  const infer = (name: string, payload: unknown) => a.inject({ method: 'POST', url: `/v2/models/${name}/infer`, payload: payload as string })
  const tensor = (n: number) => ({ inputs: [{ name: 'x', shape: [n, 4], datatype: 'FP32', data: new Array(n * 4).fill(1) }] })
  const slow = infer('slow', tensor(1))
  await new Promise(resolve => setImmediate(resolve))
  const admitted = infer('affine', tensor(3))
  while ((await a.inject({ method: 'POST', url: '/v2/models/affine/infer', headers: { 'content-type': 'application/json' }, payload: '{not json' })).statusCode !== 503) {
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  const refused = await a.inject({ method: 'POST', url: '/v2/models/affine/versions/1/infer', headers: { 'content-type': 'application/json' }, payload: '{not json' })
  t.equal(refused.statusCode, 400, 'an unknown version is not refused early: parsed (and rejected) as usual')
  const res = await infer('affine', tensor(1))
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(res.json(), { code: 'OVERLOADED' })
  // Named as the client names it: it was the pool's key, "model 'affine@#2' is overloaded".
  t.equal(res.json().error, "model 'affine' is overloaded: 3 items queued (at most 3); retry later")
  t.equal((await infer('nosuch', tensor(1))).statusCode, 404)
  t.equal((await admitted).statusCode, 200)
  t.equal((await slow).statusCode, 200)
})
