// The cluster primary, like gunicorn's arbiter: it forks the workers (each
// loads its models after the fork), keeps their number up, and turns signals
// into worker management. It never serves HTTP itself.
//
// - A worker that fails to boot (a model does not load) stops the whole server
//   with exit code 3 and the model's error: retrying would fail the same way.
// - A worker that dies after it was ready is replaced, with a back-off that
//   grows while workers keep dying, so a crash loop does not spin the CPU.
// - TERM: workers drain; exit 0 once all are gone (kill after the graceful timeout).
// - INT, QUIT: workers stop at once. HUP: workers are replaced one by one, each
//   new one ready before the old one drains, so no request is dropped.
// - TTIN / TTOU: one worker more / less. A worker that reached --max-requests is
//   replaced the same way as on HUP.
// - /metrics: a scrape reaches one worker, which asks the arbiter; the arbiter
//   gathers every ready worker's registry and sums them (prom-client's
//   AggregatorRegistry.aggregate), so each scrape shows the whole server; the
//   counters of workers that exited stay in the sum (their final values, sent
//   as they close; a crashed worker's, as of the last scrape).
import cluster, { type Worker } from 'node:cluster'
import pino from 'pino'
import { AggregatorRegistry, type MetricValue } from 'prom-client'
import type { Settings } from './settings.ts'
import type { WorkerMessage } from './serve.ts'
import type { ArbiterMetricsMessage, MetricsPart } from './metrics.ts'

const BOOT_FAILURE = 3
/** How long a /metrics gathering waits for the workers. */
const GATHER_TIMEOUT_MS = 5000

interface Gathering {
  /** Workers asked that have not answered yet. */
  waiting: Set<Worker>
  /** The answers so far, by worker (a worker that retires meanwhile is counted in `retired` instead). */
  parts: Map<Worker, MetricsPart>
  finish: (error?: string) => void
}

/** Metrics of several workers as one part, each sample summed over them (counters and histograms add up). */
function sumParts (parts: MetricsPart[]): MetricsPart {
  const byName = new Map<string, { metric: MetricsPart[number], values: Map<string, MetricValue<string>> }>()
  for (const part of parts) {
    for (const metric of part) {
      let entry = byName.get(metric.name)
      if (!entry) byName.set(metric.name, entry = { metric, values: new Map() })
      for (const v of metric.values) {
        const key = `${(v as { metricName?: string }).metricName ?? ''} ${JSON.stringify(Object.entries(v.labels).sort())}`
        const seen = entry.values.get(key)
        entry.values.set(key, seen ? { ...seen, value: seen.value + v.value } : { ...v })
      }
    }
  }
  return [...byName.values()].map(({ metric, values }) => ({ ...metric, values: [...values.values()] }))
}

/** Sends a worker a message, unless it is gone. */
function tell (worker: Worker, message: ArbiterMetricsMessage) {
  // With a callback, a channel that closes meanwhile is reported there, not thrown.
  if (worker.isConnected()) worker.send(message, undefined, () => {})
}
const MAX_BACKOFF_MS = 10_000

