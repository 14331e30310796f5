// The arbiter's side of /metrics: a scrape reaches one worker, which asks the
// arbiter; the arbiter gathers every ready worker's registry and sums them
// (prom-client's AggregatorRegistry.aggregate), so each scrape shows the whole
// server; workers still booting, which cannot answer yet, are counted in the
// lifecycle state gauge as the arbiter tells (`unasked`). The counters of
// workers that exited stay in the sum (their final values, sent as they
// close; a crashed worker's, as of the last scrape), so a replaced worker is never a counter reset to Prometheus. Nor is the order the
// workers answer in: a floating-point sum of seconds can come out an ulp lower
// when added in another order, so no counter is reported below its last value.
//
// This holds no process: the arbiter tells it what its workers say and do, in
// the order it hears them, which is what the tests replay.
import { AggregatorRegistry, type MetricValue } from 'prom-client'
import { LIFECYCLE_STATE_HELP, LIFECYCLE_STATE_METRIC, LIFECYCLE_STATES, type MetricsPart } from './metrics.ts'
import type { LifecycleState } from './create-app.ts'

/** How long a gathering waits for the workers. */
export const GATHER_TIMEOUT_MS = 5000

interface Gathering<W> {
  /** Workers asked that have not answered yet. */
  waiting: Set<W>
  /** The answers so far, by worker (a worker that retires meanwhile is counted in `retired` instead). */
  parts: Map<W, MetricsPart>
  finish: (error?: string) => void
}

/** A sample's series within its metric: its name (a histogram's _bucket, _sum, _count) and labels. */
const seriesOf = (v: MetricValue<string>) =>
  `${(v as { metricName?: string }).metricName ?? ''} ${JSON.stringify(Object.entries(v.labels).sort())}`

/** Metrics of several workers as one part, each sample summed over them (counters and histograms add up). */
function sumParts (parts: MetricsPart[]): MetricsPart {
  const byName = new Map<string, { metric: MetricsPart[number], values: Map<string, MetricValue<string>> }>()
  for (const part of parts) {
    for (const metric of part) {
      let entry = byName.get(metric.name)
      if (!entry) byName.set(metric.name, entry = { metric, values: new Map() })
      for (const v of metric.values) {
        const key = seriesOf(v)
        const seen = entry.values.get(key)
        entry.values.set(key, seen ? { ...seen, value: seen.value + v.value } : { ...v })
      }
    }
  }
  return [...byName.values()].map(({ metric, values }) => ({ ...metric, values: [...values.values()] }))
}

/** The counters and histograms of a part: what stays in the sum once its worker is gone (gauges do not). */
function countersOf (part: MetricsPart | undefined): MetricsPart {
  return (part ?? []).filter(counting)
}

/** The lifecycle state gauge of workers the arbiter counts itself, as a worker's part (every state, 0 when none). */
const statesPart = (counts: Partial<Record<LifecycleState, number>>): MetricsPart => [{
  name: LIFECYCLE_STATE_METRIC,
  help: LIFECYCLE_STATE_HELP,
  type: 'gauge',
  aggregator: 'sum',
  values: LIFECYCLE_STATES.map(state => ({ labels: { state }, value: counts[state] ?? 0 })),
}] as unknown as MetricsPart

const counting = (metric: MetricsPart[number]) => String(metric.type) === 'counter' || String(metric.type) === 'histogram'

export interface ClusterMetricsOptions<W> {
  /**
   * Asks a worker for its registry; it answers through `part(worker, id, ...)`.
   * False when it cannot be asked (its channel closed before its exit is
   * known): it is then counted as of its last answer.
   */
  ask: (worker: W, id: number) => boolean
  /** How a worker is named in errors. */
  nameOf: (worker: W) => string | number
  timeoutMs?: number
}

export class ClusterMetrics<W> {
  readonly #options: ClusterMetricsOptions<W>
  readonly #gatherings = new Map<number, Gathering<W>>()
  #lastId = 0
  /** Each worker's metrics at its last gathering (a crashed worker's last known counts). */
  readonly #lastParts = new Map<W, MetricsPart>()
  /** Workers that sent their final metrics: they are not asked again. */
  readonly #closed = new Set<W>()
  /** The counters and histograms of workers that exited, summed: added to every gathering. */
  #retired: MetricsPart = []
  /** Each counter and histogram sample of the last gathering, by metric and series: the least the next reports. */
  #reported = new Map<string, number>()

  constructor (options: ClusterMetricsOptions<W>) {
    this.#options = options
  }

