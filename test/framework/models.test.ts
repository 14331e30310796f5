// The model module: finding files, checking contracts, running off the main thread.
import t, { type Test } from 'tap'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { ModelStore, resolveModelPath } from '../../framework/models.ts'
import { InferencePool, AbortedError } from '../../framework/pool.ts'
import { checkContract, formatShape } from '../../framework/tensor.ts'
import { addModel, modelsDir, slowModel } from '../fixtures/models.ts'
import { buildModel } from '../../framework/onnx-builder.ts'

const addContract = {
  inputs: { x: { type: 'float32' as const, shape: [-1, 4] } },
  outputs: { y: { type: 'float32' as const, shape: [-1, 4] } },
}

function store (t: Test, files: Record<string, Uint8Array | string>, threads = 1) {
  const s = new ModelStore({ dir: modelsDir(t, files), threads })
  t.teardown(() => s.close())
  return s
}

t.test('resolves name.onnx, name/model.onnx and the highest name/<n>/model.onnx', async t => {
  const dir = modelsDir(t, {
    'flat.onnx': addModel(),
    'folder/model.onnx': addModel(),
    'versioned/1/model.onnx': addModel(),
    'versioned/10/model.onnx': addModel(),
    'versioned/9/model.onnx': addModel(),
  })
  t.equal(resolveModelPath(dir, 'flat').path, join(dir, 'flat.onnx'))
  t.equal(resolveModelPath(dir, 'folder').path, join(dir, 'folder', 'model.onnx'))
  const v = resolveModelPath(dir, 'versioned')
  t.equal(v.version, '10')
  t.equal(v.path, join(dir, 'versioned', '10', 'model.onnx'))
  t.throws(() => resolveModelPath(dir, '../etc/passwd'), /invalid model name/)
  t.throws(() => resolveModelPath(dir, 'missing'), /model 'missing' not found in .* \(looked for missing\.onnx/)
})

t.test('a symlink leaving the models directory is refused', async t => {
  const outside = modelsDir(t, { 'secret.onnx': addModel() })
  const dir = modelsDir(t, {})
  symlinkSync(join(outside, 'secret.onnx'), join(dir, 'escape.onnx'))
  const s = new ModelStore({ dir, threads: 1 })
  t.teardown(() => s.close())
  await t.rejects(s.load('escape'), /resolves outside/)
})

t.test('loads, exposes metadata and config, runs off the main thread', async t => {
  const s = store(t, { 'add/model.onnx': addModel(), 'add/config.json': JSON.stringify({ labels: ['a', 'b'] }) })
  const model = await s.load('add', addContract)
  t.same(model.inputs, [{ name: 'x', type: 'float32', shape: ['batch', 4] }])
  t.same(model.outputs, [{ name: 'y', type: 'float32', shape: ['batch', 4] }])
  t.same(model.config, { labels: ['a', 'b'] })
  const out = await model.run({ x: { type: 'float32', data: new Float32Array([1, 1, 1, 1, 0, 0, 0, 0]), dims: [2, 4] } })
  t.same(out.y.dims, [2, 4])
  t.same(Array.from(out.y.data as Float32Array), [2, 3, 4, 5, 1, 2, 3, 4])
  t.equal(await s.load('add'), model, 'a second load shares the sessions')
  t.equal(s.get('add'), model)
  t.same(s.list().map(m => m.name), ['add'])
})

t.test('a wrong model fails at load with expected and actual', async t => {
  const s = store(t, { 'add.onnx': addModel() })
  const err = await s.load('add', {
    inputs: { x: { type: 'float32', shape: [-1, 3] } },
    outputs: { y: { type: 'int64', shape: [-1, 4] }, z: { type: 'float32' } },
  }).then(() => undefined, (e: Error) => e)
  t.ok(err, 'rejected')
  t.match(err?.message, /model 'add' \(.*add\.onnx\) does not match what its resource expects/)
  t.match(err?.message, /input 'x': expected float32 \[\?, 3\], got float32 \[batch, 4\]/)
  t.match(err?.message, /output 'y': expected int64 \[\?, 4\], got float32 \[batch, 4\]/)
  t.match(err?.message, /output 'z': expected float32 \[any\], but the model has no such output \(it has 'y'\)/)
  await t.rejects(s.load('add', { inputs: {}, outputs: {} }), /input 'x': not expected by the resource/)
})

t.test('an input named after an Object.prototype member that the resource does not expect is reported', async t => {
  const info = (name: string) => ({ name, type: 'float32' as const, shape: [-1, 4] })
  for (const name of ['toString', '__proto__']) {
    t.same(checkContract({ inputs: { x: addContract.inputs.x }, outputs: {} }, { inputs: [info('x'), info(name)], outputs: [] }),
      [`input '${name}': not expected by the resource (expected only 'x')`])
  }
})

t.test('a corrupt model or a bad config fails naming the file', async t => {
  const s = store(t, { 'corrupt.onnx': 'this is not protobuf', 'cfg/model.onnx': addModel(), 'cfg/config.json': '{oops' })
  await t.rejects(s.load('corrupt'), /cannot load model 'corrupt' from .*corrupt\.onnx/)
  await t.rejects(s.load('cfg'), /cannot read .*cfg\/config\.json/)
})

t.test('a config.json that is JSON but no object fails naming the file, as the repository says it (null was a TypeError\'s message; [], "x" and 5 were served)', async t => {
  for (const text of ['null', '[]', '"x"', '5']) {
    const s = store(t, { 'add.onnx': addModel(), 'add.json': text })
    await t.rejects(s.load('add', addContract), { name: 'ModelLoadError', message: /add\.json must hold a JSON object$/ }, text)
  }
})

t.test('a config.json key that is a near miss of one the server reads fails the load naming the file, the key and the key meant (a misspelled maxBatchSize was silently ignored)', async t => {
  const cases = [['maxBatchsize', 'maxBatchSize'], ['max_batch_size', 'maxBatchSize'], ['maxQueueDelay', 'maxQueueDelayMs'], ['padvalue', 'padValue'], ['label', 'labels']]
  // One store (one pool) for every case: a store per case took 3 s each.
  const files: Record<string, Uint8Array | string> = { 'own/model.onnx': addModel(), 'own/config.json': JSON.stringify({ transitions: [[0]], featureTemplate: 'v3', maxBatchTokens: 64 }) }
  cases.forEach(([key], i) => Object.assign(files, { [`m${i}/model.onnx`]: addModel(), [`m${i}/config.json`]: JSON.stringify({ [key]: 4 }) }))
  const s = store(t, files)
  for (const [i, [key, meant]] of cases.entries()) {
    const err = await s.load(`m${i}`, addContract).then(() => undefined, (e: Error) => e)
    t.equal(err?.name, 'ModelLoadError', key)
    t.match(err?.message, new RegExp(`m${i}/config\\.json: unknown key '${key}' \\(did you mean '${meant}'\\?\\)`), key)
    t.match(err?.message, /the keys the server reads are labels, maxBatchSize, maxQueueItems, maxQueueDelayMs, padValue, maxBatchTokens, versionPolicy, allowNonFinite/, key)
  }
  // A resource's own keys (the taggers' transitions, featureTemplate, ...) are kept.
  t.same((await s.load('own', addContract)).config, { transitions: [[0]], featureTemplate: 'v3', maxBatchTokens: 64 })
})

t.test('the server\'s config.json keys of the wrong type or range fail the load naming the file', async t => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ maxBatchSize: '8' }, /maxBatchSize must be a positive integer, got "8"/],
    [{ maxQueueDelayMs: -1 }, /maxQueueDelayMs must be a number >= 0, got -1/],
    [{ maxQueueItems: 1.5 }, /maxQueueItems must be an integer >= 0, got 1\.5/],
    [{ versionPolicy: 'some' }, /versionPolicy must be "all"/],
    [{ allowNonFinite: 'yes' }, /allowNonFinite must be true or false/],
  ]
  const files: Record<string, Uint8Array | string> = {}
  cases.forEach(([config], i) => Object.assign(files, { [`m${i}/model.onnx`]: addModel(), [`m${i}/config.json`]: JSON.stringify(config) }))
  const s = store(t, files)
  for (const [i, [config, message]] of cases.entries()) {
    await t.rejects(s.load(`m${i}`, addContract), { name: 'ModelLoadError', message: new RegExp(`m${i}/config\\.json.*${message.source}`) }, JSON.stringify(config))
  }
})