export function runArbiter (settings: Settings): void {
  const log = pino({ level: settings.logLevel, base: { pid: process.pid, role: 'arbiter' } })
  let target = settings.workers
  let stopping = false
  let backoffMs = 0
  let lastDeath = 0
  const ready = new Set<Worker>()
  const retiring = new Set<Worker>()
  const waiters = new Map<Worker, (ok: boolean) => void>()
  const gatherings = new Map<number, Gathering>()
  let lastGathering = 0
  /** Each worker's metrics at its last gathering; and the workers that sent their final ones (closing). */
  const lastParts = new Map<Worker, MetricsPart>()
  const closed = new Set<Worker>()
  /**
   * The counters and histograms of workers that exited, summed: added to every
   * gathering, so that the server's counters do not drop (a counter reset, to
   * Prometheus) each time a worker is replaced.
   */
  let retired: MetricsPart = []
  const retire = (worker: Worker, part: MetricsPart | undefined) => {
    // A gathering that already has this worker's answer would count it twice.
    for (const gathering of gatherings.values()) gathering.parts.delete(worker)
    if (part) retired = sumParts([retired, part.filter(m => String(m.type) === 'counter' || String(m.type) === 'histogram')])
  }

  /**
   * Every ready worker's metrics, summed: asks each for its registry and
   * waits for all (a worker that exits meanwhile is no longer waited for).
   * Workers still booting are not asked: their metrics are not set up yet.
   */
  const gather = (): Promise<string> => new Promise((resolve, reject) => {
    const id = ++lastGathering
    const gathering: Gathering = {
      waiting: new Set([...ready].filter(w => w.isConnected() && !closed.has(w))),
      parts: new Map(),
      finish: (error?: string) => {
        clearTimeout(timer)
        gatherings.delete(id)
        if (error) return reject(new Error(error))
        AggregatorRegistry.aggregate([...gathering.parts.values(), retired]).metrics().then(resolve, reject)
      },
    }
    const timer = setTimeout(() => gathering.finish(`no answer from worker ${[...gathering.waiting].map(w => w.id).join(', ')} within ${GATHER_TIMEOUT_MS} ms`), GATHER_TIMEOUT_MS)
    gatherings.set(id, gathering)
    for (const w of gathering.waiting) tell(w, { type: 'metrics-collect', id })
    if (gathering.waiting.size === 0) gathering.finish()
  })
  const answered = (worker: Worker, gathering: Gathering | undefined) => {
    if (gathering?.waiting.delete(worker) && gathering.waiting.size === 0) gathering.finish()
  }

  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !retiring.has(w))

  const spawn = (): Promise<boolean> => {
    const worker = cluster.fork()
    return new Promise(resolve => waiters.set(worker, resolve))
  }

  const shutdown = (code: number, signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w)
    log.info({ signal, workers: workers.length }, 'stopping workers')
    if (workers.length === 0) process.exit(code)
    for (const w of workers) w.process.kill(signal)
    const timeoutMs = signal === 'SIGTERM' ? settings.gracefulTimeout * 1000 : 2000
    setTimeout(() => {
      log.warn('workers still running after the timeout: killing them')
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL')
      process.exit(code || 1)
    }, timeoutMs).unref()
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(code)
    })
  }

  /** Starts a replacement, waits for it to be ready, then drains the old worker. */
  const replace = async (old: Worker) => {
    if (retiring.has(old) || stopping) return
    retiring.add(old)
    const ok = await spawn()
    if (ok && !stopping) old.process.kill('SIGTERM')
  }

  cluster.on('message', (worker: Worker, message: WorkerMessage) => {
    if (message.type === 'ready') {
      ready.add(worker)
      waiters.get(worker)?.(true)
      waiters.delete(worker)
      log.info({ worker: worker.id, workerPid: worker.process.pid, port: message.port }, 'worker ready')
    } else if (message.type === 'failed') {
      log.fatal({ worker: worker.id, error: message.error }, 'worker failed to boot: stopping the server')
      process.stderr.write(`error: worker failed to boot: ${message.error}\n`)
      shutdown(BOOT_FAILURE, 'SIGKILL')
    } else if (message.type === 'retire') {
      void replace(worker)
    } else if (message.type === 'metrics') {
      gather().then(
        text => tell(worker, { type: 'metrics', id: message.id, text }),
        (err: Error) => tell(worker, { type: 'metrics', id: message.id, error: err.message }),
      )
    } else if (message.type === 'metrics-part') {
      const gathering = gatherings.get(message.id)
      if (message.error) return gathering?.finish(`worker ${worker.id}: ${message.error}`)
      if (gathering?.waiting.has(worker)) gathering.parts.set(worker, message.metrics ?? [])
      lastParts.set(worker, message.metrics ?? [])
      answered(worker, gathering)
    } else if (message.type === 'metrics-final') {
      // The worker has closed its app: its counts are final, and now retired
      // (a gathering waiting for it has them through `retired`).
      closed.add(worker)
      retire(worker, message.metrics)
      for (const gathering of gatherings.values()) answered(worker, gathering)
    }
  })

  cluster.on('exit', (worker, code, signal) => {
    log.info({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker exited')
    const wasReady = ready.delete(worker)
    for (const gathering of gatherings.values()) answered(worker, gathering)
    // A worker that died without its final metrics: its last gathered ones.
    if (!closed.delete(worker)) retire(worker, lastParts.get(worker))
    lastParts.delete(worker)
    const wasRetiring = retiring.delete(worker)
    waiters.get(worker)?.(false)
    waiters.delete(worker)
    if (stopping || wasRetiring) return
    if (!wasReady) {
      log.fatal({ worker: worker.id, code, signal }, 'worker died before it was ready: stopping the server')
      process.stderr.write(`error: worker ${worker.id} exited (code ${code}, signal ${signal}) before it was ready\n`)
      shutdown(BOOT_FAILURE, 'SIGKILL')
      return
    }
    if (live().length >= target) return
    const now = Date.now()
    backoffMs = now - lastDeath > 30_000 ? 0 : Math.min(MAX_BACKOFF_MS, Math.max(100, backoffMs * 2))
    lastDeath = now
    log.warn({ worker: worker.id, code, signal, restartInMs: backoffMs }, 'worker died: replacing it')
    setTimeout(() => { if (!stopping) void spawn() }, backoffMs)
  })

  process.on('SIGTERM', () => shutdown(0, 'SIGTERM'))
  process.on('SIGINT', () => shutdown(0, 'SIGINT'))
  process.on('SIGQUIT', () => shutdown(0, 'SIGQUIT'))
  process.on('SIGHUP', () => {
    const workers = live()
    log.info({ workers: workers.length }, 'SIGHUP: replacing workers one by one')
    void (async () => { for (const w of workers) await replace(w) })()
  })
  process.on('SIGTTIN', () => {
    target++
    log.info({ target }, 'SIGTTIN: adding a worker')
    void spawn()
  })
  process.on('SIGTTOU', () => {
    if (target <= 1) return
    target--
    const victim = live().at(-1)
    log.info({ target }, 'SIGTTOU: removing a worker')
    if (victim) {
      retiring.add(victim)
      victim.process.kill('SIGTERM')
    }
  })

  log.info({ workers: target, host: settings.host, port: settings.port }, 'starting workers')
  void Promise.all(Array.from({ length: target }, spawn)).then(results => {
    if (results.every(Boolean)) log.info({ workers: target }, 'all workers ready')
  })
}