  /**
   * Every worker's metrics, summed as Prometheus text: asks each of `workers`
   * (the ready ones; those that sent their final metrics are skipped) and
   * waits for all. A worker that closes or exits meanwhile is no longer waited
   * for. Fails when a worker reports an error, or is silent past the timeout.
   * `unasked`: how many workers not asked are in each lifecycle state (those
   * still booting: they cannot answer yet), added to the state gauge; so are,
   * as 'draining', those of `workers` that sent their final metrics.
   */
  gather (workers: Iterable<W>, unasked: Partial<Record<LifecycleState, number>> = {}): Promise<string> {
    const listed = [...workers]
    return new Promise((resolve, reject) => {
      const id = ++this.#lastId
      const gathering: Gathering<W> = {
        waiting: new Set(listed.filter(w => !this.#closed.has(w))),
        parts: new Map(),
        finish: (error?: string) => {
          clearTimeout(timer)
          this.#gatherings.delete(id)
          if (error) return reject(new Error(error))
          // A worker that sent its final metrics (before this gathering or
          // during it: its answer, gauge included, is then dropped) closes
          // its app in a drain: 'draining' until its exit, not missing.
          const closing = listed.filter(w => this.#closed.has(w)).length
          const states = { ...unasked, draining: (unasked.draining ?? 0) + closing }
          AggregatorRegistry.aggregate([...gathering.parts.values(), this.#retired, statesPart(states)]).getMetricsAsJSON()
            .then(sum => AggregatorRegistry.aggregate([this.#notBelowReported(sum)]).metrics())
            .then(resolve, reject)
        },
      }
      const timeoutMs = this.#options.timeoutMs ?? GATHER_TIMEOUT_MS
      const silent = () => [...gathering.waiting].map(this.#options.nameOf).join(', ')
      const timer = setTimeout(() => gathering.finish(`no answer from worker ${silent()} within ${timeoutMs} ms`), timeoutMs)
      this.#gatherings.set(id, gathering)
      for (const w of gathering.waiting) {
        if (this.#options.ask(w, id)) continue
        // Left out, its counters would dip until its exit retires them: Prometheus reads a dip as a reset.
        gathering.parts.set(w, countersOf(this.#lastParts.get(w)))
        gathering.waiting.delete(w)
      }
      if (gathering.waiting.size === 0) gathering.finish()
    })
  }

  /** A worker's answer to gathering `id`: its metrics, or why it has none. */
  part (worker: W, id: number, metrics: MetricsPart | undefined, error?: string): void {
    const gathering = this.#gatherings.get(id)
    if (error) return gathering?.finish(`worker ${this.#options.nameOf(worker)}: ${error}`)
    if (gathering?.waiting.has(worker)) gathering.parts.set(worker, metrics ?? [])
    this.#lastParts.set(worker, metrics ?? [])
    this.#answered(worker, gathering)
  }

  /** A worker closed its app: its counts are final, and now retired (a gathering waiting for it has them that way). */
  final (worker: W, metrics: MetricsPart): void {
    this.#closed.add(worker)
    this.#retire(worker, metrics)
    for (const gathering of this.#gatherings.values()) this.#answered(worker, gathering)
  }

  /** A worker's process exited: no gathering waits for it; without final metrics, its last gathered ones are retired. */
  exited (worker: W): void {
    // Retired first: a gathering this ends must already hold the worker's counts.
    if (!this.#closed.delete(worker)) this.#retire(worker, this.#lastParts.get(worker))
    this.#lastParts.delete(worker)
    for (const gathering of this.#gatherings.values()) this.#answered(worker, gathering)
  }

  /**
   * The sum, each counter and histogram sample raised to what the last
   * gathering reported if lower: the true counts only grow, but the
   * floating-point sum of fractions (seconds) depends on the order of the
   * additions, which changes with the order of the answers and as workers
   * retire. Counts of requests are integers, summed exactly: never raised.
   */
  #notBelowReported (sum: MetricsPart): MetricsPart {
    const reported = new Map<string, number>()
    const raised = sum.map(metric => {
      if (!counting(metric)) return metric
      return {
        ...metric,
        values: metric.values.map(v => {
          const key = `${metric.name} ${seriesOf(v)}`
          const last = this.#reported.get(key) ?? -Infinity
          reported.set(key, Math.max(v.value, last))
          return v.value < last ? { ...v, value: last } : v
        }),
      }
    })
    // Series gone from this sum (a model unloaded everywhere) are forgotten.
    this.#reported = reported
    return raised
  }

  #retire (worker: W, part: MetricsPart | undefined) {
    // A gathering that already has this worker's answer would count it twice.
    for (const gathering of this.#gatherings.values()) gathering.parts.delete(worker)
    if (part) this.#retired = sumParts([this.#retired, countersOf(part)])
  }

  #answered (worker: W, gathering: Gathering<W> | undefined) {
    if (gathering?.waiting.delete(worker) && gathering.waiting.size === 0) gathering.finish()
  }
}