t.test('contract helpers', async t => {
  t.equal(formatShape([-1, 'n', 4]), '[?, n, 4]')
  t.same(checkContract(addContract, { inputs: [{ name: 'x', type: 'float32', shape: ['b', 4] }], outputs: [{ name: 'y', type: 'float32', shape: [2, 4] }] }), [])
  t.same(checkContract({ inputs: {}, outputs: {} }, { inputs: [], outputs: [] }), [])
  t.match(checkContract({ inputs: { a: { type: 'int64', shape: [2] } }, outputs: {} }, { inputs: [{ name: 'a', type: 'int64', shape: [2, 2] }], outputs: [] })[0], /expected int64 \[2\], got int64 \[2, 2\]/)
  t.match(checkContract({ inputs: { a: { type: 'int64' } }, outputs: {} }, { inputs: [], outputs: [] })[0], /it has none/)
})

t.test('pool: FIFO across threads, aborted jobs never run, bad feeds reject', async t => {
  const pool = new InferencePool({ threads: 2 })
  t.teardown(() => pool.close())
  t.equal(pool.size, 2)
  t.throws(() => new InferencePool({ threads: 0 }), /threads must be a positive integer/)
  t.ok(InferencePool.defaultThreads() >= 1)
  const meta = await pool.load('add', addModel())
  t.equal(meta.inputs[0].name, 'x')
  const x = () => ({ x: { type: 'float32' as const, data: new Float32Array([0, 0, 0, 0]), dims: [1, 4] } })
  const results = await Promise.all(Array.from({ length: 20 }, () => pool.run('add', x())))
  t.equal(results.length, 20)
  for (const r of results) t.same(Array.from(r.y.data as Float32Array), [1, 2, 3, 4])

  const aborted = new AbortController()
  aborted.abort(new Error('gone'))
  await t.rejects(pool.run('add', x(), { signal: aborted.signal }), AbortedError)

  await t.rejects(pool.run('add', { x: { type: 'float32', data: new Float32Array(3), dims: [1, 3] } }), /Got invalid dimensions|dimension/i)
  await t.rejects(pool.run('nope', x()), /not loaded/)
  // Still serving after errors.
  t.same(Array.from((await pool.run('add', x())).y.data as Float32Array), [1, 2, 3, 4])
  const only = await pool.run('add', x(), { outputs: ['y'] })
  t.same(Object.keys(only), ['y'])
  await pool.unload('add')
  await t.rejects(pool.run('add', x()), /not loaded/)
})

