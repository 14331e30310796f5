// The arbiter's sum of its workers' metrics, with the workers' messages
// replayed in a chosen order: the orders a real cluster only hits by chance
// (a worker that closes or dies while a scrape it answered still waits for
// another worker) are played here every time.
import t from 'tap'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { ClusterMetrics } from '../../framework/cluster-metrics.ts'
import type { MetricsPart } from '../../framework/metrics.ts'

/** A worker's metrics as it sends them: `requests` counted and timed, `inFlight` as a gauge. */
async function part (requests: number, inFlight = 1): Promise<MetricsPart> {
  const registry = new Registry()
  new Counter({ name: 'requests_total', help: 'requests', labelNames: ['route'], registers: [registry] }).inc({ route: '/scale' }, requests)
  new Gauge({ name: 'in_flight', help: 'in flight', registers: [registry] }).set(inFlight)
  const seconds = new Histogram({ name: 'request_seconds', help: 'durations', buckets: [0.1], registers: [registry] })
  for (let i = 0; i < requests; i++) seconds.observe(0.05)
  return await registry.getMetricsAsJSON()
}

/** A sample's value in Prometheus text, or undefined when absent. */
function sample (text: string, name: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}
const requests = (text: string) => sample(text, 'requests_total')

/** A ClusterMetrics over workers named by strings, recording whom it asked; those in `unreachable` cannot be asked. */
function setup (timeoutMs?: number) {
  const asked: Array<[string, number]> = []
  const unreachable = new Set<string>()
  const ask = (worker: string, id: number) => {
    if (unreachable.has(worker)) return false
    asked.push([worker, id])
    return true
  }
  const metrics = new ClusterMetrics<string>({ ask, nameOf: w => w, timeoutMs })
  /** The id of the last gathering `worker` was asked for. */
  const idFor = (worker: string) => asked.filter(([w]) => w === worker).at(-1)![1]
  return { metrics, asked, idFor, unreachable }
}

t.test('sums every ready worker\'s answer', async t => {
  const { metrics, asked, idFor } = setup()
  const text = metrics.gather(['A', 'B'])
  t.same(asked.map(([w]) => w), ['A', 'B'])
  metrics.part('A', idFor('A'), await part(5))
  metrics.part('B', idFor('B'), await part(3))
  const sum = await text
  t.equal(requests(sum), 8)
  t.equal(sample(sum, 'in_flight'), 2, 'gauges of live workers are summed too')
})

t.test('a worker that closes after answering, while the gathering waits for another, is counted once', async t => {
  const { metrics, idFor } = setup()
  const text = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), await part(5))
  // A drains after one more request and sends its final counts before B answers.
  metrics.final('A', await part(6))
  metrics.part('B', idFor('B'), await part(3))
  t.equal(requests(await text), 9, 'A\'s final 6 and B\'s 3, not A\'s answer as well')
  metrics.exited('A')
  const next = metrics.gather(['B'])
  metrics.part('B', idFor('B'), await part(3))
  t.equal(requests(await next), 9, 'the next scrape agrees')
})

t.test('a worker that dies after answering, while the gathering waits for another, is counted once', async t => {
  const { metrics, idFor } = setup()
  const text = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), await part(5))
  metrics.exited('A')
  metrics.part('B', idFor('B'), await part(3))
  t.equal(requests(await text), 8, 'A\'s answer counted through its retired counts only')
  const next = metrics.gather(['B'])
  metrics.part('B', idFor('B'), await part(4))
  t.equal(requests(await next), 9, 'a crashed worker\'s last gathered counts stay in the sum')
})

t.test('a worker that closes before answering is no longer waited for, nor asked again', async t => {
  const { metrics, asked, idFor } = setup()
  const text = metrics.gather(['A', 'B'])
  metrics.final('A', await part(6))
  metrics.part('B', idFor('B'), await part(3))
  t.equal(requests(await text), 9)
  asked.length = 0
  // A is still ready until its process exits: the arbiter may still list it.
  const next = metrics.gather(['A', 'B'])
  t.same(asked.map(([w]) => w), ['B'])
  metrics.part('B', idFor('B'), await part(3))
  t.equal(requests(await next), 9)
})

