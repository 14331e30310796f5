// Batching in the inference pool, driven directly: batches form while a thread
// is busy and results go back to the right caller; limits are counted in
// items; full queues refuse at once; aborted jobs never compute; a failing
// batch fails only the request that caused it.
import t, { type Test } from 'tap'
import { AbortedError, BadInputError, InferenceError, InferencePool, ModelUnavailableError, OverloadedError, badInputOf } from '../../framework/pool.ts'
import type { Tensor } from '../../framework/tensor.ts'
import { RequestDeadline } from '../../framework/deadline.ts'
import { buildModel } from '../../framework/onnx-builder.ts'
import { affineModel, ids, rows, sequenceModel, slowAffineModel, toRows, SEQ_VOCAB } from '../fixtures/batching.ts'

async function pool (t: Test, options: ConstructorParameters<typeof InferencePool>[0] = { threads: 1 }) {
  const p = new InferencePool(options)
  t.teardown(() => p.close())
  await p.load('affine', affineModel())
  await p.load('slow', slowAffineModel())
  await p.load('seq', sequenceModel())
  return p
}

/** Occupies the only thread with a slow run, so that what follows queues. */
const occupy = (p: InferencePool) => p.run('slow', { x: rows([[0, 0, 0, 0]]) })

/** The outcomes of `runs`, or 'still waiting after N s' if they have not all settled by then. */
async function settledWithin<T> (runs: Array<Promise<T>>, ms: number): Promise<T[] | string> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<string>(resolve => { timer = setTimeout(() => resolve(`still waiting after ${ms / 1000} s`), ms) })
  try {
    return await Promise.race([Promise.all(runs), late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Three 'seq' runs queued behind a slow one and merged into one batch, which
 * fails (one id is out of the vocabulary); resolves once that batch is
 * computing, to their outcomes: 'computed' or the error message.
 */
async function failingBatchComputing (p: InferencePool): Promise<Array<Promise<string>>> {
  const busy = occupy(p)
  const batch = [[[1, 2]], [[7, SEQ_VOCAB + 100]], [[3]]].map(x => p.run('seq', { ids: ids(x) }).then(() => 'computed', (e: Error) => e.message))
  await busy
  return batch
}

t.test('a lone request on an idle pool runs at once, alone', async t => {
  const p = await pool(t)
  const out = await p.run('affine', { x: rows([[1, 2, 3, 4]]) })
  t.same(toRows(out.y), [[3, 5, 7, 9]])
  t.match(p.stats('affine'), { batches: 1, requests: 1, items: 1, queuedItems: 0 })
})

t.test('requests queued behind a busy thread form one batch and each gets its own rows back', async t => {
  const p = await pool(t)
  const busy = occupy(p)
  const inputs = Array.from({ length: 10 }, (_, i) => i % 3 === 0 ? [[i, i, i, i], [-i, -i, -i, -i]] : [[i, i + 1, i + 2, i + 3]])
  const results = await Promise.all(inputs.map(x => p.run('affine', { x: rows(x) })))
  await busy
  results.forEach((out, i) => t.same(toRows(out.y), inputs[i].map(r => r.map(v => v * 2 + 1)), `request ${i}`))
  const stats = p.stats('affine')
  t.equal(stats.batches, 1, 'one session.run for all ten')
  t.equal(stats.requests, 10)
  t.equal(stats.items, 14, 'items are rows, not requests')
})

t.test('batches hold at most maxBatchItems rows; a larger request runs alone', async t => {
  const p = await pool(t)
  p.configure('affine', { maxBatchItems: 5 })
  const busy = occupy(p)
  const sizes = [2, 2, 2, 2, 7, 1]
  const results = await Promise.all(sizes.map((n, k) => p.run('affine', { x: rows(Array.from({ length: n }, (_, i) => [k, i, 0, 0])) })))
  await busy
  results.forEach((out, k) => t.same(toRows(out.y), Array.from({ length: sizes[k] }, (_, i) => [2 * k + 1, 2 * i + 1, 1, 1])))
  const stats = p.stats('affine')
  t.equal(stats.largestBatch, 7, 'the 7-row request went alone')
  // [2,2,1] (the 1-row request fills the gap), [2,2], [7]
  t.equal(stats.batches, 3)
})

t.test('results equal unbatched runs, with padding for different lengths', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0 })
  const lengths = [3, 7, 1, 5, 5, 2, 9, 4]
  const inputs = lengths.map((n, k) => Array.from({ length: 1 + (k % 2) }, (_, r) => Array.from({ length: n }, (_, i) => 1 + (k * 7 + r * 3 + i * 5) % (SEQ_VOCAB - 1))))
  const alone: Array<Record<string, Tensor>> = []
  for (const x of inputs) alone.push(await p.run('seq', { ids: ids(x) }))
  t.equal(p.stats('seq').batches, inputs.length)
  const busy = occupy(p)
  const batched = await Promise.all(inputs.map(x => p.run('seq', { ids: ids(x) })))
  await busy
  t.equal(p.stats('seq').batches, inputs.length + 1, 'all in one batch')
  batched.forEach((out, k) => {
    t.same(out.scores.dims, alone[k].scores.dims, `scores dims ${k}`)
    t.same(Array.from(out.scores.data as Float32Array), Array.from(alone[k].scores.data as Float32Array), `scores ${k}`)
    // Sums over a padded axis may round differently (another summation order).
    const diff = Array.from(out.total.data as Float32Array).map((v, i) => Math.abs(v - (alone[k].total.data as Float32Array)[i]))
    t.same(out.total.dims, alone[k].total.dims)
    t.ok(Math.max(...diff) < 1e-5, `total ${k} within 1e-5 (max diff ${Math.max(...diff)})`)
  })
})

t.test('a merged batch of a megabyte or more is merged into the buffer the last one gave back, with the same results', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0 })
  // 16 requests of 5,000-10,000 ids (int64): merged, 1.3 MB.
  const rounds = [[5000, 9000, 7000, 10000], [9000, 6000, 8000, 5000]].map((lengths, round) =>
    Array.from({ length: 16 }, (_, k) => [Array.from({ length: lengths[k % 4] - k }, (_, i) => 1 + (round * 13 + k * 7 + i * 5) % (SEQ_VOCAB - 1))]))
  const spares = () => (p as unknown as { spares: ArrayBuffer[] }).spares
  for (const [round, inputs] of rounds.entries()) {
    const alone: Array<Record<string, Tensor>> = []
    for (const x of inputs) alone.push(await p.run('seq', { ids: ids(x) }))
    const kept = [...spares()]
    const busy = occupy(p)
    const batched = await Promise.all(inputs.map(x => p.run('seq', { ids: ids(x) })))
    await busy
    t.equal(kept.length, round, round === 0 ? 'no buffer kept yet' : 'the first batch\'s buffer was kept')
    t.ok(spares().length === 1 && spares()[0].byteLength >= 1 << 20, 'the batch\'s buffer came back')
    if (round > 0) {
      // Merged into, then sent to the thread (detached here), and back, the same size: no new buffer.
      t.equal(kept[0].byteLength, 0, 'the second batch was merged into the first one\'s buffer')
      t.equal(spares()[0].byteLength, 16 * 9997 * 8, 'which came back')
    }
    batched.forEach((out, k) => t.same(Array.from(out.scores.data as Float32Array), Array.from(alone[k].scores.data as Float32Array), `round ${round}: scores ${k}`))
  }
})

