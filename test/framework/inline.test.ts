// Cheap models run on the main thread when the pool is idle; everything else,
// and everything under load, goes to the inference threads.
import t from 'tap'
import { InferencePool } from '../../framework/pool.ts'
import { addModel, slowModel } from '../fixtures/models.ts'

const x = (v = 0) => ({ x: { type: 'float32' as const, data: new Float32Array([v, v, v, v]), dims: [1, 4] } })
const settle = () => new Promise(resolve => setTimeout(resolve, 50))

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

t.test('under load jobs go to the threads (and batch), not inline', async t => {
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 10_000 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  await pool.load('slow', slowModel(20))
  await pool.run('add', x())
  await settle()
  const busy = pool.run('slow', { x: { type: 'float32', data: new Float32Array([1]), dims: [1, 1] } })
  const queued = await Promise.all(Array.from({ length: 8 }, (_, i) => pool.run('add', x(i))))
  await busy
  t.equal(pool.stats('add').inline, 0, 'nothing ran inline while a thread computed')
  t.ok(pool.stats('add').largestBatch > 1, 'the queued jobs batched')
  queued.forEach((r, i) => t.same(Array.from(r.y.data as Float32Array), [i + 1, i + 2, i + 3, i + 4]))
})

t.test('an inline failure is an InferenceError for that request only; unload drops the main-thread session', async t => {
  const pool = new InferencePool({ threads: 1, inlineBelowUs: 10_000 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  await pool.run('add', x())
  await settle()
  await t.rejects(pool.run('add', { x: { type: 'float32', data: new Float32Array(3), dims: [1, 3] } }), { name: 'InferenceError' })
  t.equal(pool.stats('add').failed, 1)
  t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [1, 2, 3, 4], 'the next request is fine')
  await pool.unload('add')
  await t.rejects(pool.run('add', x()), /not loaded/)
  await pool.load('add', addModel())
  t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [1, 2, 3, 4], 'reloaded, it runs on a thread first again')
})
