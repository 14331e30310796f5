// GET /metrics as Prometheus scrapes it: the exposition parses, HTTP requests
// are counted by method, route template and status, the models' counters
// follow real inference (batches, inline runs, refusals, drops), and the
// endpoint answers whatever the app's state.
import t, { type Test } from 'tap'
import { request as httpRequest } from 'node:http'
import { bareApp } from '../fixtures/build.ts'
import { Greeter, Unloadable } from '../fixtures/resources.ts'
import { RowsResource, SEQ_VOCAB, affineModel, sequenceModel, slowAffineModel } from '../fixtures/batching.ts'
import { metricsRoutes, UNMATCHED_ROUTE } from '../../framework/metrics.ts'
import { openInferenceProtocol } from '../../framework/oip.ts'
import type { App, AppOptions } from '../../framework/create-app.ts'
import Fastify, { type FastifyReply } from 'fastify'
import { Registry } from 'prom-client'
import { ClusterMetrics } from '../../framework/cluster-metrics.ts'
import { readExposition } from '../fixtures/exposition.ts'

interface Sample { name: string, labels: Record<string, string>, value: number }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y

/**
 * A sample's value as Prometheus reads it (Go's ParseFloat: NaN and Inf in
 * any case; prom-client writes NaN as `Nan`, an event-loop lag with no sample
 * since the last scrape).
 */
function number (text: string, line: string): number {
  if (/^nan$/i.test(text)) return NaN
  const inf = /^([+-]?)inf(inity)?$/i.exec(text)
  if (inf) return inf[1] === '-' ? -Infinity : Infinity
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`bad value in: ${line}`)
  return Number(text)
}

/** Parses the text exposition format; throws on any line that is not a comment, blank or `name{labels} value`. */
function parse (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m || !NAME.test(m[1])) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[2] ?? ''
    LABEL.lastIndex = 0
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body)
      if (!l) throw new Error(`bad labels in: ${line}`)
      labels[l[1]] = l[2]
    }
    samples.push({ name: m[1], labels, value: number(m[3], line) })
  }
  return samples
}

/** The samples of `name` whose labels include `labels`. */
const find = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

/** The value of the one sample of `name` whose labels include `labels`; 0 when there is none (a series not yet seen). */
function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = find(samples, name, labels)
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return found[0]?.value ?? 0
}

async function scrape (t: Test, app: App): Promise<{ samples: Sample[], text: string }> {
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200, '/metrics answers 200')
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4; charset=utf-8$/)
  t.same(readExposition(res.body).problems, [], 'a valid exposition')
  return { samples: parse(res.body), text: res.body }
}

/** Registers the metrics plugin on a bare app, unless createApp already did. */
async function withMetrics (a: App): Promise<App> {
  if (!a.hasRoute({ method: 'GET', url: '/metrics' })) await a.register(metricsRoutes, { lifecycle: a.lifecycle, models: a.models })
  return a
}

/**
 * An app with the metrics plugin registered where createApp registers it
 * (before the routes), then /affine and /slow (about half a second per run)
 * on one inference thread, and the Open Inference Protocol after them (which
 * also serves `seq`, version 3, a model that fails on an id outside its table).
 */
async function app (t: Test, config: Record<string, unknown> = {}, options: Partial<AppOptions> = {}) {
  const a = await bareApp(t, {
    files: {
      'affine.onnx': affineModel(),
      'affine.json': new TextEncoder().encode(JSON.stringify(config)),
      'slow.onnx': slowAffineModel(100, 512),
      'seq/3/model.onnx': sequenceModel(),
    },
    requestTimeoutMs: 10_000,
    ...options,
  })
  await withMetrics(a)
  a.mount('/affine', new RowsResource('affine'))
  a.mount('/slow', new RowsResource('slow'))
  await a.register(openInferenceProtocol)
  await a.ready()
  await a.loadResources()
  return a
}

const body = (v: number, n = 1) => ({ rows: Array.from({ length: n }, () => [v, v, v, v]) })
const tensor = (n: number) => ({ inputs: [{ name: 'x', shape: [n, 4], datatype: 'FP32', data: new Array(n * 4).fill(1) }] })
const affine = { model: 'affine', name: 'affine', version: '' }