t.test('a worker that exits while waited for ends the wait; its gauges leave the sum, its counters stay', async t => {
  const { metrics, idFor } = setup()
  const first = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), await part(2, 7))
  metrics.part('B', idFor('B'), await part(3, 1))
  t.equal(sample(await first, 'in_flight'), 8)
  const text = metrics.gather(['A', 'B'])
  metrics.part('B', idFor('B'), await part(4, 1))
  metrics.exited('A')
  const sum = await text
  t.equal(requests(sum), 6, 'A\'s 2 as of the last scrape, and B\'s 4')
  t.equal(sample(sum, 'in_flight'), 1, 'only B\'s gauge')
})

t.test('a ready worker that cannot be asked (its channel closed, its exit not yet seen) counts as of its last answer', async t => {
  // The arbiter hears a crashed worker's disconnect and its exit as two
  // events: a scrape between them used to leave it out of the sum (a dip,
  // which Prometheus reads as a counter reset) until its exit retired it.
  const { metrics, idFor, unreachable } = setup(1000)
  const first = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), await part(5, 7))
  metrics.part('B', idFor('B'), await part(3, 1))
  t.equal(requests(await first), 8)
  unreachable.add('A')
  const between = metrics.gather(['A', 'B'])
  metrics.part('B', idFor('B'), await part(4, 1))
  const sum = await between
  t.equal(requests(sum), 9, 'A\'s 5 as of its last answer, and B\'s 4: no dip, no wait for A')
  t.equal(sample(sum, 'in_flight'), 1, 'only B\'s gauge: A\'s is not live')
  metrics.exited('A')
  const after = metrics.gather(['B'])
  metrics.part('B', idFor('B'), await part(4, 1))
  t.equal(requests(await after), 9, 'once its exit is seen: the same, counted once')
})

t.test('with no worker ready, the retired counts alone', async t => {
  const { metrics } = setup()
  metrics.final('A', await part(6))
  metrics.exited('A')
  t.equal(requests(await metrics.gather([])), 6)
})

t.test('the counters and histograms of retired workers add up', async t => {
  const { metrics } = setup()
  metrics.final('A', await part(6))
  metrics.final('B', await part(3))
  metrics.exited('A')
  metrics.exited('B')
  const sum = await metrics.gather([])
  t.equal(requests(sum), 9)
  t.equal(sample(sum, 'request_seconds_count'), 9)
  t.equal(sample(sum, 'request_seconds_bucket'), 9, 'the 0.1 s bucket')
  t.equal(sample(sum, 'in_flight'), undefined, 'no gauge of a gone worker')
})

t.test('an answer without metrics counts as none', async t => {
  const { metrics, idFor } = setup()
  const text = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), undefined)
  metrics.part('B', idFor('B'), await part(3))
  t.equal(requests(await text), 3)
})

t.test('a silent worker fails the gathering after the timeout, naming it', async t => {
  const { metrics, idFor } = setup(30)
  const text = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), await part(1))
  await t.rejects(text, { message: 'no answer from worker B within 30 ms' })
  // A late answer or error for that gathering is ignored.
  metrics.part('B', idFor('B'), await part(1))
  metrics.part('B', idFor('B'), undefined, 'late')
})

t.test('a worker\'s error fails the gathering with it', async t => {
  const { metrics, idFor } = setup()
  const text = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), undefined, 'registry broke')
  await t.rejects(text, { message: 'worker A: registry broke' })
})

