// Inference threads that die, and loads that fail on some threads: every
// thread holds the same model under a key, or the key is not served at all.
import t, { type Test } from 'tap'
import { utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { InferencePool, ModelUnavailableError } from '../../framework/pool.ts'
import { addModel, oipApp } from '../fixtures/oip.ts'
import { modelsDir, slowModel } from '../fixtures/models.ts'
import type { Tensor } from '../../framework/tensor.ts'

const x = (): Record<string, Tensor> => ({ x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } })
const one = (): Record<string, Tensor> => ({ x: { type: 'float32', data: new Float32Array([1]), dims: [1, 1] } })
const values = (out: Record<string, Tensor>) => Array.from(out.y.data as Float32Array)
const threadsOf = (pool: InferencePool) => (pool as any).threads as Array<{ worker: import('node:worker_threads').Worker, busy: boolean, pending: Map<number, unknown>, call: (msg: object) => Promise<any> }>

/** A pool of `threads` threads with add.onnx (y = x + [1, 2, 3, 4]) loaded from a file the test may change. */
async function addPool (t: Test, threads: number): Promise<{ pool: InferencePool, path: string }> {
  const path = join(modelsDir(t, { 'add.onnx': addModel([1, 2, 3, 4]) }), 'add.onnx')
  const pool = new InferencePool({ threads })
  t.teardown(() => pool.close())
  await pool.load('add', path)
  return { pool, path }
}
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

/** Whether the thread holds a session under `key` (asked directly, past the pool's bookkeeping). */
async function holds (thread: { call: (msg: object) => Promise<unknown> }, key: string): Promise<boolean> {
  return thread.call({ op: 'run', key, feeds: x() }).then(() => true, (err: Error) => {
    if (/not loaded in this thread/.test(err.message)) return false
    throw err
  })
}

/** Waits until the pool has replaced the thread at `index` and the replacement is idle. */
async function replaced (pool: InferencePool, index: number, dead: unknown) {
  while (threadsOf(pool)[index] === dead || threadsOf(pool)[index].busy) await sleep(5)
}

/**
 * Concurrent one-by-one runs of 'add' (batching off, so both threads would
 * take some) all answer from the model first loaded ([1, 2, 3, 4]), and the
 * replacement (thread 1) holds no session of it.
 */
async function onlyTheFirstModel (t: Test, pool: InferencePool) {
  pool.configure('add', { maxBatchItems: 1 })
  const answers = await Promise.all(Array.from({ length: 16 }, () => pool.run('add', x())))
  t.same(new Set(answers.map(out => values(out).join())), new Set(['1,2,3,4']), 'every answer from the model loaded')
  t.notOk(await holds(threadsOf(pool)[1], 'add'), 'the replacement holds no session of the changed file')
}

t.test('a thread that dies while a model loads does not fail the load: its replacement loads it', async t => {
  const pool = new InferencePool({ threads: 2 })
  t.teardown(() => pool.close())
  const [, second] = threadsOf(pool)
  // The thread is idle: terminating it now is safe, and the load is posted
  // to it before it is known to have exited.
  void second.worker.terminate()
  const meta = await pool.load('add', addModel())
  t.same(meta.inputs.map(i => i.name), ['x'])
  await replaced(pool, 1, second)
  for (const thread of threadsOf(pool)) t.ok(await holds(thread, 'add'), 'every thread, the replacement too, holds the model')
})

t.test('a load that fails on one thread leaves no session on the others', async t => {
  const dir = modelsDir(t, { 'slow.onnx': slowModel(30), 'add.onnx': addModel() })
  const pool = new InferencePool({ threads: 2 })
  t.teardown(() => pool.close())
  await pool.load('slow', join(dir, 'slow.onnx'))
  const [busy, idle] = threadsOf(pool)
  const computing = pool.run('slow', one())
  t.ok(busy.busy && !idle.busy)
  // The idle thread reads the file at once; the busy one after its run,
  // by which time the file is broken.
  const loading = pool.load('add', join(dir, 'add.onnx'))
  while (idle.pending.size > 0) await sleep(2)
  writeFileSync(join(dir, 'add.onnx'), 'not a model')
  await t.rejects(loading)
  await computing
  t.notOk(await holds(idle, 'add'), 'the thread that loaded it let it go')
  t.notOk(await holds(busy, 'add'))
  await t.rejects(pool.run('add', x()))
})