/**
 * A pool whose first merged batch (16 requests of 9,000 int64 ids: 1.15 MB)
 * has run, leaving its buffer as the one spare; `long(k)` is request k's ids.
 */
/**
 * Holds the thread's answers to runs until released, one release per run: a
 * thread computing for as long as a test needs. `computed()` resolves once
 * the next run has computed (its answer held); `release()` lets the oldest
 * held answer go.
 */
function holdRuns (p: InferencePool) {
  const thread = (p as any).threads[0]
  const call = thread.call.bind(thread)
  const releases: Array<() => void> = []
  const started: Array<() => void> = []
  thread.call = async (msg: { op: string }, transfer: ArrayBuffer[]) => {
    const answer = await call(msg, transfer)
    if (msg.op === 'run') await new Promise<void>(resolve => { releases.push(resolve); started.shift()?.() })
    return answer
  }
  return {
    computed: () => new Promise<void>(resolve => started.push(resolve)),
    release: () => { releases.shift()?.() },
  }
}

async function poolWithSpare (t: Test) {
  const p = await pool(t)
  const spares = () => (p as unknown as { spares: ArrayBuffer[] }).spares
  const long = (k: number) => [Array.from({ length: 9000 }, (_, i) => 1 + (k + i) % (SEQ_VOCAB - 1))]
  const busy = occupy(p)
  await Promise.all(Array.from({ length: 16 }, (_, k) => p.run('seq', { ids: ids(long(k)) })))
  await busy
  t.equal(spares().length, 1, 'the first batch\'s buffer was kept')
  return { p, spares, long }
}

t.test('a spare buffer taken for a merge that throws goes back to the spares', async t => {
  const { p, spares, long } = await poolWithSpare(t)
  const spare = spares()[0]
  // One request's ids as plain numbers: its copy into the spare throws.
  const plain = { ids: { type: 'int64', data: long(0)[0], dims: [1, 9000] } as unknown as Tensor }
  const busy = occupy(p)
  const outs = await Promise.all(Array.from({ length: 16 }, (_, k) => p.run('seq', k === 5 ? plain : { ids: ids(long(k)) })))
  await busy
  t.same(outs.map(o => o.scores.dims), Array(16).fill([1, 9000, 3]), 'each answered')
  t.match(p.stats('seq'), { batches: 17, requests: 32 }, 'the second batch ran as sixteen runs alone')
  t.equal(spares().length, 1)
  t.equal(spares()[0], spare, 'the spare is kept for the next merge')
})

t.test('a merged batch that fails on its thread gives its buffer back: the spare is kept', async t => {
  const { p, spares, long } = await poolWithSpare(t)
  const kept = spares()[0]
  // One request's id outside the table: ONNX Runtime fails the merged run.
  const bad = long(5)
  bad[0][100] = SEQ_VOCAB + 100
  const busy = occupy(p)
  const outs = await Promise.all(Array.from({ length: 16 }, (_, k) => p.run('seq', { ids: ids(k === 5 ? bad : long(k)) }).then(o => o.scores.dims, (e: Error) => e.name)))
  await busy
  t.equal(kept.byteLength, 0, 'the second batch was merged into the spare, and sent to the thread')
  t.same(outs.filter(o => o === 'BadInputError').length, 1, 'only the bad request failed, rerun alone')
  t.same(outs.filter(o => typeof o === 'string').length, 1)
  t.equal(spares().length, 1, 'the spare came back with the failure')
  t.equal(spares()[0]?.byteLength, 16 * 9000 * 8)
})

t.test('a pad value an input\'s type cannot hold (0.5 for int64) does not fail batches: only same-length requests share one', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0.5 })
  const busy = occupy(p)
  const outs = await Promise.all([[[1, 2]], [[3, 4, 5]], [[6, 7]]].map(x => p.run('seq', { ids: ids(x) }).then(o => o.scores.dims, e => (e as Error).message)))
  await busy
  t.same(outs, [[1, 2, 3], [1, 3, 3], [1, 2, 3]])
  t.equal(p.stats('seq').batches, 2, 'the two of length 2 together')
})

t.test('without a pad value only same-length requests share a batch', async t => {
  const p = await pool(t)
  const busy = occupy(p)
  await Promise.all([[[1, 2]], [[3, 4, 5]], [[6, 7]], [[8, 9, 10]]].map(x => p.run('seq', { ids: ids(x) })))
  await busy
  t.equal(p.stats('seq').batches, 2, 'grouped by length')
})

t.test('a request of no elements, whose dimensions its body does not bound, runs alone: it never pads its neighbours to them', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0 })
  const busy = occupy(p)
  // [0, 100000] holds nothing, so costs nothing to send; merged, it padded [1, 2] to 100,000 tokens.
  const empty: Tensor = { type: 'int64', data: new BigInt64Array(0), dims: [0, 100_000] }
  const outs = await Promise.all([p.run('seq', { ids: ids([[1, 2]]) }), p.run('seq', { ids: empty }), p.run('seq', { ids: ids([[3, 4, 5]]) })])
  await busy
  t.same(outs.map(o => o.scores.dims), [[1, 2, 3], [0, 100_000, 3], [1, 3, 3]])
  t.match(p.stats('seq'), { batches: 2, largestBatch: 2 }, 'the two requests with data together, the empty one alone')
})

t.test('maxBatchTokens bounds padded tokens per batch', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0, maxBatchTokens: 10 })
  const busy = occupy(p)
  await Promise.all([[[1, 2]], [[1, 2, 3, 4, 5, 6]], [[1, 2, 3]], [[4, 5]]].map(x => p.run('seq', { ids: ids(x) })))
  await busy
  // Head [1,2]; [1..6] would make 2 x 6 = 12 tokens: skipped; [1,2,3] makes
  // 2 x 3 = 6; [4,5] makes 3 x 3 = 9. Then [1..6] alone.
  t.equal(p.stats('seq').batches, 2)
  t.equal(p.stats('seq').largestBatch, 3)
})

