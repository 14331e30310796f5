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

t.test('a bad batching option in config.json fails the load with the file named', async t => {
  await t.rejects(app(t, { maxBatchSize: 0 }), /invalid batching options in .*affine\.json: maxBatchSize must be a positive integer/)
})