t.test('a file that changes while the threads read it fails the load: one key, one model', async t => {
  const dir = modelsDir(t, { 'slow.onnx': slowModel(30), 'add.onnx': addModel([1, 2, 3, 4]) })
  const pool = new InferencePool({ threads: 2 })
  t.teardown(() => pool.close())
  await pool.load('slow', join(dir, 'slow.onnx'))
  const [busy, idle] = threadsOf(pool)
  const computing = pool.run('slow', one())
  const loading = pool.load('add', join(dir, 'add.onnx'))
  while (idle.pending.size > 0) await sleep(2)
  // Another valid model: each thread would load without error, but two models.
  writeFileSync(join(dir, 'add.onnx'), addModel([7, 7, 7, 7]))
  await t.rejects(loading, /the model file changed while the inference threads read it/)
  await computing
  t.notOk(await holds(idle, 'add'))
  t.notOk(await holds(busy, 'add'))
  // Loaded again, it is the new file everywhere.
  await pool.load('add', join(dir, 'add.onnx'))
  for (const thread of threadsOf(pool)) t.same(values((await thread.call({ op: 'run', key: 'add', feeds: x() })).outputs), [7, 7, 7, 7])
})

t.test('a replaced thread does not read a changed file: the model is unavailable until loaded again', async t => {
  const { pool, path } = await addPool(t, 1)
  t.same(values(await pool.run('add', x())), [1, 2, 3, 4])
  writeFileSync(path, addModel([7, 7, 7, 7]))
  const [thread] = threadsOf(pool)
  await thread.worker.terminate()
  await replaced(pool, 0, thread)
  const err = await pool.run('add', x()).catch(e => e)
  t.ok(err instanceof ModelUnavailableError, `refused, not answered by another model (${err?.message ?? 'answered'})`)
  t.match(err.message, /model 'add' is unavailable: its inference thread was replaced, and its file changed on disk since it was loaded/)
  t.match(pool.unavailable('add'), /file changed on disk/)
  await pool.load('add', path)
  t.equal(pool.unavailable('add'), undefined)
  t.same(values(await pool.run('add', x())), [7, 7, 7, 7], 'loaded again: the new file')
})

t.test('with 2 threads, a model a replacement cannot read again runs on the thread that holds it', async t => {
  const { pool, path } = await addPool(t, 2)
  writeFileSync(path, addModel([7, 7, 7, 7]))
  const [, second] = threadsOf(pool)
  await second.worker.terminate()
  await replaced(pool, 1, second)
  t.equal(pool.unavailable('add'), undefined, 'still served')
  await onlyTheFirstModel(t, pool)
})

t.test('HTTP: a model no thread holds is 503 at /v2 and /health/ready until a reload', async t => {
  const { app, dir } = await oipApp(t, { 'add.onnx': addModel([1, 2, 3, 4]) }, { threads: 1 })
  const infer = () => app.inject({ method: 'POST', url: '/v2/models/add/infer', payload: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] } })
  t.equal((await infer()).statusCode, 200)
  writeFileSync(join(dir, 'add.onnx'), addModel([7, 7, 7, 7]))
  const [thread] = threadsOf(app.models.pool)
  await thread.worker.terminate()
  await replaced(app.models.pool, 0, thread)
  const refused = await infer()
  t.equal(refused.statusCode, 503)
  t.match(refused.json(), { code: 'MODEL_NOT_READY', error: /model 'add' is not ready: its inference thread was replaced, and its file changed on disk/ })
  t.equal(refused.headers['retry-after'], '1')
  t.equal((await app.inject('/v2/models/add/ready')).statusCode, 503)
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { code: 'NOT_READY', error: /not ready: model '.*' is unavailable/ })
  // The Open Inference Protocol's server readiness says the same (as Triton's strict readiness does).
  const v2 = await app.inject('/v2/health/ready')
  t.equal(v2.statusCode, 503, '/v2/health/ready too')
  t.match(v2.json(), { code: 'NOT_READY', error: /not ready: model '.*' is unavailable/ })
  t.equal(v2.headers['retry-after'], '1')
  await app.reload()
  const served = await infer()
  t.equal(served.statusCode, 200)
  t.same(served.json().outputs[0].data, [7, 7, 7, 7])
  t.equal((await app.inject('/health/ready')).statusCode, 200)
  t.equal((await app.inject('/v2/health/ready')).statusCode, 200)
})