t.test('a full queue refuses at once, counting items', async t => {
  const p = await pool(t)
  p.configure('affine', { maxQueueItems: 4 })
  const busy = occupy(p)
  const admitted = [p.run('affine', { x: rows([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]) })]
  admitted.push(p.run('affine', { x: rows([[4, 4, 4, 4]]) }))
  const started = performance.now()
  const refused = await p.run('affine', { x: rows([[5, 5, 5, 5]]) }).catch(err => err)
  t.ok(performance.now() - started < 50, 'refused without waiting')
  t.type(refused, OverloadedError)
  t.match(refused.message, /model 'affine' is overloaded: 4 items queued \(at most 4\)/)
  t.equal(p.stats('affine').refused, 1)
  await Promise.all([busy, ...admitted])
  // Room again once the queue drained.
  t.ok(await p.run('affine', { x: rows([[5, 5, 5, 5]]) }))
})

t.test('the rows a batch computing left unfilled may wait too: a burst of a batch computing and a batch waiting is admitted', async t => {
  const p = await pool(t)
  p.configure('slow', { maxBatchItems: 4, maxQueueItems: 4 })
  const one = (v: number) => p.run('slow', { x: rows([[v, v, v, v]]) }).then(r => toRows(r.y)[0][0], e => (e as Error).name)
  // An idle thread takes the first row alone; its batch had room for 3 more,
  // so 4 + 3 wait, and the next is refused.
  const burst = Array.from({ length: 9 }, (_, i) => one(i))
  const outcomes = await Promise.all(burst)
  t.same(outcomes, [1, 3, 5, 7, 9, 11, 13, 15, 'OverloadedError'], 'eight admitted, the ninth refused')
  t.equal(p.stats('slow').refused, 1)
  // A full batch computing leaves no room: the bound is maxQueueItems, as under a flood.
  const full = p.run('slow', { x: rows([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]) })
  const flood = await Promise.all(Array.from({ length: 6 }, (_, i) => one(i)))
  t.same(flood, [1, 3, 5, 7, 'OverloadedError', 'OverloadedError'])
  await full
  // Nor does a batch of another model: the bound is maxQueueItems.
  p.configure('affine', { maxBatchItems: 4, maxQueueItems: 4 })
  const busy = occupy(p)
  const behind = await Promise.all(Array.from({ length: 6 }, (_, i) => p.run('affine', { x: rows([[i, i, i, i]]) }).then(() => 'ok', e => (e as Error).name)))
  await busy
  t.same(behind, ['ok', 'ok', 'ok', 'ok', 'OverloadedError', 'OverloadedError'])
})

t.test('a batch cut by a limit (jobs left waiting) lends the queue no room: the bound is maxQueueItems', async t => {
  const p = await pool(t)
  p.configure('seq', { maxBatchItems: 4, maxQueueItems: 4 })
  const { computed, release } = holdRuns(p)
  // Different lengths and no pad value: no two merge.
  const one = (n: number) => p.run('seq', { ids: ids([Array(n).fill(1)]) }).then(() => 'ok', e => (e as Error).name)
  let done = computed()
  const first = one(1)
  await done
  // Behind a batch of 1 that took every job waiting: rows of other lengths
  // never merge here (no pad value), so it lends no room; 4 may wait.
  const queued = [2, 3, 4, 5].map(one)
  t.equal(p.stats('seq').queuedItems, 4)
  // The next batch takes the length-2 run alone and leaves 3 waiting: cut by
  // its shapes, as a flood's batches are by their size. No room lent.
  done = computed()
  release()
  await done
  t.equal(p.stats('seq').queuedItems, 3)
  const more = [6, 7].map(one)
  // Refused at once (counted before run returns).
  t.equal(p.stats('seq').refused, 1, 'refused past maxQueueItems')
  // Every run answered in turn.
  const drain = setInterval(release, 5)
  t.teardown(() => clearInterval(drain))
  t.same(await Promise.all([first, ...queued, ...more]), [...Array(6).fill('ok'), 'OverloadedError'])
})

t.test('a batch limited by padded tokens lends only the rows its tokens left room for; rows that never merge lend none', async t => {
  const p = await pool(t)
  const { computed, release } = holdRuns(p)
  const drain = setInterval(release, 5)
  t.teardown(() => clearInterval(drain))
  const one = (n: number) => p.run('seq', { ids: ids([Array(n).fill(1)]) }).then(() => 'ok', e => (e as Error).name)
  // No pad value (first: configure keeps what it was given before): rows of
  // other lengths never merge, each would run alone; a batch of 1 lends
  // nothing, and only 4 may wait.
  p.configure('seq', { maxBatchItems: 8, maxQueueItems: 4 })
  let done = computed()
  const alone = one(1)
  await done
  const lengths = [2, 3, 4, 5, 6, 7].map(one)
  t.equal(p.stats('seq').queuedItems, 4, 'the bound, no room lent')
  t.same(await Promise.all([alone, ...lengths]), [...Array(5).fill('ok'), 'OverloadedError', 'OverloadedError'])
  // 8 padded tokens a batch: the first run's row of 4 leaves room for 1 more
  // such row (not for 7, its row limit): 4 + 1 may wait.
  p.configure('seq', { padValue: 0, maxBatchTokens: 8 })
  done = computed()
  const first = one(4)
  await done
  const behind = Array.from({ length: 7 }, () => one(1))
  t.equal(p.stats('seq').queuedItems, 5, 'the bound and the one row the tokens left room for')
  t.same(await Promise.all([first, ...behind]), ['ok', ...Array(5).fill('ok'), 'OverloadedError', 'OverloadedError'])
})

t.test('requests of 0 rows count against the queue bound too', async t => {
  const p = await pool(t)
  p.configure('seq', { maxQueueItems: 4 })
  const busy = occupy(p)
  // Different lengths and no pad value: each would be a session.run of its own.
  const empty = (n: number): Tensor => ({ type: 'int64', data: new BigInt64Array(0), dims: [0, n] })
  const runs = Array.from({ length: 20 }, (_, i) => p.run('seq', { ids: empty(i + 1) }).then(() => 'ok', e => (e as Error).name))
  const outcomes = await Promise.all(runs)
  await busy
  t.same(outcomes.filter(o => o === 'ok').length, 4, 'four queued')
  t.same(outcomes.filter(o => o === 'OverloadedError').length, 16, 'the others refused')
})

