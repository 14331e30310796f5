// Cheap models run on the main thread, the jobs of one event-loop turn batched
// together; everything slower goes to the inference threads.
import t, { type Test } from 'tap'
import { InferencePool } from '../../framework/pool.ts'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { addModel, slowModel } from '../fixtures/models.ts'
import { addModel as addOf } from '../fixtures/oip.ts'
import { sequenceModel } from '../fixtures/batching.ts'
import type { Tensor } from '../../framework/tensor.ts'
import { buildModel } from '../../framework/onnx-builder.ts'

const x = (v = 0) => ({ x: { type: 'float32' as const, data: new Float32Array([v, v, v, v]), dims: [1, 4] } })
const settle = () => new Promise(resolve => setTimeout(resolve, 50))

/** A one-thread pool whose `add` has run once and so runs inline from now on. */
async function cheapAddPool (t: Test): Promise<InferencePool> {
  // 1 s: judged cheap by its first run however busy the host (see below).
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 1_000_000 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  await pool.run('add', x())
  await settle()
  return pool
}

t.test('a cheap model runs inline once its cost is known, with the same answers', async t => {
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 10_000 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  const first = await pool.run('add', x(1))
  t.equal(pool.stats('add').inline, 0, 'the first run goes to a thread: no cost known yet')
  await settle() // the main-thread session loads in the background
  const runs = []
  for (let i = 0; i < 5; i++) runs.push(await pool.run('add', x(1)))
  t.equal(pool.stats('add').inline, 5, 'then it runs inline')
  for (const r of runs) t.same(Array.from(r.y.data as Float32Array), Array.from(first.y.data as Float32Array))
  t.same(Array.from(first.y.data as Float32Array), [2, 3, 4, 5])
})

t.test('never inline when disabled, or when the model is too slow', async t => {
  const off = new InferencePool({ threads: 1, inlineBelowUs: 0 })
  t.teardown(() => off.close())
  await off.load('add', addModel())
  for (let i = 0; i < 3; i++) { await off.run('add', x()); await settle() }
  t.equal(off.stats('add').inline, 0)

  const pool = new InferencePool({ threads: 1, inlineBelowUs: 50 })
  t.teardown(() => pool.close())
  await pool.load('slow', slowModel(5))
  for (let i = 0; i < 3; i++) { await pool.run('slow', { x: { type: 'float32', data: new Float32Array([1]), dims: [1, 1] } }); await settle() }
  t.equal(pool.stats('slow').inline, 0, 'a model slower than the limit stays on the threads')
})

t.test('a cheap model runs inline while a thread computes another, one run per event-loop turn', async t => {
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 10_000 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  await pool.load('slow', slowModel(20))
  await pool.run('add', x())
  await settle()
  // The first run's measured cost includes warm-up; pin it so all eight fit one run.
  ;(pool as any).queues.get('add').usPerElement = 1
  const before = pool.stats('add')
  const busy = pool.run('slow', { x: { type: 'float32', data: new Float32Array([1]), dims: [1, 1] } })
  const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => pool.run('add', x(i))))
  t.equal(pool.computing, 1, 'the thread is still computing the slow model')
  const after = pool.stats('add')
  t.equal(after.inline - before.inline, 8, 'all eight ran inline')
  t.equal(after.batches - before.batches, 2, 'the first at once (no load before it), the seven behind it in the same turn as one run')
  t.equal(after.largestBatch, 7)
  // Under load now (the last run took seven), a whole turn runs as one.
  const more = await Promise.all(Array.from({ length: 8 }, (_, i) => pool.run('add', x(i))))
  t.equal(pool.stats('add').batches - after.batches, 1, 'under load, the eight of one turn are one run')
  more.forEach((r, i) => t.same(Array.from(r.y.data as Float32Array), [i + 1, i + 2, i + 3, i + 4]))
  answers.forEach((r, i) => t.same(Array.from(r.y.data as Float32Array), [i + 1, i + 2, i + 3, i + 4], `job ${i} got its own rows`))
  await busy
})