t.test('pool: a job queued behind a slow one is dropped when aborted before its turn', async t => {
  const pool = new InferencePool({ threads: 1 })
  t.teardown(() => pool.close())
  await pool.load('slow', slowModel(30))
  await pool.load('add', addModel())
  const busy = pool.run('slow', { x: { type: 'float32', data: new Float32Array([1]), dims: [1, 1] } })
  const controller = new AbortController()
  const queued = pool.run('add', { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }, { signal: controller.signal })
  t.equal(pool.queued, 1)
  controller.abort(new Error('deadline'))
  await t.rejects(queued, { name: 'AbortedError', message: 'deadline' })
  await busy
  t.equal(pool.queued, 0)
})

t.test('pool: a thread that dies while a model loads gets that model too once replaced', async t => {
  const pool = new InferencePool({ threads: 2 })
  t.teardown(() => pool.close())
  await pool.load('slow', slowModel(300))
  const one = { x: { type: 'float32' as const, data: new Float32Array([1]), dims: [1, 1] } }
  const x = { x: { type: 'float32' as const, data: new Float32Array(4), dims: [1, 4] } }
  const [busy, idle] = (pool as any).threads
  const computing = pool.run('slow', one)
  t.ok(busy.busy && !idle.busy, 'the first thread computes, the second is idle')
  // The idle thread loads 'add' at once; the busy one only after its run.
  const loading = pool.load('add', addModel())
  while (idle.pending.size > 0) await new Promise(resolve => setTimeout(resolve, 2))
  t.ok(busy.pending.size > 0, 'the busy thread has not loaded it yet')
  await idle.worker.terminate()
  await loading
  await computing
  const replaced = (pool as any).threads[1]
  t.not(replaced, idle, 'the dead thread was replaced')
  // The first thread computes again, so 'add' goes to the replacement.
  const again = pool.run('slow', one)
  const out = await pool.run('add', x)
  t.same(Array.from(out.y.data as Float32Array), [1, 2, 3, 4], 'the replacement has the model loaded meanwhile')
  await again
})

