// Prometheus metrics at GET /metrics, in the text exposition format:
// - the process (prom-client's default metrics: CPU, memory, event-loop lag,
//   GC, handles), collected once per process and shared by every app in it;
// - HTTP requests, counted and timed by method, route template and status, as
//   each response closes (a histogram observation per request, about half a
//   microsecond; the counter is read off the histogram at scrape time);
// - every loaded model's queue and counters, read from the inference pool at
//   scrape time (`collect`), so nothing is done per inference;
// - the app's lifecycle state.
// Each app has its own registry (tests build many apps in one process), and
// /metrics, like /health/*, is never refused: it answers while loading,
// draining, after a failed load and while a model's queue is full (in a
// cluster, it fails with 503 when the workers' metrics cannot be gathered).
//
// In a cluster (--workers > 1), a scrape reaches whichever worker the primary
// hands the connection to, so a worker answers with every worker's metrics: it
// asks the arbiter, which collects the registry of each ready worker and sums
// them (arbiter.ts, with prom-client's AggregatorRegistry.aggregate; gauges
// that do not add up say how they combine); the workers still booting, which
// cannot answer yet, the arbiter counts itself in the lifecycle state. Counters then grow from scrape to
// scrape whichever worker answers, also across worker replacements: a worker
// sends its final metrics as its app closes, and the arbiter keeps the
// counters of exited workers in the sum. If the gathering fails (a worker
// silent for 5 s, the primary gone), the scrape gets 503.
//
// Requests reach it through a ResponseCounter that createApp wires: each
// request fastify handles as its response closes (the deadline's close
// listener: a client that left before any answer gives 499), and the answers
// given outside fastify's lifecycle, requests refused in the HTTP server's
// handler (its early refusal) and paths that do not decode. Without one, it
// counts in an onResponse hook on the root instance (register it before the
// routes it should count), which misses requests whose response never finishes.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import type { Lifecycle, LifecycleState } from './create-app.ts'
import type { ModelStore } from './models.ts'
import type { ModelStats } from './pool.ts'
import { HttpError } from './errors.ts'

export interface MetricsOptions {
  lifecycle: Lifecycle
  models: ModelStore
  /** Where the app's metrics go (a fresh registry when omitted); the process metrics are added to it. */
  registry?: Registry
  /** A worker of server.ts's cluster: answer with every worker's metrics, gathered by the arbiter. */
  cluster?: boolean
  /** Filled in with a way to count answers that no fastify hook sees (see ResponseCounter). */
  counter?: ResponseCounter
}

/**
 * How createApp hands the metrics plugin its requests (set by the plugin).
 */
export interface ResponseCounter {
  /** An answer given outside fastify's lifecycle: early overload refusals and paths that do not decode. */
  observe?: (method: string, route: string, statusCode: number, seconds: number) => void
  /**
   * A request whose response closed (the deadline's close listener tells),
   * finished or not, `seconds` after it came: every request fastify
   * handles, counted once.
   */
  closed?: (request: FastifyRequest, reply: FastifyReply, seconds: number) => void
}

/**
 * The `status_code` of a request whose client left before any answer was
 * sent (nginx's "client closed request"): without it, the requests that
 * waited longest (clients giving up under load) would vanish from the counts
 * and the latency histogram.
 */
export const CLIENT_CLOSED_REQUEST = 499

/** The `route` label of a request that matched no route (never the raw URL: it would make a series per URL). */
export const UNMATCHED_ROUTE = 'unmatched'

/**
 * Request durations, in seconds: from a tenth of a millisecond to the default
 * deadline. Health checks, queue-full refusals (50-90 us in the README's
 * floods) and a cheap model inline answer well under a millisecond: with
 * 0.5 ms as the first bound, all of them fell in one bucket.
 */
const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export const LIFECYCLE_STATES: LifecycleState[] = ['loading', 'ready', 'draining', 'failed']
export const LIFECYCLE_STATE_METRIC = 'onnx_serve_lifecycle_state'
export const LIFECYCLE_STATE_HELP = 'The app\'s state: 1 for the current one of loading, ready, draining, failed (in a cluster: how many workers are in each)'

const HTTP_LABELS = ['method', 'route', 'status_code'] as const
const MODEL_LABELS = ['model', 'name', 'version'] as const
type ModelLabels = Record<typeof MODEL_LABELS[number], string>

/** The fields of ModelStats that are one number. */
type ModelCount = { [K in keyof ModelStats]: ModelStats[K] extends number ? K : never }[keyof ModelStats]