t.test('an inline batch stays under the limit: the jobs of one turn split into several runs', async t => {
  const pool = await cheapAddPool(t)
  // Pretend each element costs 100 µs: a run of at most 1 ms holds two 4-element jobs.
  ;(pool as any).queues.get('add').usPerElement = 100
  ;(pool as any).queues.get('add').inlineLastRun = 6 // as if under load: the whole turn waits for its end
  const before = pool.stats('add')
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => pool.run('add', x(i))))
  const after = pool.stats('add')
  t.equal(after.inline - before.inline, 6)
  t.equal(after.batches - before.batches, 3, 'six jobs of 4 elements in runs of at most 10 elements')
  answers.forEach((r, i) => t.same(Array.from(r.y.data as Float32Array), [i + 1, i + 2, i + 3, i + 4]))
})

t.test('an aborted inline job is dropped, never computed', async t => {
  const pool = await cheapAddPool(t)
  const controller = new AbortController()
  ;(pool as any).queues.get('add').inlineLastRun = 2 // under load: jobs wait for the end of the turn
  const before = pool.stats('add')
  const doomed = pool.run('add', x(1), { signal: controller.signal })
  const kept = pool.run('add', x(2))
  controller.abort(new Error('client went away'))
  await t.rejects(doomed, { name: 'AbortedError', message: 'client went away' })
  t.same(Array.from((await kept).y.data as Float32Array), [3, 4, 5, 6])
  const after = pool.stats('add')
  t.equal(after.dropped - before.dropped, 1)
  t.equal(after.items - before.items, 1, 'only the live job was computed')
})

t.test('an inline failure is an InferenceError for that request only; unload drops the main-thread session', async t => {
  const pool = await cheapAddPool(t)
  await t.rejects(pool.run('add', { x: { type: 'float32', data: new Float32Array(3), dims: [1, 3] } }), { name: 'InferenceError' })
  t.equal(pool.stats('add').failed, 1)
  t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [1, 2, 3, 4], 'the next request is fine')
  const [bad, good] = await Promise.allSettled([
    pool.run('add', { x: { type: 'float32', data: new Float32Array(3), dims: [1, 3] } }),
    pool.run('add', x(5)),
  ])
  t.equal(bad.status === 'rejected' && (bad.reason as Error).name, 'InferenceError', 'in the same turn, the bad job fails')
  t.same(good.status === 'fulfilled' && Array.from(good.value.y.data as Float32Array), [6, 7, 8, 9], 'and its neighbour does not')
  await pool.unload('add')
  await t.rejects(pool.run('add', x()), /not loaded/)
  await pool.load('add', addModel())
  t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [1, 2, 3, 4], 'reloaded, it runs on a thread first again')
})

t.test('a model file replaced after the threads read it is not read again by the main thread', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'inline-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'add.onnx')
  writeFileSync(file, addModel())
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 10_000 })
  t.teardown(() => pool.close())
  await pool.load('add', file)
  // A new model put in place (by rename, as a deploy does) before any reload.
  writeFileSync(`${file}.new`, addOf([7, 7, 7, 7]))
  renameSync(`${file}.new`, file)
  for (let i = 0; i < 4; i++) {
    t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [1, 2, 3, 4], `run ${i}: the model the threads loaded`)
    await settle()
  }
  t.equal(pool.stats('add').inline, 0, 'it stays on the threads')
  await pool.load('add', file)
  await pool.run('add', x())
  await settle()
  t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [7, 7, 7, 7], 'reloaded: the new file, inline too')
  t.equal(pool.stats('add').inline, 1)
})

t.test('unloading a model while its main-thread session loads releases that session', async t => {
  // 1 s: judged cheap by its first run however busy the host (in a CI run,
  // that run took over 10 ms, and no main-thread session started loading).
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 1_000_000 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  await pool.run('add', x()) // cheap: its main-thread session starts loading now
  t.equal((pool as any).queues.get('add').inline, 'loading')
  await pool.unload('add')
  await settle()
  const runtime = (pool as any).mainRuntime
  t.notOk(runtime.has('add') || runtime.has('add#inline1'), 'no session left on the main thread')
})