t.test('pool: a thread that dies is replaced and gets its models back', async t => {
  const pool = new InferencePool({ threads: 1 })
  t.teardown(() => pool.close())
  await pool.load('add', addModel())
  const thread = (pool as any).threads[0]
  await thread.worker.terminate()
  await new Promise(resolve => setTimeout(resolve, 50))
  const out = await pool.run('add', { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } })
  t.same(Array.from(out.y.data as Float32Array), [1, 2, 3, 4])
  await pool.close()
  await t.rejects(pool.run('add', { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }), /closed/)
})

t.test('a run the pool refuses at once, even by throwing (a feed that is not a tensor), is not left in flight: release does not wait for it', async t => {
  const s = store(t, { 'add.onnx': addModel() })
  const model = await s.load('add')
  t.throws(() => s.run(model.loaded.key, { x: undefined as never }), TypeError)
  t.equal(s.inFlight(model.loaded.key), 0)
  let timer: NodeJS.Timeout | undefined
  const released = await Promise.race([
    s.release(model.loaded.key).then(() => 'released'),
    new Promise(resolve => { timer = setTimeout(() => resolve('still waiting after 5 s'), 5000) }),
  ])
  clearTimeout(timer)
  t.equal(released, 'released')
})

t.test('ids past a weight table\'s rows are refused before they are queued (400), int64 and int32, loaded by name or as a file', async t => {
  const table = { name: 'table', type: 'float32' as const, dims: [10, 2], data: new Float32Array(20).map((_, i) => i) }
  const embedding = (type: 'int64' | 'int32') => buildModel({
    name: 'e',
    inputs: [{ name: 'ids', type, shape: ['n'] }],
    outputs: [{ name: 'v', type: 'float32', shape: ['n', 2] }],
    initializers: [table],
    nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['v'], attributes: { axis: 0 } }],
  })
  const s = store(t, { 'e64.onnx': embedding('int64'), 'e32.onnx': embedding('int32') })
  const e64 = await s.load('e64')
  const e32 = await s.load('e32')
  t.same([...(await e64.run({ ids: { type: 'int64', data: new BigInt64Array([9n, -10n]), dims: [2] } })).v.data as Float32Array], [18, 19, 0, 1])
  t.same([...(await e32.run({ ids: { type: 'int32', data: new Int32Array([9, -10]), dims: [2] } })).v.data as Float32Array], [18, 19, 0, 1])
  const refused = (run: () => unknown, message: RegExp) => t.throws(run, { statusCode: 400, code: 'BAD_REQUEST', message })
  refused(() => e64.run({ ids: { type: 'int64', data: new BigInt64Array([1n, 10n]), dims: [2] } }), /^input 'ids': element 1 \(10\) is out of range: it indexes the 10 rows of the model's table 'table', so it must be from -10 to 9$/)
  refused(() => e64.run({ ids: { type: 'int64', data: new BigInt64Array([-11n]), dims: [1] } }), /element 0 \(-11\)/)
  refused(() => e64.run({ ids: { type: 'int64', data: new BigInt64Array([0n, 2n ** 63n - 1n]), dims: [2] } }), /element 1 \(9223372036854775807\)/)
  refused(() => e32.run({ ids: { type: 'int32', data: new Int32Array([10]), dims: [1] } }), /element 0 \(10\)/)
  refused(() => e32.run({ ids: { type: 'int32', data: new Int32Array([0, -11]), dims: [2] } }), /element 1 \(-11\)/)
  t.equal(s.inFlight(e64.loaded.key) + s.inFlight(e32.loaded.key), 0, 'nothing left in flight')
  // A hot swap's file (repository.ts) is checked the same way.
  const swapped = await s.loadFile('e64', e64.path, '2', {})
  t.throws(() => s.run(swapped.key, { ids: { type: 'int64', data: new BigInt64Array([10n]), dims: [1] } }), { statusCode: 400, message: /element 0 \(10\)/ })
  await s.release(swapped.key)
  // A padValue that is no row of the table would fail every batch it pads: refused at load.
  await t.rejects(s.loadFile('e64', e64.path, '3', { padValue: 10 }), /padValue 10 is out of range for input 'ids', which indexes the 10 rows of the model's table 'table'/)
  const padded = store(t, { 'e.onnx': embedding('int64'), 'e.json': '{"padValue": -10}', 'f.onnx': embedding('int64'), 'f.json': '{"padValue": 12}' })
  t.ok(await padded.load('e'), 'padValue -10: the last row')
  await t.rejects(padded.load('f'), /invalid batching options in .*f\.json: padValue 12 is out of range/)
})