/** The pool's monotonic counters, by the field of ModelStats they read. */
const MODEL_COUNTERS: Array<[ModelCount, string, string]> = [
  ['batches', 'onnx_serve_model_batches_total', 'Model runs (session.run calls), each computing a batch of one or more requests'],
  ['requests', 'onnx_serve_model_requests_total', 'Requests computed'],
  ['items', 'onnx_serve_model_items_total', 'Items (rows along the batch axis) computed'],
  ['inline', 'onnx_serve_model_inline_requests_total', 'Requests computed on the main thread (too cheap for the hop to an inference thread)'],
  ['refused', 'onnx_serve_model_refused_total', 'Requests refused with 503 because the model\'s queue was full'],
  ['dropped', 'onnx_serve_model_dropped_total', 'Requests dropped before they computed: deadline passed or client gone'],
  ['failed', 'onnx_serve_model_failed_total', 'Requests that failed in ONNX Runtime (500), not for their values'],
  ['badInput', 'onnx_serve_model_bad_input_total', 'Requests whose values or shape ONNX Runtime refused (400: an index out of range, a shape the graph cannot take), not counted as failed'],
]

/** The pool's instant values. */
const MODEL_GAUGES: Array<[ModelCount, string, string]> = [
  ['queuedRequests', 'onnx_serve_model_queued_requests', 'Requests waiting for an inference thread (or, run inline, for the end of the event-loop turn)'],
  ['queuedItems', 'onnx_serve_model_queued_items', 'Items waiting (the queue bound, maxQueueItems, counts these)'],
  ['largestBatch', 'onnx_serve_model_largest_batch_items', 'Most items computed in one run so far'],
]

let processMetrics: Registry | undefined
/**
 * The process's metrics, made once: collectDefaultMetrics starts an
 * event-loop delay monitor and a GC observer that cannot be stopped, so one
 * set per app would pile up in a process that builds many apps.
 */
function processRegistry (): Registry {
  if (!processMetrics) {
    processMetrics = new Registry()
    collectDefaultMetrics({ register: processMetrics })
    // Summed over a cluster's workers, a limit would mean nothing: keep one.
    const maxFds = processMetrics.getSingleMetric('process_max_fds') as { aggregator?: string } | undefined
    if (maxFds) maxFds.aggregator = 'first'
  }
  return processMetrics
}

/**
 * A pool key's labels. A key is a resource model's name, or
 * `name@version#generation` for the sessions ModelStore.loadFile loads (the
 * repository's versions and hot swaps); names cannot hold '@' or '#'.
 */
function labelsOf (key: string, models: ModelStore): ModelLabels {
  const at = key.indexOf('@')
  if (at >= 0) {
    const hash = key.indexOf('#', at)
    return { model: key, name: key.slice(0, at), version: key.slice(at + 1, hash < 0 ? undefined : hash) }
  }
  const model = models.get(key)
  return { model: key, name: key, version: (model?.loaded.key === key ? model.version : undefined) ?? '' }
}

/** One worker's metrics, as its registry's getMetricsAsJSON gives them (what workers send the arbiter). */
export type MetricsPart = Array<MetricObjectWithValues<MetricValue<string>>>

/** Messages the arbiter sends a worker about metrics (server.ts's cluster). */
export type ArbiterMetricsMessage =
  /** The answer to a worker's `{type: 'metrics', id}`: every worker's metrics, summed, or why not. */
  | { type: 'metrics', id: number, text?: string, error?: string }
  /** Asks a worker for its own metrics (it answers `{type: 'metrics-part', id, metrics}`). */
  | { type: 'metrics-collect', id: number }

/** How long a worker waits for the arbiter (which gives up on a silent worker after 5 s). */
const CLUSTER_METRICS_TIMEOUT_MS = 6000

/**
 * A cluster worker's side of /metrics: answers the arbiter's requests for
 * this app's metrics, and asks the arbiter for everyone's. A message to a
 * primary that is gone (the worker drains after it died) fails the scrape
 * with 503, never the process.
 */