t.test('inline jobs whose feeds do not merge run alone, each counted once', async t => {
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 10_000 })
  t.teardown(() => pool.close())
  await pool.load('seq', sequenceModel())
  const feeds = (data: unknown) => ({ ids: { type: 'int64', data, dims: [1, 2] } as unknown as Tensor })
  await pool.run('seq', feeds(BigInt64Array.from([1n, 2n])))
  await settle()
  ;(pool as any).queues.get('seq').usPerElement = 1
  ;(pool as any).queues.get('seq').inlineLastRun = 2 // under load: the turn's jobs run as one batch
  const before = pool.stats('seq')
  // int64 ids as plain numbers: ONNX Runtime takes them, the batch's BigInt64Array does not.
  const outs = await Promise.all([pool.run('seq', feeds(BigInt64Array.from([1n, 2n]))), pool.run('seq', feeds([1, 2]))])
  t.same(outs.map(o => o.scores.dims), [[1, 2, 3], [1, 2, 3]])
  const after = pool.stats('seq')
  t.match({ inline: after.inline - before.inline, requests: after.requests - before.requests, failed: after.failed }, { inline: 2, requests: 2, failed: 0 })
})

t.test('unloading a model while inline jobs wait for the end of the turn settles them', async t => {
  const pool = await cheapAddPool(t)
  ;(pool as any).queues.get('add').inlineLastRun = 2 // under load: jobs wait for the end of the turn
  const waiting = pool.run('add', x(1)).then(() => 'computed', (e: Error) => e.message)
  const unloaded = pool.unload('add')
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([waiting, new Promise(resolve => { timer = setTimeout(() => resolve('still waiting after 5 s'), 5000) })])
  clearTimeout(timer)
  await unloaded
  t.match(outcome, /not loaded/, 'it fails as a run of an unloaded model does')
})

t.test('the queue kept for inline jobs waiting at an unload is deleted once they have settled', async t => {
  const pool = await cheapAddPool(t)
  ;(pool as any).queues.get('add').inlineLastRun = 2 // under load: jobs wait for the end of the turn
  const waiting = pool.run('add', x(1)).then(() => 'computed', (e: Error) => e.message)
  await pool.unload('add')
  t.match(await waiting, /not loaded/)
  await settle()
  t.notOk((pool as any).queues.has('add'), 'no queue left for the unloaded model')
  await pool.load('add', addModel())
  t.match(pool.stats('add'), { batches: 0, requests: 0, failed: 0 }, 'reloaded, its counters start afresh, as after any unload')
})

t.test('a model kept inline that got slower goes back to the threads: its cost is measured there again now and then', async t => {
  // Its cost follows a value, not the number of input elements (as with a
  // dynamic shape, a loop or non-max suppression): x [1, 1] expanded to
  // `size` and summed. Cheap at [1, 1], milliseconds at [3000, 3000].
  const model = buildModel({
    name: 'valued',
    inputs: [{ name: 'x', type: 'float32', shape: [1, 1] }, { name: 'size', type: 'int64', shape: [2] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, 1] }],
    initializers: [],
    nodes: [{ op: 'Expand', inputs: ['x', 'size'], outputs: ['m'] }, { op: 'ReduceSum', inputs: ['m'], outputs: ['y'] }],
  })
  const feeds = (n: number) => ({
    x: { type: 'float32' as const, data: new Float32Array([1]), dims: [1, 1] },
    size: { type: 'int64' as const, data: BigInt64Array.from([BigInt(n), BigInt(n)]), dims: [2] },
  })
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 2000 })
  t.teardown(() => pool.close())
  await pool.load('valued', model)
  for (let i = 0; i < 20 && pool.stats('valued').inline === 0; i++) { await pool.run('valued', feeds(1)); await settle() }
  t.ok(pool.stats('valued').inline > 0, 'cheap: it runs inline')
  // Now every request is expensive. Within a second and a half (the cost is
  // measured again at least every second), none runs on the main thread any more.
  const started = performance.now()
  let later: ReturnType<typeof pool.stats> | undefined
  while (performance.now() - started < 2500) {
    const y = await pool.run('valued', feeds(3000))
    if ((y.y.data as Float32Array)[0] !== 3000 * 3000) t.fail(`a wrong sum: ${(y.y.data as Float32Array)[0]}`)
    if (!later && performance.now() - started > 1500) later = pool.stats('valued')
  }
  const end = pool.stats('valued')
  t.ok(end.requests - later!.requests >= 3, `${end.requests - later!.requests} requests in the last second`)
  t.equal(end.inline - later!.inline, 0, 'none of them inline')
  const predictedUs = (pool as any).queues.get('valued').usPerElement * 3
  t.ok(predictedUs >= 2000, `the cost learnt again: ${(predictedUs / 1000).toFixed(1)} ms predicted`)
})