t.test('ids that reach a lookup through ops passing them on (Unsqueeze, Cast) or index a GatherElements are refused too (400); ONNX Runtime itself fails on them', async t => {
  const table = { name: 'table', type: 'float32' as const, dims: [10, 2], data: new Float32Array(20).map((_, i) => i) }
  const axes = { name: 'axes', type: 'int64' as const, dims: [1], data: new BigInt64Array([1n]) }
  const chained = buildModel({
    name: 'chained',
    inputs: [{ name: 'ids', type: 'int32', shape: ['n'] }],
    outputs: [{ name: 'v', type: 'float32', shape: ['n', 1, 2] }],
    initializers: [table, axes],
    nodes: [
      { op: 'Unsqueeze', inputs: ['ids', 'axes'], outputs: ['u'] },
      { op: 'Cast', inputs: ['u'], outputs: ['c'], attributes: { to: 7 } },
      { op: 'Gather', inputs: ['table', 'c'], outputs: ['v'], attributes: { axis: 0 } },
    ],
  })
  const elements = buildModel({
    name: 'elements',
    inputs: [{ name: 'pick', type: 'int64', shape: ['n', 2] }],
    outputs: [{ name: 'v', type: 'float32', shape: ['n', 2] }],
    initializers: [table],
    nodes: [{ op: 'GatherElements', inputs: ['table', 'pick'], outputs: ['v'], attributes: { axis: 1 } }],
  })
  const s = store(t, { 'chained.onnx': chained, 'elements.onnx': elements })
  const c = await s.load('chained')
  const e = await s.load('elements')
  t.same([...(await c.run({ ids: { type: 'int32', data: new Int32Array([9, -1]), dims: [2] } })).v.data as Float32Array], [18, 19, 18, 19])
  t.same([...(await e.run({ pick: { type: 'int64', data: new BigInt64Array([1n, 0n, -2n, 1n]), dims: [2, 2] } })).v.data as Float32Array], [1, 0, 2, 3])
  const badIds = { ids: { type: 'int32' as const, data: new Int32Array([3, 10]), dims: [2] } }
  const badPick = { pick: { type: 'int64' as const, data: new BigInt64Array([0n, 2n]), dims: [1, 2] } }
  t.throws(() => c.run(badIds), { statusCode: 400, code: 'BAD_REQUEST', message: /^input 'ids': element 1 \(10\) is out of range: it indexes the 10 rows of the model's table 'table'/ })
  t.throws(() => e.run(badPick), { statusCode: 400, code: 'BAD_REQUEST', message: /^input 'pick': element 1 \(2\) is out of range: it indexes the 2 rows of the model's table 'table', so it must be from -2 to 1$/ })
  // The same feeds, past the check (the pool, as the store would queue them): ONNX Runtime fails the run.
  const pool = new InferencePool({ threads: 1 })
  t.teardown(() => pool.close())
  await pool.load('c', c.path)
  await pool.load('e', e.path)
  await t.rejects(pool.run('c', badIds), /indices|out of bounds|out of range/i, 'ONNX Runtime fails the chained lookup')
  await t.rejects(pool.run('e', badPick), /indices|out of bounds|out of range/i, 'ONNX Runtime fails the GatherElements')
})