t.test('a sum of fractions never comes out lower than the last one, whatever order the workers answer in', async t => {
  // Seconds as workers count them (CPU time, a histogram's _sum): floating-point
  // sums depend on their order, (0.1 + 0.2) + 0.3 > (0.3 + 0.2) + 0.1, and a
  // dip of an ulp is a counter reset to Prometheus (a rate spike of the whole total).
  const seconds = async (s: number): Promise<MetricsPart> => {
    const registry = new Registry()
    new Counter({ name: 'cpu_seconds_total', help: 'cpu', registers: [registry] }).inc(s)
    new Histogram({ name: 'request_seconds', help: 'durations', buckets: [1], registers: [registry] }).observe(s)
    return await registry.getMetricsAsJSON()
  }
  const { metrics, idFor } = setup()
  const gathered = async (order: string[]) => {
    const text = metrics.gather(['A', 'B', 'C'])
    const values: Record<string, number> = { A: 0.1, B: 0.2, C: 0.3 }
    for (const w of order) metrics.part(w, idFor(w), await seconds(values[w]))
    const sum = await text
    return [sample(sum, 'cpu_seconds_total'), sample(sum, 'request_seconds_sum')]
  }
  const first = await gathered(['A', 'B', 'C'])
  const second = await gathered(['C', 'B', 'A'])
  t.ok(second[0]! >= first[0]!, `CPU seconds: ${first[0]} then ${second[0]}`)
  t.ok(second[1]! >= first[1]!, `histogram sum: ${first[1]} then ${second[1]}`)
  t.equal(Math.round(second[0]! * 1e9), 6e8, 'still the sum')
  // A worker retiring folds its counts into the retired sum: another order of additions.
  metrics.final('A', await seconds(0.1))
  metrics.exited('A')
  const text = metrics.gather(['B', 'C'])
  metrics.part('C', idFor('C'), await seconds(0.3))
  metrics.part('B', idFor('B'), await seconds(0.2))
  const third = await text
  t.ok(sample(third, 'cpu_seconds_total')! >= second[0]!, `after A retired: ${sample(third, 'cpu_seconds_total')}`)
})

t.test('the workers not asked (booting) are added to the lifecycle state gauge, every state present', async t => {
  const { metrics, idFor } = setup()
  const registry = new Registry()
  new Gauge({ name: 'onnx_serve_lifecycle_state', help: 'state', labelNames: ['state'], registers: [registry] }).set({ state: 'ready' }, 1)
  const text = metrics.gather(['A'], { loading: 2, failed: 1 })
  metrics.part('A', idFor('A'), await registry.getMetricsAsJSON())
  const sum = await text
  const state = (s: string) => sample(sum, `onnx_serve_lifecycle_state{state="${s}"}`)
  t.same(['loading', 'ready', 'draining', 'failed'].map(state), [2, 1, 0, 1])
  t.match(await metrics.gather([]), /^onnx_serve_lifecycle_state\{state="loading"\} 0$/m, 'present with no worker asked')
})

t.test('a worker that sent its final metrics is in the lifecycle state gauge as draining until it exits', async t => {
  const { metrics, idFor } = setup()
  const stateOf = async (state: string) => {
    const registry = new Registry()
    new Gauge({ name: 'onnx_serve_lifecycle_state', help: 'state', labelNames: ['state'], registers: [registry] }).set({ state }, 1)
    return await registry.getMetricsAsJSON()
  }
  const draining = (text: string) => sample(text, 'onnx_serve_lifecycle_state{state="draining"}')
  // A drains (retired): it answers 'draining' itself, then closes while B has yet to answer.
  const first = metrics.gather(['A', 'B'])
  metrics.part('A', idFor('A'), await stateOf('draining'))
  metrics.final('A', await stateOf('draining'))
  metrics.part('B', idFor('B'), await stateOf('ready'))
  t.equal(draining(await first), 1, 'closed during the gathering: still draining')
  // Closed, not exited yet: not asked, but still there.
  const second = metrics.gather(['A', 'B'])
  metrics.part('B', idFor('B'), await stateOf('ready'))
  const sum = await second
  t.equal(draining(sum), 1, 'closed, its process not gone: draining')
  t.equal(sample(sum, 'onnx_serve_lifecycle_state{state="ready"}'), 1)
  metrics.exited('A')
  const third = metrics.gather(['B'])
  metrics.part('B', idFor('B'), await stateOf('ready'))
  t.equal(draining(await third), 0, 'gone once it exited')
})