t.test('inline jobs waiting for the end of the turn are queued requests as well as queued items', async t => {
  const pool = await cheapAddPool(t)
  // The first job of a turn runs at once (no load); the ones after it wait for the turn's end.
  const runs = [pool.run('add', x(1)), pool.run('add', x(2)), pool.run('add', x(3))]
  const waiting = pool.stats('add')
  t.equal(waiting.queuedItems, 2, 'two items wait')
  t.equal(waiting.queuedRequests, 2, 'in two requests, as /metrics\' queued requests')
  await Promise.all(runs)
  t.equal(pool.stats('add').inline, 3, 'all three ran inline')
  t.match(pool.stats('add'), { queuedItems: 0, queuedRequests: 0 })
})

t.test("a run's computing time leaves out the event-loop turn it waited for, and a session's first run is marked warm-up", async t => {
  const { createRuntime, sessionOptions } = await import('../../framework/inference-core.js')
  const runtime = createRuntime(sessionOptions())
  await runtime.load({ key: 'add', bytes: addModel() })
  t.teardown(() => runtime.unload({ key: 'add' }))
  const first = await runtime.run({ key: 'add', feeds: x(1) })
  t.equal(first.warmUp, true, 'the first run also allocates what later runs reuse')
  // The run's callback waits behind 30 ms of other work in the same turn.
  setImmediate(() => { const until = performance.now() + 30; while (performance.now() < until); })
  const started = performance.now()
  const second = await runtime.run({ key: 'add', feeds: x(1) })
  t.ok(performance.now() - started >= 30, 'the await took the 30 ms')
  t.equal(second.warmUp, false)
  t.ok(second.computeUs < 20_000, `${second.computeUs.toFixed(0)} us: ONNX Runtime's own time, not the wait`)
  t.same(Array.from(second.outputs.y.data as Float32Array), [2, 3, 4, 5])
})

t.test('a model near the limit does not go back and forth: one slow run keeps it inline, and it leaves at twice the limit', async t => {
  const limit = 10_000
  const pool = new InferencePool({ threads: 1, inlineBelowUs: limit })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  await pool.run('add', x())
  await settle()
  const q = (pool as any).queues.get('add')
  const learn = (us: number) => (pool as any).learnCost(q, x(), us, false)
  const inlineRuns = async () => { const before = pool.stats('add').inline; await pool.run('add', x()); return pool.stats('add').inline - before }
  // Predicted at 90% of the limit (4 elements), running inline.
  q.usPerElement = 0.9 * limit / 4
  t.equal(await inlineRuns(), 1, 'under the limit: inline')
  // One run that took ten times the limit (the core was taken meanwhile).
  q.usPerElement = 0.9 * limit / 4
  learn(10 * limit)
  t.ok(q.usPerElement * 4 < 2 * limit, `one outlier counts as twice the estimate: ${(q.usPerElement * 4).toFixed(0)} us predicted`)
  t.equal(await inlineRuns(), 1, 'over the limit but under twice it: still inline')
  // A model that really got slower: every run slow. It leaves within a few runs.
  let runs = 0
  while (runs < 20 && q.usPerElement * 4 < 2 * limit) { learn(10 * limit); runs++ }
  t.ok(runs <= 5, `${runs} slow runs took it past twice the limit`)
  t.equal(await inlineRuns(), 0, 'past twice the limit: to a thread')
  // Once on the threads, it comes back only under the limit itself.
  q.usPerElement = 1.5 * limit / 4
  t.equal(await inlineRuns(), 0, 'at 1.5x the limit, from a thread: stays on the threads')
  q.usPerElement = 0.5 * limit / 4
  t.equal(await inlineRuns(), 1, 'under the limit again: inline')
})