function clusterLink (app: FastifyInstance, registry: Registry): () => Promise<string> {
  const asked = new Map<number, (message: { text?: string, error?: string }) => void>()
  let lastAsked = 0
  /** Sends the arbiter a message; `done` gets the error, if any, once it has left. */
  const send = (message: unknown, done: (err: Error | null) => void) => {
    if (!process.connected || !process.send) return done(new Error('the primary process is gone'))
    process.send(message, undefined, {}, done)
  }
  const onMessage = (message: ArbiterMetricsMessage) => {
    if (message?.type === 'metrics') {
      asked.get(message.id)?.(message)
    } else if (message?.type === 'metrics-collect') {
      const { id } = message
      registry.getMetricsAsJSON().then(
        metrics => send({ type: 'metrics-part', id, metrics }, () => {}),
        (err: Error) => send({ type: 'metrics-part', id, error: err.message }, () => {}),
      )
    }
  }
  process.on('message', onMessage)
  app.addHook('onClose', async () => {
    process.off('message', onMessage)
    // The last requests are counted: the arbiter keeps these once this worker is gone.
    const metrics = await registry.getMetricsAsJSON()
    await new Promise<void>(resolve => send({ type: 'metrics-final', metrics }, () => resolve()))
  })
  return () => new Promise((resolve, reject) => {
    const id = ++lastAsked
    const settle = (reply: { text?: string, error?: string }) => {
      clearTimeout(timer)
      asked.delete(id)
      if (reply.text !== undefined) resolve(reply.text)
      else reject(new HttpError('METRICS_UNAVAILABLE', `cannot gather the workers' metrics: ${reply.error ?? 'no answer'}`))
    }
    const timer = setTimeout(() => settle({ error: `no answer from the primary in ${CLUSTER_METRICS_TIMEOUT_MS} ms` }), CLUSTER_METRICS_TIMEOUT_MS)
    asked.set(id, settle)
    send({ type: 'metrics', id }, err => { if (err) settle({ error: err.message }) })
  })
}

/**
 * onnx_serve_model_batch_items, a histogram of the items each model run
 * computed, by model. The pool counts the runs by power-of-two bucket
 * (ModelStats.batchSizes, one increment per run); this reads those counts at
 * scrape time, as a registry reads a metric (prom-client's Histogram can only
 * be fed one observation at a time). Each model's buckets go 1, 2, 4... up to
 * its maxBatchItems rounded up to a power of two: runs larger than that (a
 * request with more items than the batch limit runs alone) are in +Inf only.
 * A histogram sums over a cluster's workers, and its counts stay in the sum
 * once a worker exits, as prom-client's own do (cluster-metrics.ts).
 */
function batchSizeHistogram (read: () => Array<{ labels: ModelLabels, stats: ModelStats, maxBatchItems: number }>): Metric {
  const name = 'onnx_serve_model_batch_items'
  const help = 'Items computed per model run (session.run call): the batch sizes'
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: Array<MetricValue<string> & { metricName: string }> = []
      for (const { labels, stats, maxBatchItems } of read()) {
        const { batchSizes, batchSizesSum, batches } = stats
        // Buckets 2^0 .. 2^top, 2^top the first power of two not below maxBatchItems.
        const top = maxBatchItems <= 1 ? 0 : 32 - Math.clz32(maxBatchItems - 1)
        let cumulative = 0
        for (let i = 0; i <= top; i++) {
          cumulative += batchSizes[i] ?? 0
          values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: 2 ** i }, value: cumulative })
        }
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: batches })
        values.push({ metricName: `${name}_sum`, labels, value: batchSizesSum })
        values.push({ metricName: `${name}_count`, labels, value: batches })
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' }
    },
    // What a registry calls on its metrics besides get().
    reset: () => {},
  }
  return metric as unknown as Metric
}