t.test('with maxQueueItems 0 nothing waits: admitted only when a thread is free to start it', async t => {
  const p = await pool(t)
  p.configure('affine', { maxQueueItems: 0, maxDelayMs: 50 })
  // An idle thread: admitted, and run at once (the max delay does not apply: nothing may wait).
  const started = performance.now()
  t.same(toRows((await p.run('affine', { x: rows([[1, 2, 3, 4], [0, 0, 0, 0]]) })).y), [[3, 5, 7, 9], [1, 1, 1, 1]])
  t.ok(performance.now() - started < 40, 'not held for the max delay')
  t.equal(p.refusal('affine'), undefined, 'no refusal while a thread is free')
  // The thread busy (another model's run): refused at once, early or late.
  const busy = occupy(p)
  const early = p.refusal('affine')
  t.type(early, OverloadedError)
  t.match(early!.message, /model 'affine' is overloaded: every inference thread is computing, and its requests do not queue \(max queue items 0\)/)
  const refused = await p.run('affine', { x: rows([[5, 5, 5, 5]]) }).catch(err => err)
  t.type(refused, OverloadedError)
  t.equal(p.stats('affine').refused, 2)
  await busy
  // Free again: two requests in one turn, the first takes the thread and the second is refused.
  const [first, second] = await Promise.all([[[1, 1, 1, 1]], [[2, 2, 2, 2]]].map(x => p.run('affine', { x: rows(x) }).then(r => r, e => e as Error)))
  t.same(toRows((first as Record<string, Tensor>).y), [[3, 3, 3, 3]])
  t.type(second, OverloadedError)
  t.match(p.stats('affine'), { requests: 2, refused: 3, largestBatch: 2 })
})

t.test('with maxQueueItems 0 and two threads, two requests compute at once and a third is refused', async t => {
  const p = await pool(t, { threads: 2 })
  p.configure('slow', { maxQueueItems: 0 })
  const runs = [0, 1, 2].map(i => p.run('slow', { x: rows([[i, 0, 0, 0]]) }).then(r => r, e => e as Error))
  const [a, b, c] = await Promise.all(runs)
  t.same(toRows((a as Record<string, Tensor>).y), [[1, 1, 1, 1]])
  t.same(toRows((b as Record<string, Tensor>).y), [[3, 1, 1, 1]])
  t.type(c, OverloadedError)
  t.match(p.stats('slow'), { requests: 2, batches: 2, refused: 1 })
})

t.test('a job whose deadline passed while queued is dropped when a thread frees up, even before its timer has run', async t => {
  const p = await pool(t)
  const busy = occupy(p)
  const deadline = new RequestDeadline()
  const late = p.run('affine', { x: rows([[1, 1, 1, 1]]) }, { signal: deadline }).catch(e => e)
  const onTime = p.run('affine', { x: rows([[2, 2, 2, 2]]) })
  // Its time is up while the thread computes, and the timer that would abort
  // it has not run yet (a busy event loop runs timers after the thread's answer).
  deadline.expiresAt = performance.now()
  t.same(toRows((await onTime).y), [[5, 5, 5, 5]])
  t.type(await late, AbortedError)
  await busy
  t.match(p.stats('affine'), { requests: 1, items: 1, dropped: 1, queuedItems: 0, queuedRequests: 0 }, 'never computed')
  t.equal(deadline.aborted, false, 'the deadline itself still fires on its own (its 504)')
})

t.test('a job whose signal fires while queued leaves the queue and never computes', async t => {
  const p = await pool(t)
  const busy = occupy(p)
  const controller = new AbortController()
  const dropped = p.run('affine', { x: rows([[1, 1, 1, 1]]) }, { signal: controller.signal })
  const kept = p.run('affine', { x: rows([[2, 2, 2, 2]]) })
  t.equal(p.stats('affine').queuedItems, 2)
  controller.abort(new Error('deadline'))
  const err = await dropped.catch(e => e)
  t.type(err, AbortedError)
  t.equal(err.message, 'deadline')
  t.equal(p.stats('affine').queuedItems, 1, 'its place in the queue is freed at once')
  t.same(toRows((await kept).y), [[5, 5, 5, 5]])
  await busy
  t.match(p.stats('affine'), { requests: 1, items: 1, dropped: 1 })
  await t.rejects(p.run('affine', { x: rows([[1, 1, 1, 1]]) }, { signal: AbortSignal.abort() }), AbortedError)
})

t.test('a failing batch fails only the request that caused it, and the next batch runs', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0 })
  const busy = occupy(p)
  const good = [[[1, 2, 3]], [[4, 5]], [[6]]]
  const bad = [[7, SEQ_VOCAB + 100]]
  const all = [good[0], good[1], bad, good[2]].map(x => p.run('seq', { ids: ids(x) }).then(r => r, e => e as Error))
  const [a, b, c, d] = await Promise.all(all)
  await busy
  t.type(c, BadInputError, 'the caller\'s values were out of range: an InferenceError the HTTP layer answers with a 400')
  t.type(c, InferenceError)
  t.match((c as Error).message, /Gather node 'Gather_1' failed: indices element out of data bounds, idx=150 must be within the inclusive range \[-50,49\]$/, 'ONNX Runtime says what is wrong')
  for (const [k, out] of [a, b, d].entries()) {
    t.notOk(out instanceof Error, `good request ${k} succeeded`)
    t.same((out as Record<string, { dims: number[] }>).scores.dims, [1, good[k][0].length, 3])
  }
  t.match(p.stats('seq'), { failed: 0, badInput: 1, batches: 5, requests: 4, items: 4 }, 'the failed batch and four reruns alone; each request counted once; the bad one as bad input, not a failure')
  const next = await p.run('seq', { ids: ids([[1, 2]]) })
  t.same(next.scores.dims, [1, 2, 3], 'the next batch runs')
})

t.test('a batch whose outputs do not split back along axis 0 reruns each request alone', async t => {
  const p = await pool(t)
  // y is x transposed: its first axis is the sequence, not the batch (and
  // no axis name says so).
  await p.load('time-major', buildModel({
    name: 'time-major',
    inputs: [{ name: 'x', type: 'float32', shape: [-1, -1] }],
    outputs: [{ name: 'y', type: 'float32', shape: [-1, -1] }],
    nodes: [{ op: 'Transpose', inputs: ['x'], outputs: ['y'], attributes: { perm: [1, 0] } }],
  }))
  const busy = occupy(p)
  const x = (v: number[]): Tensor => ({ type: 'float32', data: Float32Array.from(v), dims: [1, v.length] })
  const [a, b] = await Promise.all([p.run('time-major', { x: x([1, 2, 3]) }), p.run('time-major', { x: x([4, 5, 6]) })])
  await busy
  t.same(a.y.dims, [3, 1])
  t.same(Array.from(a.y.data as Float32Array), [1, 2, 3])
  t.same(b.y.dims, [3, 1])
  t.same(Array.from(b.y.data as Float32Array), [4, 5, 6])
  t.match(p.stats('time-major'), { batches: 3, requests: 2, items: 2, failed: 0 }, 'the batch, then each alone; each request counted once')
})

/** One row of float32 values. */
const floats = (v: number[]): Tensor => ({ type: 'float32', data: Float32Array.from(v), dims: [1, v.length] })