t.test('a reload loads a model no thread holds again, even when its file is back as it was', async t => {
  const { app, dir } = await oipApp(t, { 'add.onnx': addModel([1, 2, 3, 4]) }, { threads: 1, load: false })
  const path = join(dir, 'add.onnx')
  utimesSync(path, 1e9, 1e9)
  await app.loadResources()
  const infer = () => app.inject({ method: 'POST', url: '/v2/models/add/infer', payload: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] } })
  t.equal((await infer()).statusCode, 200)
  writeFileSync(path, addModel([7, 7, 7, 7]))
  const [thread] = threadsOf(app.models.pool)
  await thread.worker.terminate()
  await replaced(app.models.pool, 0, thread)
  t.equal((await infer()).statusCode, 503)
  // Rolled back in place: the same bytes and modification time as when loaded.
  writeFileSync(path, addModel([1, 2, 3, 4]))
  utimesSync(path, 1e9, 1e9)
  await app.reload()
  const served = await infer()
  t.equal(served.statusCode, 200)
  t.same(served.json().outputs[0].data, [1, 2, 3, 4])
})

t.test('a file replaced while a replacement thread starts is not read by it: one key, one model', async t => {
  const { pool, path } = await addPool(t, 2)
  const [, second] = threadsOf(pool)
  // The pool's own exit listener runs first: the replacement is spawned, the
  // file checked unchanged and the load posted, but the thread reads the
  // file only once it has started.
  second.worker.once('exit', () => writeFileSync(path, addModel([7, 7, 7, 7])))
  await second.worker.terminate()
  await replaced(pool, 1, second)
  t.equal(pool.unavailable('add'), undefined, 'still served by the thread that holds it')
  await onlyTheFirstModel(t, pool)
})

t.test('a load that ends while a replacement still reads the file: a file replaced meanwhile is not served', async t => {
  const dir = modelsDir(t, { 'slow.onnx': slowModel(30), 'add.onnx': addModel([1, 2, 3, 4]) })
  const pool = new InferencePool({ threads: 2 })
  t.teardown(() => pool.close())
  const path = join(dir, 'add.onnx')
  await pool.load('slow', join(dir, 'slow.onnx'))
  const [busy, idle] = threadsOf(pool)
  const computing = pool.run('slow', one())
  const loading = pool.load('add', path)
  while (idle.pending.size > 0) await sleep(2)
  // The next thread spawned reads its models when told to (a slow start).
  let start!: () => void
  const started = new Promise<void>(resolve => { start = resolve })
  const spawn = (pool as any).spawn.bind(pool)
  ;(pool as any).spawn = () => {
    const thread = spawn()
    const call = thread.call.bind(thread)
    thread.call = (msg: { op: string }) => msg.op === 'load' ? started.then(() => call(msg)) : call(msg)
    return thread
  }
  // Loaded there, the idle thread dies: the busy one loads the model after its run.
  await idle.worker.terminate()
  t.same((await loading).inputs.map(i => i.name), ['x'], 'the load succeeds')
  writeFileSync(path, addModel([7, 7, 7, 7]))
  start()
  await computing
  await replaced(pool, 1, idle)
  t.ok(await holds(busy, 'add'))
  t.equal(pool.unavailable('add'), undefined)
  await onlyTheFirstModel(t, pool)
})

t.test('HTTP: a model no thread holds is MODEL_NOT_READY, not overloaded, when its requests do not queue', async t => {
  const { app, dir } = await oipApp(t, { 'add.onnx': addModel([1, 2, 3, 4]) }, { threads: 1 })
  const pool = app.models.pool
  const key = pool.keys().find(k => k.startsWith('add@'))!
  pool.configure(key, { maxQueueItems: 0 })
  const infer = () => app.inject({ method: 'POST', url: '/v2/models/add/infer', payload: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] } })
  t.equal((await infer()).statusCode, 200)
  writeFileSync(join(dir, 'add.onnx'), addModel([7, 7, 7, 7]))
  const [thread] = threadsOf(pool)
  await thread.worker.terminate()
  await replaced(pool, 0, thread)
  t.ok(pool.unavailable(key))
  t.equal(pool.refusal(key), undefined, 'no queue-full refusal')
  const refused = await infer()
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'MODEL_NOT_READY')
  t.equal(pool.stats(key).refused, 0, 'not counted as refused for a full queue')
})