export async function metricsRoutes (app: FastifyInstance, { lifecycle, models, registry: given, cluster: inCluster = false, counter }: MetricsOptions) {
  const registry = given ?? new Registry()
  const everyWorker = inCluster ? clusterLink(app, registry) : undefined
  const shared = processRegistry()
  for (const { name } of shared.getMetricsAsArray()) {
    const metric = shared.getSingleMetric(name)
    if (metric && !registry.getSingleMetric(name)) registry.registerMetric(metric)
  }
  const registers = [registry]

  // HTTP. The counter is the histogram's count, copied at scrape time.
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from receiving a request to the end of its response, by method, route template and status',
    labelNames: HTTP_LABELS,
    buckets: DURATION_BUCKETS,
    registers,
  })
  new Counter({
    name: 'http_requests_total',
    help: 'Requests answered, by method, route template and status',
    labelNames: HTTP_LABELS,
    registers,
    async collect () {
      const { values } = await duration.get()
      this.reset()
      for (const { metricName, labels, value } of values) {
        if (metricName !== 'http_request_duration_seconds_count') continue
        this.inc({ method: labels.method, route: labels.route, status_code: labels.status_code }, value)
      }
    },
  })
  const count = (request: FastifyRequest, reply: FastifyReply, seconds: number) => {
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE
    if (route === '/metrics') return
    // Headers not sent: the client left before any answer. Sent: the status
    // it was answered (or was getting when it left during the body).
    const status = reply.raw.headersSent ? reply.statusCode : CLIENT_CLOSED_REQUEST
    duration.observe({ method: request.method, route, status_code: status }, seconds)
  }
  if (counter) {
    counter.observe = (method, route, statusCode, seconds) => duration.observe({ method, route, status_code: statusCode }, seconds)
    // On the response's close, which comes once for every response: onResponse
    // (on 'finish') misses an answer ended as its client leaves, whose
    // response closes and never finishes.
    counter.closed = count
  } else {
    app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
      count(request, reply, reply.elapsedTime / 1000)
      done()
    })
  }

  // Models, read at scrape time. Labels are worked out once per key, and the
  // pool is read once per scrape: every model metric's `collect` runs in the
  // same tick, so the snapshot is kept until the next microtask.
  const known = new Map<string, ModelLabels>()
  let current: Array<{ labels: ModelLabels, stats: ModelStats }> | undefined
  const snapshot = (): Array<{ labels: ModelLabels, stats: ModelStats }> => {
    if (current) return current
    const keys = models.pool.keys()
    for (const key of known.keys()) if (!keys.includes(key)) known.delete(key)
    current = keys.map(key => {
      let labels = known.get(key)
      if (!labels) known.set(key, labels = labelsOf(key, models))
      return { labels, stats: models.pool.stats(key) }
    })
    queueMicrotask(() => { current = undefined })
    return current
  }
  for (const [field, name, help] of MODEL_COUNTERS) {
    new Counter({
      name, help, labelNames: MODEL_LABELS, registers,
      collect () {
        this.reset()
        for (const { labels, stats } of snapshot()) this.inc(labels, stats[field])
      },
    })
  }
  for (const [field, name, help] of MODEL_GAUGES) {
    new Gauge({
      name, help, labelNames: MODEL_LABELS, registers,
      aggregator: field === 'largestBatch' ? 'max' : 'sum',
      collect () {
        this.reset()
        for (const { labels, stats } of snapshot()) this.set(labels, stats[field])
      },
    })
  }
  registry.registerMetric(batchSizeHistogram(() => snapshot().map(({ labels, stats }) => ({
    labels, stats, maxBatchItems: models.pool.batchOptions(labels.model).maxBatchItems,
  }))))
  new Gauge({
    name: 'onnx_serve_inference_threads',
    help: 'Inference threads',
    registers,
    collect () { this.set(models.pool.size) },
  })
  new Gauge({
    name: 'onnx_serve_inference_threads_computing',
    help: 'Inference threads computing a batch now',
    registers,
    collect () { this.set(models.pool.computing) },
  })

  new Gauge({
    name: LIFECYCLE_STATE_METRIC,
    help: LIFECYCLE_STATE_HELP,
    labelNames: ['state'] as const,
    registers,
    collect () {
      for (const state of LIFECYCLE_STATES) this.set({ state }, lifecycle.state === state ? 1 : 0)
    },
  })

  app.get('/metrics', {
    schema: {
      tags: ['health'],
      summary: 'Prometheus metrics, in the text exposition format',
      description: 'Process, HTTP (by method, route template and status), per-model queue and inference counters, and the lifecycle state. Never refused (in a cluster: 503 when the workers\' metrics cannot be gathered).',
    },
    // Not under the request deadline (a client's X-Request-Timeout still
    // applies): a cluster's gathering has its own bound, and a shorter
    // --timeout would answer 504 first, then fail to answer again.
    config: { timeoutMs: 0 },
  }, async (_request, reply) => {
    let text: string
    try {
      text = everyWorker ? await everyWorker() : await registry.metrics()
    } catch (err) {
      // The client's own deadline answered 504 meanwhile: nothing left to send.
      if (reply.sent) return
      throw err
    }
    if (reply.sent) return
    return reply.type(registry.contentType).send(text)
  })
}
// The hook must see every route of the app, not only this plugin's (what fastify-plugin does).
;(metricsRoutes as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true