t.test('a model whose axis names put the batch elsewhere than first never batches, so requests do not get each other\'s values', async t => {
  const p = await pool(t)
  await p.load('time-major', buildModel({
    name: 'time-major',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 'seq'] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['seq', 'batch'] }],
    nodes: [{ op: 'Transpose', inputs: ['x'], outputs: ['y'], attributes: { perm: [1, 0] } }],
  }))
  const busy = occupy(p)
  // Two rows of two: the transposed batch has two rows too, and split along them mixes the requests.
  const [a, b] = await Promise.all([p.run('time-major', { x: floats([1, 2]) }), p.run('time-major', { x: floats([3, 4]) })])
  await busy
  t.same({ dims: a.y.dims, data: Array.from(a.y.data as Float32Array) }, { dims: [2, 1], data: [1, 2] })
  t.same({ dims: b.y.dims, data: Array.from(b.y.data as Float32Array) }, { dims: [2, 1], data: [3, 4] })
  t.match(p.stats('time-major'), { batches: 2, largestBatch: 1 })
})

/** Each feed run alone, then all of them queued behind a busy thread; both as plain values. */
async function aloneAndBatched (p: InferencePool, key: string, feeds: Array<Record<string, Tensor>>) {
  const plain = (out: Record<string, Tensor>) => Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { dims: v.dims, data: Array.from(v.data as Float32Array) }]))
  const alone = []
  for (const f of feeds) alone.push(plain(await p.run(key, f)))
  const busy = occupy(p)
  const batched = (await Promise.all(feeds.map(f => p.run(key, f)))).map(plain)
  await busy
  return { alone, batched }
}

t.test('unnamed axes (reported as \'\') pad and crop by input and position: two inputs with sequences of their own', async t => {
  const p = await pool(t)
  await p.load('two', buildModel({
    name: 'two',
    inputs: [{ name: 'a', type: 'float32', shape: [-1, -1] }, { name: 'b', type: 'float32', shape: [-1, -1] }],
    outputs: [{ name: 'ya', type: 'float32', shape: [-1, -1] }, { name: 'yb', type: 'float32', shape: [-1, -1] }],
    initializers: [{ name: 'two', type: 'float32', dims: [1], data: new Float32Array([2]) }],
    nodes: [{ op: 'Mul', inputs: ['a', 'two'], outputs: ['ya'] }, { op: 'Mul', inputs: ['b', 'two'], outputs: ['yb'] }],
  }))
  p.configure('two', { padValue: 0 })
  const { alone, batched } = await aloneAndBatched(p, 'two', [
    { a: floats([1, 2, 3, 4]), b: floats([5, 6]) },
    { a: floats([7, 8, 9]), b: floats([10, 11, 12, 13]) },
  ])
  t.same(alone[0], { ya: { dims: [1, 4], data: [2, 4, 6, 8] }, yb: { dims: [1, 2], data: [10, 12] } })
  t.same(batched, alone, 'batched answers are the unbatched ones')
})

t.test('an output that names its sequence axis otherwise than the input gets no padding back', async t => {
  const p = await pool(t)
  await p.load('renamed', buildModel({
    name: 'renamed',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 'tokens'] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 'positions'] }],
    initializers: [{ name: 'two', type: 'float32', dims: [1], data: new Float32Array([2]) }],
    nodes: [{ op: 'Mul', inputs: ['x', 'two'], outputs: ['y'] }],
  }))
  p.configure('renamed', { padValue: 0 })
  const { alone, batched } = await aloneAndBatched(p, 'renamed', [{ x: floats([1, 2]) }, { x: floats([3, 4, 5]) }])
  t.same(alone[0], { y: { dims: [1, 2], data: [2, 4] } })
  t.same(batched, alone, 'batched answers are the unbatched ones')
})

t.test('maxDelayMs lets a batch wait for company; 0 never waits', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 150 })
  const started = performance.now()
  const first = p.run('affine', { x: rows([[1, 1, 1, 1]]) })
  await new Promise(resolve => setTimeout(resolve, 20))
  const second = p.run('affine', { x: rows([[2, 2, 2, 2]]) })
  await Promise.all([first, second])
  t.ok(performance.now() - started >= 140, 'waited out the delay')
  t.match(p.stats('affine'), { batches: 1, requests: 2 })
  p.configure('affine', { maxDelayMs: 0, maxBatchItems: 2 })
  const t0 = performance.now()
  await p.run('affine', { x: rows([[1, 1, 1, 1]]) })
  t.ok(performance.now() - t0 < 100, 'no delay')
})

t.test('a model that cannot batch (a fixed batch axis) never waits out a delay: no company can join it', async t => {
  const p = await pool(t)
  await p.load('fixed', buildModel({
    name: 'fixed',
    inputs: [{ name: 'x', type: 'float32', shape: [1, 2] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, 2] }],
    nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
  }))
  // As with --max-queue-delay, the server's default for every model.
  p.configure('fixed', { maxDelayMs: 60_000 })
  const outcome = await settledWithin([p.run('fixed', { x: floats([1, 2]) }).then(o => Array.from(o.y.data as Float32Array))], 10_000)
  t.same(outcome, [[1, 2]], 'answered without waiting for a batch it cannot form')
})

t.test('a model\'s short delay is kept while another model waits out a longer one', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 600 })
  p.configure('seq', { maxDelayMs: 5 })
  const t0 = performance.now()
  const long = p.run('affine', { x: rows([[1, 1, 1, 1]]) }).then(() => performance.now() - t0)
  await new Promise(resolve => setTimeout(resolve, 20))
  const short = await p.run('seq', { ids: ids([[1, 2]]) }).then(() => performance.now() - t0)
  t.ok(short < 300, `seq answered after ${short.toFixed(0)} ms, not at affine's 600 ms`)
  t.ok(await long >= 590, 'affine still waited out its own delay')
})

t.test('a full batch does not wait for the delay', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 5000, maxBatchItems: 2 })
  const t0 = performance.now()
  await Promise.all([p.run('affine', { x: rows([[1, 1, 1, 1]]) }), p.run('affine', { x: rows([[1, 1, 1, 1]]) })])
  t.ok(performance.now() - t0 < 1000)
})

t.test('a full queue does not wait for the delay either: a bound under the batch size never fills a batch, and would refuse all the while', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 5000, maxBatchItems: 64, maxQueueItems: 2 })
  const t0 = performance.now()
  const both = Promise.all([p.run('affine', { x: rows([[1, 1, 1, 1]]) }), p.run('affine', { x: rows([[2, 2, 2, 2]]) })])
  t.equal(p.refusal('affine'), undefined, 'the two went to the thread: the next request is not refused')
  const [a, b] = await both
  t.ok(performance.now() - t0 < 1000, 'run at once, not after the 5 s delay')
  t.same([toRows(a.y), toRows(b.y)], [[[3, 3, 3, 3]], [[5, 5, 5, 5]]])
  t.match(p.stats('affine'), { batches: 1, requests: 2 })
})