t.test('requests are counted by method, route template and status; model counters follow inference', async t => {
  // Cheap enough to run inline once its cost is learnt (affine), too slow for it (slow).
  const a = await app(t, {}, { inlineBelowUs: 100_000 })
  // Until affine runs inline (its main-thread session loads in the background).
  for (let i = 0; i < 50 && a.models.pool.stats('affine').inline === 0; i++) {
    t.equal((await a.inject({ method: 'POST', url: '/affine', payload: body(1) })).statusCode, 200)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  t.ok(a.models.pool.stats('affine').inline > 0, 'affine runs inline')

  const before = (await scrape(t, a)).samples
  for (let i = 0; i < 3; i++) t.equal((await a.inject({ method: 'POST', url: '/affine', payload: body(i) })).statusCode, 200)
  t.equal((await a.inject({ method: 'POST', url: '/affine', payload: { rows: [[1]] } })).statusCode, 400)
  t.equal((await a.inject({ method: 'POST', url: '/v2/models/affine/infer', payload: tensor(2) })).statusCode, 200)
  t.equal((await a.inject({ method: 'GET', url: '/v2/models/nosuch' })).statusCode, 404)
  t.equal((await a.inject({ method: 'GET', url: '/no/such/route?x=1' })).statusCode, 404)
  t.equal((await a.inject({ method: 'GET', url: '/%zz' })).statusCode, 400, 'a path that does not decode')
  t.equal((await a.inject({ method: 'DELETE', url: '/affine' })).statusCode, 405)
  const ids = (id: number) => ({ inputs: [{ name: 'ids', shape: [1, 2], datatype: 'INT64', data: [1, id] }] })
  t.equal((await a.inject({ method: 'POST', url: '/v2/models/seq/infer', payload: ids(1) })).statusCode, 200)
  const failed = await a.inject({ method: 'POST', url: '/v2/models/seq/infer', payload: ids(SEQ_VOCAB + 10) })
  t.ok(failed.statusCode >= 400, `ONNX Runtime fails the run: ${failed.statusCode}`)
  const { samples: after, text } = await scrape(t, a)
  const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels)

  // HTTP, by route template.
  const http = (method: string, route: string, status: number) => ({ method, route, status_code: String(status) })
  t.equal(delta('http_requests_total', http('POST', '/affine', 200)), 3)
  t.equal(delta('http_requests_total', http('POST', '/affine', 400)), 1)
  t.equal(delta('http_requests_total', http('DELETE', '/affine', 405)), 1)
  t.equal(delta('http_requests_total', http('POST', '/v2/models/:name/infer', 200)), 2, 'a plugin registered after metrics is counted, by template')
  t.equal(delta('http_requests_total', http('POST', '/v2/models/:name/infer', failed.statusCode)), 1)
  t.equal(delta('http_requests_total', http('GET', '/v2/models/:name', 404)), 1)
  t.equal(value(after, 'http_requests_total', http('GET', UNMATCHED_ROUTE, 404)), 1, 'an unknown URL has the fixed route label')
  t.equal(value(after, 'http_requests_total', http('GET', UNMATCHED_ROUTE, 400)), 1, 'a path that does not decode is counted too')
  t.notMatch(text, /no\/such|nosuch|x=1|%zz/, 'never the raw URL')
  t.same(find(after, 'http_requests_total', { route: '/metrics' }), [], '/metrics itself is not counted')
  // The histogram agrees with the counter, series by series.
  for (const s of find(after, 'http_requests_total')) {
    t.equal(value(after, 'http_request_duration_seconds_count', s.labels), s.value, `count of ${JSON.stringify(s.labels)}`)
    t.equal(value(after, 'http_request_duration_seconds_bucket', { ...s.labels, le: '+Inf' }), s.value)
    t.ok(value(after, 'http_request_duration_seconds_sum', s.labels) > 0)
  }
  const buckets = find(after, 'http_request_duration_seconds_bucket', http('POST', '/affine', 200)).map(s => s.value)
  t.same(buckets, [...buckets].sort((x, y) => x - y), 'buckets are cumulative')
  // Health checks, refusals (50-90 us in the README's floods) and a cheap
  // model's answers take well under a millisecond: buckets down to 0.1 ms.
  t.same(find(after, 'http_request_duration_seconds_bucket', http('POST', '/affine', 200)).map(s => s.labels.le),
    ['0.0001', '0.00025', '0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '+Inf'])

  // The model: 3 requests of one item on /affine and one of 2 items over OIP
  // (the same sessions: the repository adopts the resource's), each run alone, inline.
  t.equal(delta('onnx_serve_model_requests_total', affine), 4)
  t.equal(delta('onnx_serve_model_items_total', affine), 5)
  t.equal(delta('onnx_serve_model_batches_total', affine), 4)
  t.equal(delta('onnx_serve_model_inline_requests_total', affine), 4)
  t.equal(delta('onnx_serve_model_refused_total', affine), 0)
  const stats = a.models.pool.stats('affine')
  t.equal(value(after, 'onnx_serve_model_requests_total', affine), stats.requests, 'what the pool counts')
  t.equal(value(after, 'onnx_serve_model_batches_total', affine), stats.batches)
  t.equal(value(after, 'onnx_serve_model_largest_batch_items', affine), stats.largestBatch)
  t.equal(value(after, 'onnx_serve_model_inline_requests_total', affine), stats.inline)
  t.ok(stats.inline < stats.requests, 'the first run was on a thread, not inline')
  t.equal(value(after, 'onnx_serve_model_queued_items', affine), 0)
  t.equal(value(after, 'onnx_serve_model_requests_total', { model: 'slow' }), 0, 'every loaded model has its series')
  t.equal(delta('onnx_serve_model_failed_total', affine), 0)
  const seq = find(after, 'onnx_serve_model_failed_total', { name: 'seq' })
  t.equal(seq.length, 1, 'seq, loaded by the repository under its own key')
  t.match(seq[0].labels, { model: /^seq@3#\d+$/, version: '3' })
  t.equal(seq[0].value, 0, 'an id out of range is the client\'s error, not a failure')
  t.equal(value(after, 'onnx_serve_model_bad_input_total', { name: 'seq' }), 1, 'counted as bad input')
  t.equal(value(after, 'onnx_serve_model_requests_total', { name: 'seq' }), a.models.pool.stats(seq[0].labels.model).requests)
  t.same(find(after, 'onnx_serve_model_requests_total').map(s => s.labels.model).sort(), a.models.pool.keys().sort())
  t.equal(value(after, 'onnx_serve_inference_threads'), 1)
  t.equal(value(after, 'onnx_serve_inference_threads_computing'), 0)
  t.same(find(after, 'onnx_serve_lifecycle_state').map(s => [s.labels.state, s.value]),
    [['loading', 0], ['ready', 1], ['draining', 0], ['failed', 0]])

  // The process.
  t.match(text, /^# TYPE process_cpu_user_seconds_total counter$/m)
  t.match(text, /^# TYPE nodejs_eventloop_lag_seconds gauge$/m)
  t.match(text, /^# TYPE nodejs_gc_duration_seconds histogram$/m)
  t.ok(value(after, 'nodejs_heap_size_used_bytes') > 0)
  if (process.platform === 'linux') t.ok(value(after, 'process_resident_memory_bytes') > 0)
})

t.test('a full queue\'s refusal, a dropped request, queued items and a busy thread are counted', async t => {
  const a = await app(t, { maxQueueItems: 3 })
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  await new Promise(resolve => setImmediate(resolve))
  // Past its deadline while waiting behind /slow: dropped, never computed.
  const late = await a.inject({ method: 'POST', url: '/affine', payload: body(1), headers: { 'x-request-timeout': '0.1' } })
  t.equal(late.statusCode, 504)
  // Two requests (2 items, then 1) fill the queue; they will run as one batch.
  const admitted = [a.inject({ method: 'POST', url: '/affine', payload: body(2, 2) })]
  while (a.models.pool.stats('affine').queuedItems < 2) await new Promise(resolve => setTimeout(resolve, 5))
  admitted.push(a.inject({ method: 'POST', url: '/affine', payload: body(3) }))
  while (a.models.pool.stats('affine').queuedItems < 3) await new Promise(resolve => setTimeout(resolve, 5))

  const full = (await scrape(t, a)).samples
  t.equal(value(full, 'onnx_serve_model_queued_items', affine), 3, 'read while the queue is full')
  t.equal(value(full, 'onnx_serve_model_queued_requests', affine), 2)
  t.equal(value(full, 'onnx_serve_inference_threads_computing'), 1, '/slow holds the only thread')
  t.equal(value(full, 'onnx_serve_model_dropped_total', affine), 1)

  const refused = await a.inject({ method: 'POST', url: '/affine', payload: body(3) })
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'OVERLOADED')
  t.equal((await a.inject({ method: 'POST', url: '/v2/models/affine/infer', payload: tensor(1) })).statusCode, 503, 'over OIP too')
  t.equal((await a.inject({ url: '/health/ready' })).statusCode, 200)
  for (const res of await Promise.all(admitted)) t.equal(res.statusCode, 200)
  t.equal((await slow).statusCode, 200)

  const after = (await scrape(t, a)).samples
  t.equal(value(after, 'onnx_serve_model_refused_total', affine), 2)
  t.equal(value(after, 'onnx_serve_model_dropped_total', affine), 1)
  t.equal(value(after, 'onnx_serve_model_batches_total', affine), 1, 'one run...')
  t.equal(value(after, 'onnx_serve_model_requests_total', affine), 2, '...of two requests...')
  t.equal(value(after, 'onnx_serve_model_items_total', affine), 3, '...and three items')
  t.equal(value(after, 'onnx_serve_model_largest_batch_items', affine), 3)
  t.equal(value(after, 'onnx_serve_model_queued_items', affine), 0)
  t.equal(value(after, 'onnx_serve_model_requests_total', { model: 'slow' }), 1)
  t.equal(value(after, 'onnx_serve_inference_threads_computing'), 0)
  const http = (status: number) => value(after, 'http_requests_total', { method: 'POST', route: '/affine', status_code: String(status) })
  t.same([http(200), http(503), http(504)], [2, 1, 1])
  t.equal(value(after, 'http_requests_total', { method: 'POST', route: '/v2/models/:name/infer', status_code: '503' }), 1)
  t.equal(value(after, 'http_requests_total', { method: 'GET', route: '/health/ready', status_code: '200' }), 1)
})

/** POSTs `payload` to the app over real HTTP and disconnects after `ms`, before the answer. */
function leaveAfter (a: App, path: string, payload: unknown, ms: number): Promise<void> {
  const { port } = a.server.address() as { port: number }
  return new Promise(resolve => {
    const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path, headers: { 'content-type': 'application/json' } })
    req.on('error', () => resolve())
    req.end(JSON.stringify(payload))
    setTimeout(() => { req.destroy(); resolve() }, ms)
  })
}

t.test('a request whose client leaves before its answer is counted, as 499, with its duration', async t => {
  const a = await app(t)
  await a.listen({ port: 0, host: '127.0.0.1' })
  // One computing on the only thread (about half a second), one waiting behind it: both abandoned.
  await Promise.all([leaveAfter(a, '/slow', body(1), 150), leaveAfter(a, '/affine', body(1), 150)])
  while (a.models.pool.computing > 0 || a.models.pool.stats('affine').dropped === 0) await new Promise(resolve => setTimeout(resolve, 10))
  const { samples } = await scrape(t, a)
  t.equal(value(samples, 'onnx_serve_model_dropped_total', affine), 1, 'the waiting one was dropped unrun')
  const gone = (route: string) => ({ method: 'POST', route, status_code: '499' })
  t.equal(value(samples, 'http_requests_total', gone('/slow')), 1, 'the computing one')
  t.equal(value(samples, 'http_requests_total', gone('/affine')), 1, 'the dropped one')
  t.same(find(samples, 'http_requests_total', { method: 'POST' }).map(s => s.labels.status_code), ['499', '499'], 'each once, under no other status')
  const seconds = value(samples, 'http_request_duration_seconds_sum', gone('/slow'))
  // Left after 150 ms (a loaded host sees the close later, but not seconds later).
  t.ok(seconds >= 0.1 && seconds < 1.5, `timed until the client left: ${seconds} s`)
})

t.test('an answer the app ends as its client leaves is counted once, whether or not its last bytes went out', async t => {
  const a = await bareApp(t)
  const closed: Array<Promise<void>> = []
  const watch = (reply: FastifyReply) => closed.push(new Promise(resolve => reply.raw.once('close', () => resolve())))
  // Ended at once, and finished only once the client read it all: the client leaves after its first bytes.
  a.get('/big', async (_request, reply) => {
    watch(reply)
    return reply.type('application/octet-stream').send(Buffer.alloc(64 * 1024 * 1024))
  })
  // Answered in the tick the client's leaving is seen: the socket is gone, the response is
  // ended, and it never finishes (no onResponse).
  let handling!: () => void
  const handled = new Promise<void>(resolve => { handling = resolve })
  a.get('/late', (request, reply) => {
    watch(reply)
    request.raw.socket.once('end', () => reply.send({ late: true }))
    handling()
  })
  await a.ready()
  await a.listen({ port: 0, host: '127.0.0.1' })
  const { port } = a.server.address() as { port: number }
  await new Promise<void>((resolve, reject) => {
    httpRequest({ port, host: '127.0.0.1', path: '/big' }, res => res.once('data', () => { res.destroy(); resolve() })).on('error', reject).end()
  })
  const late = httpRequest({ port, host: '127.0.0.1', path: '/late' }).on('error', () => {})
  late.end()
  await handled
  late.destroy()
  while (closed.length < 2) await new Promise(resolve => setTimeout(resolve, 10))
  await Promise.all(closed)
  // onResponse (on 'finish') would have run by now; the close listener already has.
  await new Promise(resolve => setTimeout(resolve, 50))
  const { samples } = await scrape(t, a)
  const counted = (route: string) => find(samples, 'http_requests_total', { route }).map(s => [s.labels.status_code, s.value])
  t.same(counted('/big'), [['200', 1]], 'counted once, as the 200 the client was getting')
  t.same(counted('/late'), [['200', 1]], 'counted once, under the status it was answered')
})

t.test('a hijacked reply is counted under the status, route template and method it was answered with on reply.raw', async t => {
  const a = await bareApp(t)
  // fastify's reply.statusCode reads reply.raw.statusCode: what writeHead, or an assignment before the first write, sent.
  a.post('/hijacked/:how', (request, reply) => {
    reply.code(200)
    reply.hijack()
    if ((request.params as { how: string }).how === 'head') reply.raw.writeHead(202, { 'content-type': 'text/plain' })
    else reply.raw.statusCode = 202
    reply.raw.end('accepted')
  })
  await a.ready()
  await a.listen({ port: 0, host: '127.0.0.1' })
  const { port } = a.server.address() as { port: number }
  for (const how of ['head', 'status']) {
    const res = await fetch(`http://127.0.0.1:${port}/hijacked/${how}`, { method: 'POST' })
    t.equal(res.status, 202, `${how}: answered 202`)
    await res.text()
  }
  // Counted as the response closes, which the client may see first.
  let counted: Array<[string, string, string, number]> = []
  for (let i = 0; i < 50 && counted.length === 0; i++) {
    await new Promise(resolve => setTimeout(resolve, 20))
    const { samples } = await scrape(t, a)
    counted = find(samples, 'http_requests_total', { route: '/hijacked/:how' }).map(s => [s.labels.method, s.labels.route, s.labels.status_code, s.value])
    if (counted[0]?.[3] !== 2) counted = []
  }
  t.same(counted, [['POST', '/hijacked/:how', '202', 2]], 'both counted under 202, never 200')
})

t.test('model counters never go down while a batch that did not split back is rerun request by request', async t => {
  const a = await bareApp(t, {
    files: { 'slow.onnx': slowAffineModel(100, 512), 'tm.onnx': slowAffineModel(40, 256, { doubled: true }) },
    requestTimeoutMs: 10_000,
  })
  a.mount('/slow', new RowsResource('slow'))
  a.mount('/tm', new RowsResource('tm'))
  await a.ready()
  await a.loadResources()
  const tm = { model: 'tm', name: 'tm', version: '' }
  const counts = async () => {
    const { samples } = await scrape(t, a)
    return ['requests', 'items', 'batches'].map(c => value(samples, `onnx_serve_model_${c}_total`, tm))
  }
  const batchesRun = async (n: number) => { while (a.models.pool.stats('tm').batches < n) await new Promise(resolve => setTimeout(resolve, 2)) }
  // Three requests wait behind /slow on the only thread, then run as one batch
  // whose output does not split back: each is rerun alone after it.
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  while (a.models.pool.computing === 0) await new Promise(resolve => setTimeout(resolve, 2))
  const sent = [1, 2, 3].map(v => a.inject({ method: 'POST', url: '/tm', payload: body(v) }))
  await batchesRun(1)
  const seen = [await counts()]
  await batchesRun(2)
  seen.push(await counts())
  for (const res of await Promise.all(sent)) t.equal(res.statusCode, 200)
  t.equal((await slow).statusCode, 200)
  seen.push(await counts())
  t.same(seen, [[3, 3, 1], [3, 3, 2], [3, 3, 4]], 'requests and items are counted once, with the batch; they never go down')
})

t.test('batch sizes: a histogram of items per run, by model, that sums over a cluster\'s workers and outlives them', async t => {
  // Buckets up to the model's maxBatchSize rounded up to a power of two: 1, 2, 4.
  const a = await app(t, { maxBatchSize: 3 })
  // Runs of 1, 3, 2 and 7 items (alone: more than the limit), then one run
  // of 3 items merged from two requests waiting behind /slow.
  for (const n of [1, 3, 2, 7]) t.equal((await a.inject({ method: 'POST', url: '/affine', payload: body(n, n) })).statusCode, 200)
  const slow = a.inject({ method: 'POST', url: '/slow', payload: body(0) })
  while (a.models.pool.computing === 0) await new Promise(resolve => setTimeout(resolve, 2))
  const merged = [a.inject({ method: 'POST', url: '/affine', payload: body(1, 2) }), a.inject({ method: 'POST', url: '/affine', payload: body(1) })]
  for (const res of [...await Promise.all(merged), await slow]) t.equal(res.statusCode, 200)
  t.equal(a.models.pool.stats('affine').batches, 5, 'five runs')

  const { samples, text } = await scrape(t, a)
  t.match(text, /^# TYPE onnx_serve_model_batch_items histogram$/m)
  const buckets = (s: typeof samples) => find(s, 'onnx_serve_model_batch_items_bucket', affine).map(b => [b.labels.le, b.value])
  t.same(buckets(samples), [['1', 1], ['2', 2], ['4', 4], ['+Inf', 5]], 'cumulative counts of runs by items')
  t.equal(value(samples, 'onnx_serve_model_batch_items_sum', affine), 1 + 3 + 2 + 7 + 3)
  t.equal(value(samples, 'onnx_serve_model_batch_items_count', affine), value(samples, 'onnx_serve_model_batches_total', affine), 'one observation per run')
  t.same(find(samples, 'onnx_serve_model_batch_items_bucket', { model: 'slow' }).map(b => b.labels.le),
    ['1', '2', '4', '8', '16', '32', '64', '+Inf'], 'each model up to its own limit (the default 64)')

  // In a cluster, the arbiter sums the workers' registries, and keeps the
  // histograms of a worker that exited: two workers that each ran these.
  const registry = new Registry()
  const worker = Fastify()
  t.teardown(() => worker.close())
  await worker.register(metricsRoutes, { lifecycle: a.lifecycle, models: a.models, registry })
  await worker.ready()
  const part = await registry.getMetricsAsJSON()
  const asked: Array<[string, number]> = []
  const cluster = new ClusterMetrics<string>({ ask: (w, id) => { asked.push([w, id]); return true }, nameOf: w => w })
  const idOf = (w: string) => asked.filter(([x]) => x === w).at(-1)![1]
  const both = cluster.gather(['A', 'B'])
  cluster.part('A', idOf('A'), part)
  cluster.part('B', idOf('B'), part)
  const summed = await both
  t.same(readExposition(summed).problems, [], 'the sum is a valid exposition')
  t.same(buckets(parse(summed)), [['1', 2], ['2', 4], ['4', 8], ['+Inf', 10]], 'summed over the workers')
  cluster.final('A', part)
  cluster.exited('A')
  const one = cluster.gather(['B'])
  cluster.part('B', idOf('B'), part)
  const after = parse(await one)
  t.same(buckets(after), [['1', 2], ['2', 4], ['4', 8], ['+Inf', 10]], 'an exited worker\'s runs stay counted')
  t.equal(value(after, 'onnx_serve_model_batch_items_sum', affine), 32)
})

t.test('/metrics answers while loading, after a failed load and while draining; the state gauge follows', async t => {
  const a = await bareApp(t)
  await withMetrics(a)
  a.mount('/hello/{name}', new Greeter('hi'))
  await a.ready()
  const state = async () => Object.fromEntries(find((await scrape(t, a)).samples, 'onnx_serve_lifecycle_state').map(s => [s.labels.state, s.value]))
  t.equal((await a.inject({ url: '/health/ready' })).statusCode, 503, 'not ready')
  t.equal((await a.inject({ url: '/hello/bob' })).statusCode, 503)
  t.same(await state(), { loading: 1, ready: 0, draining: 0, failed: 0 })
  const loading = (await scrape(t, a)).samples
  t.equal(value(loading, 'http_requests_total', { method: 'GET', route: '/hello/:name', status_code: '503' }), 1)
  t.equal(value(loading, 'http_requests_total', { method: 'GET', route: '/health/ready', status_code: '503' }), 1)
  await a.loadResources()
  t.same(await state(), { loading: 0, ready: 1, draining: 0, failed: 0 })
  a.drain()
  t.same(await state(), { loading: 0, ready: 0, draining: 1, failed: 0 })

  const broken = await bareApp(t)
  await withMetrics(broken)
  broken.mount('/broken', new Unloadable())
  await broken.ready()
  await t.rejects(broken.loadResources(), /does-not-exist/)
  const res = await broken.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.body, /^onnx_serve_lifecycle_state\{state="failed"\} 1$/m)
})

t.test('each app has its own registry; /metrics is in the OpenAPI document with the health routes', async t => {
  const one = await bareApp(t)
  const two = await bareApp(t)
  for (const a of [one, two]) {
    await withMetrics(a)
    a.mount('/hello/{name}', new Greeter('hi'))
    await a.ready()
    await a.loadResources()
  }
  for (let i = 0; i < 2; i++) await one.inject({ url: '/hello/bob' })
  await two.inject({ url: '/hello/bob' })
  const hello = { method: 'GET', route: '/hello/:name', status_code: '200' }
  t.equal(value((await scrape(t, one)).samples, 'http_requests_total', hello), 2)
  const second = (await scrape(t, two)).samples
  t.equal(value(second, 'http_requests_total', hello), 1)
  t.ok(find(second, 'process_cpu_user_seconds_total').length === 1, 'the process metrics are in every app\'s registry')

  const doc = (await one.inject({ url: '/openapi.json' })).json()
  t.same(doc.paths['/metrics'].get.tags, ['health'])
  t.same(doc.paths['/health/ready'].get.tags, ['health'])
})

t.test('the health and metrics routes answer other verbs as resources do: 405 with Allow, and OPTIONS', async t => {
  const a = await bareApp(t)
  await a.ready()
  for (const url of ['/health/live', '/health/ready', '/metrics']) {
    for (const method of ['POST', 'PUT', 'DELETE'] as const) {
      const res = await a.inject({ method, url })
      t.equal(res.statusCode, 405, `${method} ${url}`)
      t.equal(res.headers.allow, 'GET, HEAD, OPTIONS')
      t.equal(res.json().code, 'METHOD_NOT_ALLOWED')
    }
    const options = await a.inject({ method: 'OPTIONS', url })
    t.equal(options.statusCode, 204, `OPTIONS ${url}`)
    t.equal(options.headers.allow, 'GET, HEAD, OPTIONS')
    t.equal((await a.inject({ method: 'HEAD', url })).statusCode, url === '/health/ready' ? 503 : 200, `HEAD ${url}`)
  }
  const { samples } = await scrape(t, a)
  t.equal(value(samples, 'http_requests_total', { method: 'POST', route: '/health/ready', status_code: '405' }), 1, 'counted by route, not as unmatched')
  t.same(find(samples, 'http_requests_total', { route: UNMATCHED_ROUTE }), [])
})

t.test('the exposition parser rejects what is not a sample line', async t => {
  t.same(parse('# HELP x y\n\nx_total{a="1",b="q\\"z"} 3\nx 1e-7\nx{le="+Inf"} +Inf\ny Nan\n'), [
    { name: 'x_total', labels: { a: '1', b: 'q\\"z' }, value: 3 },
    { name: 'x', labels: {}, value: 1e-7 },
    { name: 'x', labels: { le: '+Inf' }, value: Infinity },
    { name: 'y', labels: {}, value: NaN },
  ])
  for (const bad of ['x{a=1} 3', 'x 3 4 5', '1x 3', 'x{a="1"} three', 'x{a="1",} 3 extra', '/x 1', 'x 0x10', 'x ', 'x{a="1"}']) {
    t.throws(() => parse(bad), bad)
  }
})

t.test('the strict exposition reader finds what Prometheus would reject or misread', async t => {
  const good = [
    '# HELP h_seconds Durations, with \\\\ and \\n escaped',
    '# TYPE h_seconds histogram',
    'h_seconds_bucket{le="0.1",m="a\\"b\\\\c\\nd"} 1',
    'h_seconds_bucket{le="+Inf",m="a\\"b\\\\c\\nd"} 2',
    'h_seconds_sum{m="a\\"b\\\\c\\nd"} 0.3',
    'h_seconds_count{m="a\\"b\\\\c\\nd"} 2',
    '# TYPE c_total counter',
    'c_total 3',
    '',
  ].join('\n')
  t.same(readExposition(good).problems, [])
  t.same(readExposition(good).samples[0].labels, { le: '0.1', m: 'a"b\\c\nd' }, 'label values unescaped')
  const problems = (text: string) => readExposition(text).problems
  const cases: Array<[string, RegExp]> = [
    ['# TYPE c_total counter\n# TYPE c_total counter\nc_total 1\n', /TYPE twice/],
    ['# HELP c_total x\n# HELP c_total y\nc_total 1\n', /HELP twice/],
    ['c_total 1\n# TYPE c_total counter\n', /TYPE after samples/],
    ['# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x="1"} 2\n', /not contiguous/],
    ['a{x="1"} 1\na{x="1"} 2\n', /series twice/],
    ['a{x="1",x="2"} 1\n', /label 'x' twice/],
    ['a{x="q"q"} 1\n', /after its value/],
    ['a{x="\\q"} 1\n', /bad escape/],
    ['# TYPE c_total counter\nc_total -1\n', /counter below 0/],
    ['a 1', /newline/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /not cumulative/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /not \+Inf/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', /is not _count/],
    ['# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /not increasing/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n', /no _sum/],
    ['# TYPE g gauge\ng{le="1"} 1\n', /'le' outside/],
    ['# HELP g a \\ alone\ng 1\n', /backslash not escaped/],
  ]
  for (const [text, problem] of cases) t.match(problems(text).join('\n'), problem, JSON.stringify(text))
})