t.test('the oldest waiting job picks the model; its batch takes that model\'s later jobs too', async t => {
  const p = await pool(t)
  const order: string[] = []
  const busy = occupy(p)
  const jobs = [
    p.run('seq', { ids: ids([[1]]) }).then(() => order.push('seq 1')),
    p.run('affine', { x: rows([[1, 1, 1, 1]]) }).then(() => order.push('affine')),
    p.run('seq', { ids: ids([[2]]) }).then(() => order.push('seq 2')),
  ]
  await Promise.all([busy, ...jobs])
  t.same(order, ['seq 1', 'seq 2', 'affine'])
  t.equal(p.stats('seq').batches, 1)
})

t.test('jobs queued for the threads when their model is unloaded fail, and its queue goes once they have', async t => {
  const p = await pool(t)
  const busy = occupy(p)
  const queued = [1, 2].map(v => p.run('affine', { x: rows([[v, v, v, v]]) }).then(() => 'computed', (e: Error) => e.message))
  await p.unload('affine')
  await busy
  t.match(await Promise.all(queued), [/not loaded/, /not loaded/])
  t.notOk((p as any).queues.has('affine'), 'no queue left for the unloaded model')
  await p.load('affine', affineModel())
  t.match(p.stats('affine'), { batches: 0, requests: 0, failed: 0 }, 'reloaded, its counters start afresh, as after any unload')
})

t.test('a run for a model that is not loaded leaves no queue behind', async t => {
  const p = await pool(t)
  await t.rejects(p.run('nothing', { x: rows([[1, 1, 1, 1]]) }), /not loaded/)
  t.notOk((p as any).queues.has('nothing'), 'no queue left for it')
  p.configure('later', { maxBatchItems: 2 })
  await t.rejects(p.run('later', { x: rows([[1, 1, 1, 1]]) }), /not loaded/)
  t.equal(p.batchOptions('later').maxBatchItems, 2, 'a model configured before its load keeps its options')
})

t.test('a batch computing when its model is unloaded, and rerun alone because it failed, still settles', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0 })
  const batch = await failingBatchComputing(p)
  t.equal(p.stats('seq').queuedRequests, 0, 'the batch of three is computing, and fails')
  await p.unload('seq')
  const outcome = await settledWithin(batch, 5000)
  t.match(outcome, [/not loaded/, /not loaded/, /not loaded/], 'each failed as a run of an unloaded model does (not rerun alone: its model is gone)')
  t.notOk((p as any).queues.has('seq'), 'then no queue is left for it')
})

t.test('a batch computing when its model is unloaded, and failing, does not rerun on the model loaded again under its key', async t => {
  const p = await pool(t)
  p.configure('seq', { padValue: 0, maxBatchItems: 3 })
  const batch = await failingBatchComputing(p)
  t.equal(p.stats('seq').queuedRequests, 0, 'the batch of three is computing, and fails')
  await p.unload('seq')
  // Loaded again while the batch's jobs are still settling: had they been
  // rerun alone on the threads, the later ones would reach the new model.
  await p.load('seq', sequenceModel())
  t.match(p.stats('seq'), { queuedRequests: 0, batches: 0, requests: 0, failed: 0 }, 'the new model\'s counters start afresh')
  t.same(p.batchOptions('seq'), p.batchOptions('never configured'), 'with the pool\'s options, not the unloaded model\'s')
  const outcome = await settledWithin(batch, 5000)
  t.match(outcome, [/not loaded/, /not loaded/, /not loaded/], 'each failed as a run of the unloaded model does: none ran on the new one')
  const q = (p as any).queues.get('seq')
  t.ok(q.kept, 'the queue left is the new model\'s')
  t.same(await p.run('seq', { ids: ids([[3]]) }).then(out => out.scores.dims), [1, 1, 3], 'which serves')
  t.match(p.stats('seq'), { batches: 1, requests: 1, failed: 0 }, 'and counts its own requests only')
})

t.test('a model loaded again while jobs wait in its unloaded queue gets a fresh queue, which takes them', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 60_000 })
  const waiting = [1, 2].map(v => p.run('affine', { x: rows([[v, v, v, v]]) }).then(out => toRows(out.y), (e: Error) => e.message))
  await p.unload('affine')
  const old = (p as any).queues.get('affine')
  t.equal(old?.jobs.length, 2, 'the unloaded model\'s queue is kept while its jobs wait out its delay')
  await p.load('affine', affineModel())
  const fresh = (p as any).queues.get('affine')
  t.not(fresh, old, 'the load made a queue of its own')
  t.equal(p.batchOptions('affine').maxDelayMs, 0, 'with the pool\'s options, not the unloaded model\'s')
  const outcome = await settledWithin(waiting, 5000)
  t.same(outcome, [[[3, 3, 3, 3]], [[5, 5, 5, 5]]], 'the waiting jobs (sent for the key, not run yet) run at once on the model loaded now')
  t.equal((p as any).queues.get('affine'), fresh, 'the old queue is gone, the new one stays')
  t.match(p.stats('affine'), { queuedRequests: 0, batches: 1, requests: 2 }, 'counted afresh: one batch of the two')
})

t.test('a model configured again while jobs wait in its unloaded queue gets a fresh queue too; an abort takes a job out of that one', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 60_000, maxBatchItems: 4 })
  const signal = new AbortController()
  const waiting = [1, 2].map(v => p.run('affine', { x: rows([[v, v, v, v]]) }, { signal: v === 1 ? signal.signal : undefined }).then(() => 'computed', (e: Error) => e.name))
  await p.unload('affine')
  const old = (p as any).queues.get('affine')
  t.same(p.configure('affine', { maxDelayMs: 60_000 }), { maxBatchItems: 64, maxQueueItems: 64, maxDelayMs: 60_000 }, 'over the pool\'s options, not the unloaded model\'s')
  const fresh = (p as any).queues.get('affine')
  t.not(fresh, old)
  signal.abort()
  t.match(p.stats('affine'), { queuedRequests: 1, queuedItems: 1, dropped: 1 }, 'the aborted job left the fresh queue, counted there once')
  t.equal(old.items, 0, 'and nothing of it is left in the old one')
  t.equal(await waiting[0], 'AbortedError')
  await p.load('affine', affineModel())
  t.equal((p as any).queues.get('affine'), fresh, 'a configured queue is kept by the load')
})

t.test('bad options are refused with the reason', async t => {
  const p = await pool(t)
  t.throws(() => p.configure('affine', { maxBatchItems: 0 }), /invalid batching options for 'affine': maxBatchItems must be a positive integer/)
  t.throws(() => new InferencePool({ threads: 1, batching: { maxQueueItems: -1 } }), /invalid batching defaults/)
  t.equal(p.batchOptions('affine').maxBatchItems, 64)
})

t.test('closing while a batch fails rejects its requests rather than running them alone', async t => {
  const p = new InferencePool({ threads: 1 })
  await p.load('slow', slowAffineModel())
  await p.load('seq', sequenceModel())
  p.configure('seq', { padValue: 0 })
  const busy = occupy(p)
  const batch = [[[1, 2]], [[7, SEQ_VOCAB + 100]], [[3]]].map(x => p.run('seq', { ids: ids(x) }).then(() => 'computed', (e: Error) => e.message))
  await busy
  while (p.stats('seq').queuedRequests > 0) await new Promise(resolve => setTimeout(resolve, 1))
  // The batch of three is computing now, and fails.
  await p.close()
  t.same(await Promise.all(batch), Array(3).fill('inference pool is closed'))
})

t.test('closing rejects what is queued', async t => {
  const p = new InferencePool({ threads: 1 })
  await p.load('slow', slowAffineModel())
  await p.load('affine', affineModel())
  const busy = occupy(p).catch(() => {})
  const queued = t.rejects(p.run('affine', { x: rows([[1, 1, 1, 1]]) }), /inference pool is closed/)
  await p.close()
  await queued
  await busy
})


t.test('a request that runs alone on a thread keeps its inputs: the caller may read or send them again', async t => {
  const p = await pool(t, { threads: 1, inlineBelowUs: 0 })
  // 1,024 rows of 4 float32: 16 kB, as large as a buffer the pool moves to a thread rather than copies.
  const x: Tensor = { type: 'float32', data: new Float32Array(4096).map((_, i) => i % 7), dims: [1024, 4] }
  const first = await p.run('affine', { x })
  t.equal(x.data.length, 4096, 'the input is still there')
  t.equal((x.data as Float32Array)[13], 6)
  const again = await p.run('affine', { x })
  t.same(Array.from(again.y.data as Float32Array), Array.from(first.y.data as Float32Array), 'the same feeds give the same answer again')
})

t.test('a job whose feeds cannot be sent to a thread fails alone, and the pool still closes', async t => {
  const p = new InferencePool({ threads: 1, inlineBelowUs: 0 })
  await p.load('affine', affineModel())
  // A buffer that was given away (transferred) cannot be cloned to the thread.
  const data = new Float32Array(4)
  structuredClone(data.buffer, { transfer: [data.buffer] })
  await t.rejects(p.run('affine', { x: { type: 'float32', data, dims: [1, 4] } }), /detached/)
  t.same(toRows((await p.run('affine', { x: rows([[1, 2, 3, 4]]) })).y), [[3, 5, 7, 9]], 'the thread takes the next job')
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    p.close().then(() => 'closed'),
    new Promise(resolve => { timer = setTimeout(() => resolve('still closing after 5 s'), 5000) }),
  ])
  clearTimeout(timer)
  t.equal(closed, 'closed')
})

t.test('feeds that do not merge into a batch run alone, as they would unbatched, and do not fail their neighbours', async t => {
  const p = await pool(t)
  // int64 ids as plain numbers: ONNX Runtime takes them (Tensor converts an
  // array), but they cannot be copied into the batch's BigInt64Array.
  const plain = { ids: { type: 'int64', data: [1, 2], dims: [1, 2] } as unknown as Tensor }
  const alone = await p.run('seq', plain)
  const busy = occupy(p)
  const runs = [p.run('seq', { ids: ids([[3, 4]]) }), p.run('seq', plain), p.run('seq', { ids: ids([[5, 6]]) })]
  const outs = await Promise.all(runs.map(r => r.then(o => o.scores.dims, (e: Error) => e.message)))
  await busy
  t.same(outs, [[1, 2, 3], [1, 2, 3], [1, 2, 3]], 'each answered')
  t.same(Array.from((await runs[1]).scores.data as Float32Array), Array.from(alone.scores.data as Float32Array))
  t.match(p.stats('seq'), { requests: 4, items: 4, failed: 0 }, 'each request counted once')
})

t.test('float16 inputs are padded with the pad value itself, not with its number as raw bits', async t => {
  const p = await pool(t)
  // y = the product of each row's values: 1 is the neutral pad.
  await p.load('half', buildModel({
    name: 'half',
    inputs: [{ name: 'x', type: 'float16', shape: ['batch', 'len'] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch'] }],
    initializers: [{ name: 'axes', type: 'int64', dims: [1], data: BigInt64Array.from([1n]) }],
    nodes: [
      { op: 'Cast', inputs: ['x'], outputs: ['xf'], attributes: { to: 1 } },
      { op: 'ReduceProd', inputs: ['xf', 'axes'], outputs: ['y'], attributes: { keepdims: 0 } },
    ],
    opset: 18,
  }))
  p.configure('half', { padValue: 1 })
  // float16 data is its bits: 2 is 0x4000, 3 is 0x4200, -0.5 is 0xb800.
  const half = (bits: number[]): Record<string, Tensor> => ({ x: { type: 'float16', data: Uint16Array.from(bits), dims: [1, bits.length] } })
  const { alone, batched } = await aloneAndBatched(p, 'half', [half([0x4000, 0x4200, 0xb800]), half([0x4000]), half([0x4200, 0x4000])])
  t.same(alone.map(a => a.y.data), [[-3], [2], [6]])
  t.same(batched, alone, 'batched answers are the unbatched ones')
  t.equal(p.stats('half').largestBatch, 3, 'they were batched, padded')
})

t.test('a caller that lets its feeds go (transfer) has their whole buffers moved to the thread, never a view into a larger one', async t => {
  const p = await pool(t, { threads: 1, inlineBelowUs: 0 })
  const own: Tensor = { type: 'float32', data: new Float32Array(4096).fill(1), dims: [1024, 4] }
  const body = new Float32Array(4100).fill(2)
  const view: Tensor = { type: 'float32', data: body.subarray(4), dims: [1024, 4] }
  const [a, b] = [await p.run('affine', { x: own }, { transfer: true }), await p.run('affine', { x: view }, { transfer: true })]
  t.equal(own.data.length, 0, 'moved')
  t.equal(body.length, 4100, 'the larger buffer stays')
  t.same([(a.y.data as Float32Array)[4095], (b.y.data as Float32Array)[4095]], [3, 5])
})

t.test('a delay longer than a timer can wait (24.8 days) is waited out, not polled every millisecond', async t => {
  const p = await pool(t)
  p.configure('affine', { maxDelayMs: 3e9, maxBatchItems: 2 })
  let overflows = 0
  const count = (w: Error) => { if (w.name === 'TimeoutOverflowWarning') overflows++ }
  process.on('warning', count)
  t.teardown(() => { process.off('warning', count) })
  const first = p.run('affine', { x: rows([[1, 1, 1, 1]]) })
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(overflows, 0, 'no timer overflowed (Node fires one after 1 ms, and warns)')
  t.equal(p.stats('affine').batches, 0, 'still waiting for company')
  await Promise.all([first, p.run('affine', { x: rows([[2, 2, 2, 2]]) })])
  t.match(p.stats('affine'), { batches: 1, requests: 2 })
})

t.test('badInputOf: ONNX Runtime\'s index-out-of-range failures, and nothing else', async t => {
  const node = (op: string, message: string) => `Non-zero status code returned while running ${op} node. Name:'n7' Status Message: ${message}`
  t.equal(badInputOf(node('Gather', 'indices element out of data bounds, idx=60 must be within the inclusive range [-50,49]'))?.message,
    "the input's values are out of range for the model: its Gather node 'n7' failed: indices element out of data bounds, idx=60 must be within the inclusive range [-50,49]")
  // GatherElements' message, as ONNX Runtime 1.2x writes it: the source file and function go.
  t.equal(badInputOf(node('GatherElements', '/onnxruntime_src/onnxruntime/core/providers/cpu/tensor/gather_elements.cc:150 void onnxruntime::core_impl(const Tensor*, const Tensor*, Tensor*, int64_t, concurrency::ThreadPool*) [with Tin = long int; int64_t = long int] GatherElements op: Out of range value in index tensor\n'))?.message,
    "the input's values are out of range for the model: its GatherElements node 'n7' failed: GatherElements op: Out of range value in index tensor")
  t.type(badInputOf(node('GatherND', 'invalid index found, index = 12')), BadInputError)
  t.type(badInputOf(node('ScatterND', 'invalid indice found, indice = 4')), BadInputError)
  // The same words from another op, or another failure of these ops, are the server's.
  t.equal(badInputOf(node('MatMul', 'indices element out of data bounds')), undefined)
  t.equal(badInputOf(node('Gather', 'Failed to allocate memory')), undefined)
  t.equal(badInputOf('input \'x\': expected shape [1, 4]'), undefined)
})

t.test('badInputOf: ONNX Runtime\'s shape failures are the request\'s when the model lets its shapes vary, with the source location left out', async t => {
  // Messages as ONNX Runtime 1.2x words them (models run in the probe of test/oip/conformance.test.ts's shape test).
  const node = (op: string, message: string) => `Non-zero status code returned while running ${op} node. Name:'${op}_0' Status Message: ${message}`
  const f32 = (...dims: number[]) => ({ type: 'float32' as const, data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims })
  const x = { x: f32(1, 3) }
  const reshape = node('Reshape', '/onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) size != 0 && (input_shape_size % size) == 0 was false. The input tensor cannot be reshaped to the requested shape. Input shape:{1,3}, requested shape:{-1,4}\n')
  t.equal(badInputOf(reshape, x)?.message,
    "the shape of input 'x' ([1, 3]) does not suit the model: its Reshape node 'Reshape_0' failed: The input tensor cannot be reshaped to the requested shape. Input shape:{1,3}, requested shape:{-1,4}")
  t.equal(badInputOf(reshape), undefined, 'without the feeds (a model whose dimensions are all fixed), the model\'s own fault')
  const both = { x: f32(1, 3), z: f32(1, 2) }
  t.equal(badInputOf(node('Add', '/onnxruntime_src/onnxruntime/core/providers/cpu/math/element_wise_ops.h:563 void onnxruntime::BroadcastIterator::Init(ptrdiff_t, ptrdiff_t) axis == 1 || axis == largest was false. Attempting to broadcast an axis by a dimension other than 1. 2 by 3\n'), both)?.message,
    "the shapes of inputs 'x' ([1, 3]), 'z' ([1, 2]) do not suit the model: its Add node 'Add_0' failed: Attempting to broadcast an axis by a dimension other than 1. 2 by 3")
  t.equal(badInputOf(node('MatMul', 'matmul_helper.h:59 Compute MatMul dimension mismatch'), x)?.message,
    "the shape of input 'x' ([1, 3]) does not suit the model: its MatMul node 'MatMul_0' failed: MatMul dimension mismatch")
  t.match(badInputOf(node('Gemm', 'GEMM: Dimension mismatch, W: {4,2} K: 3 N:2'), x)?.message, /failed: GEMM: Dimension mismatch, W: \{4,2\} K: 3 N:2$/)
  t.match(badInputOf(node('Concat', 'concatbase.h:133 PrepareForComputeImpl Non concat axis dimensions must match: Axis 0 has mismatched dimensions of 2 and 1'), both)?.message, /failed: Non concat axis dimensions must match: Axis 0 has mismatched dimensions of 2 and 1$/)
  t.type(badInputOf(node('Expand', 'invalid expand shape'), x), BadInputError)
  t.type(badInputOf(node('Split', "Cannot split using values in 'split' attribute. Axis=1 Input shape={1,3} NumOutputs=2"), x), BadInputError)
  // A huge rank is quoted to 8 dimensions.
  t.match(badInputOf(reshape, { x: f32(...new Array(20).fill(1)) })?.message, /^the shape of input 'x' \(\[1, 1, 1, 1, 1, 1, 1, 1, \.\.\.\]\) does not suit/)
  // Other failures are the server's, feeds or not.
  t.equal(badInputOf(node('MatMul', 'Failed to allocate memory for requested buffer of size 1234'), x), undefined)
  t.equal(badInputOf('input \'x\': expected shape [1, 4]', x), undefined)
})

t.test('refusals name the model as clients know it, not by its pool key', async t => {
  // The repository's versions and hot swaps run under keys 'name@version#generation'.
  t.equal(new OverloadedError('affine', 4, 4).message, "model 'affine' is overloaded: 4 items queued (at most 4); retry later")
  t.equal(new OverloadedError('mlp@#7', 4, 4).message, "model 'mlp' is overloaded: 4 items queued (at most 4); retry later")
  t.equal(new OverloadedError('mlp@12#3', 0, 0).message, "model 'mlp' version 12 is overloaded: every inference thread is computing, and its requests do not queue (max queue items 0); retry later")
  t.equal(new ModelUnavailableError('mlp@2#5', 'its file changed').message, "model 'mlp' version 2 is unavailable: its file changed")
  t.equal(new OverloadedError('mlp@#7', 4, 4).key, 'mlp@#7', 'the key is kept for the logs and metrics')
  // The 4th argument is still Retry-After's seconds, as before the lent room
  // (unfilled, the 5th) was added.
  const later = new OverloadedError('mlp', 4, 4, 5)
  t.equal(later.retryAfterSeconds, 5)
  t.equal(later.message, "model 'mlp' is overloaded: 4 items queued (at most 4); retry later")
  t.match(new OverloadedError('mlp', 70, 64, 1, 6).message, /70 items queued \(at most 64, and 6 more the batches computing left room for\)/)
})
