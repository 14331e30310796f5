// The model repository: scanning, version policies, the repository API and
// hot swap (in process; test/oip/hot-swap.test.ts does it with SIGHUP).
import t from 'tap'
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig, scanModels, selectVersions } from '../../framework/repository.ts'
import type { App } from '../../framework/create-app.ts'
import { addModel, identityModel, oipApp, tempModels, writeModels } from '../fixtures/oip.ts'

const x = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] }
const infer = (app: App, url = '/v2/models/mlp/infer', payload: object = x) => app.inject({ method: 'POST', url, payload })

t.test('scan: flat files, folders, versions; names validated; nothing outside the directory', async t => {
  const outside = tempModels(t, { 'secret.onnx': addModel() })
  const dir = tempModels(t, {
    'a.onnx': addModel(),
    'b/model.onnx': addModel(),
    'c/1/model.onnx': addModel(),
    'c/10/model.onnx': addModel(),
    'c/notes/model.onnx': addModel(),
    'c/1234567890123456/model.onnx': addModel(),
    'c/config.json': '{}',
    'd.onnx': addModel(),
    'd/1/model.onnx': addModel(),
    'data/readme.txt': 'not a model',
    '.hidden.onnx': addModel(),
    '-bad.onnx': addModel(),
  })
  symlinkSync(join(outside, 'secret.onnx'), join(dir, 'escape.onnx'))
  symlinkSync(outside, join(dir, 'escapedir'))
  symlinkSync(join(dir, 'a.onnx'), join(dir, 'alias.onnx'))
  symlinkSync(join(dir, 'missing'), join(dir, 'dangling.onnx'))
  const found = new Map(scanModels(dir).map(f => [f.name, f]))
  t.same([...found.keys()].sort(), ['a', 'alias', 'b', 'c', 'd', 'dangling', 'escape', 'escapedir'])
  t.same([...found.get('a')!.files.keys()], [''])
  t.same([...found.get('b')!.files.keys()], [''])
  t.same([...found.get('c')!.files.keys()].sort(), ['1', '10'], 'only numbered version folders, of at most 15 digits (compared exactly as numbers)')
  t.equal(found.get('c')!.configPath, join(dir, 'c', 'config.json'))
  t.same([...found.get('d')!.files.values()], [join(dir, 'd.onnx')], 'name.onnx wins over name/, as in ModelStore')
  t.match(found.get('escape')!.problem, /outside the models directory/)
  t.match(found.get('escapedir')!.problem, /outside the models directory/)
  t.match(found.get('dangling')!.problem, /broken symbolic link/)
  t.notOk(found.get('alias')!.problem, 'a link inside the directory is fine')
})

t.test('version policies and config validation', async t => {
  t.same(selectVersions(['1', '3', '2'], { latest: 1 }), ['3'])
  t.same(selectVersions(['1', '3', '2'], { latest: 2 }), ['3', '2'])
  t.same(selectVersions(['1', '3', '2'], 'all'), ['3', '2', '1'])
  t.same(selectVersions(['1', '3', '2'], { specific: ['1', '9'] }), ['1'])
  t.same(selectVersions([''], { latest: 1 }), [''])
  t.same(parseConfig({ versionPolicy: { specific: [1, 2] } }, 'c').versionPolicy, { specific: ['1', '2'] })
  t.throws(() => parseConfig({ versionPolicy: 'some' }, 'c.json'), /c.json: versionPolicy must be/)
  t.throws(() => parseConfig([], 'c.json'), /must hold a JSON object/)
  t.throws(() => parseConfig({ maxBatchSize: 1.5 }, 'c.json'), /maxBatchSize/)
  t.throws(() => parseConfig({ allowNonFinite: 'yes' }, 'c.json'), /allowNonFinite/)
  // A misspelled key was ignored; a batching key of the wrong type failed later, naming no file.
  t.throws(() => parseConfig({ maxBatchsize: 4 }, 'c.json'), /c\.json: unknown key 'maxBatchsize' \(did you mean 'maxBatchSize'\?\)/)
  t.throws(() => parseConfig({ maxQueueDelayMs: '5' }, 'c.json'), /invalid batching options in c\.json: maxQueueDelayMs must be a number >= 0, got "5"/)
  // 0 passed here ("no limit") but the pool refused it at load: one rule now.
  t.throws(() => parseConfig({ maxBatchSize: 0 }, 'c.json'), /invalid batching options in c\.json: maxBatchSize must be a positive integer, got 0/)
  // labels were served in the metadata whatever they held.
  t.throws(() => parseConfig({ labels: 'cat,dog' }, 'c.json'), /c\.json: labels must be an array of strings, got "cat,dog"/)
  t.throws(() => parseConfig({ labels: ['cat', 2] }, 'c.json'), /c\.json: labels must be an array of strings, got \["cat",2\]/)
  t.same(parseConfig({ labels: ['cat', 'dog'] }, 'c.json').labels, ['cat', 'dog'])
  t.same(parseConfig({ transitions: [[1]], maxBatchSize: 2 }, 'c.json').raw, { transitions: [[1]], maxBatchSize: 2 }, "a resource's own keys are kept")
})

t.test('models that escape the directory are reported, never loaded', async t => {
  const outside = tempModels(t, { 'secret.onnx': addModel() })
  const dir = tempModels(t, { 'scaler.onnx': (await import('../fixtures/oip.ts')).scalerModel() })
  symlinkSync(join(outside, 'secret.onnx'), join(dir, 'escape.onnx'))
  const { app } = await oipApp(t, {}, { modelsDir: dir })
  const res = await app.inject({ url: '/v2/models/escape/ready' })
  t.equal(res.statusCode, 503)
  t.match(res.json().error, /resolves outside the models directory/)
  t.equal((await app.inject({ url: '/v2/models/..%2Fsecret' })).statusCode, 404)
})

t.test('version policy "latest 2" serves two versions; the default is the highest', async t => {
  const { app } = await oipApp(t, {
    'v/1/model.onnx': addModel([1, 1, 1, 1]),
    'v/2/model.onnx': addModel([2, 2, 2, 2]),
    'v/3/model.onnx': addModel([3, 3, 3, 3]),
    'v/config.json': JSON.stringify({ versionPolicy: { latest: 2 } }),
  })
  t.same((await app.inject({ url: '/v2/models/v' })).json().versions, ['2', '3'])
  t.same((await infer(app, '/v2/models/v/infer')).json().outputs[0].data, [3, 3, 3, 3])
  t.same((await infer(app, '/v2/models/v/versions/2/infer')).json().outputs[0].data, [2, 2, 2, 2])
  t.equal((await infer(app, '/v2/models/v/versions/1/infer')).statusCode, 404)
})

t.test('repository API is off by default', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/index' })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/mlp/load' })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/mlp/unload' })).statusCode, 404)
})

t.test('repository API: index, load a model dropped in later, reload, unload', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel(), 'broken.onnx': 'nope' }, { repositoryApi: true })
  const index = await app.inject({ method: 'POST', url: '/v2/repository/index' })
  t.equal(index.statusCode, 200)
  t.same(index.json().map((e: { name: string, state: string }) => [e.name, e.state]), [['broken', 'UNAVAILABLE'], ['mlp', 'READY'], ['scaler', 'READY']])
  t.match(index.json()[0].reason, /cannot load model 'broken'/)
  const onlyReady = await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { ready: true } })
  t.same(onlyReady.json().map((e: { name: string }) => e.name), ['mlp', 'scaler'])
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { ready: 1 } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { what: 1 } })).statusCode, 400)

  // Dropped in after start-up: listed by the index (not loaded), loadable by the API.
  writeModels(dir, { 'late/1/model.onnx': addModel([5, 5, 5, 5]) })
  const late = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json().find((e: { name: string }) => e.name === 'late')
  t.equal(late.state, 'UNAVAILABLE')
  t.match(late.reason, /not loaded yet/)
  t.equal((await infer(app, '/v2/models/late/infer')).statusCode, 503)
  const load = await app.inject({ method: 'POST', url: '/v2/repository/models/late/load', headers: { 'content-type': 'application/json' }, payload: '' })
  t.equal(load.statusCode, 200, load.body)
  t.same(load.json(), {})
  const lateAnswer = await infer(app, '/v2/models/late/infer')
  t.equal(lateAnswer.statusCode, 200)
  t.equal(lateAnswer.json().model_version, '1')
  t.same(lateAnswer.json().outputs[0].data, [5, 5, 5, 5])

  // Load again after a change: swapped in.
  writeModels(dir, { 'mlp.onnx': addModel([7, 7, 7, 7]) })
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/mlp/load', payload: {} })).statusCode, 200)
  t.same((await infer(app)).json().outputs[0].data, [7, 7, 7, 7])

  // A broken replacement: 400 with the reason, the old one keeps serving.
  writeModels(dir, { 'mlp.onnx': 'garbage' })
  const failed = await app.inject({ method: 'POST', url: '/v2/repository/models/mlp/load' })
  t.equal(failed.statusCode, 400)
  t.match(failed.json().error, /failed to load model 'mlp'.*still serving the previous version/)
  t.same((await infer(app)).json().outputs[0].data, [7, 7, 7, 7])
  t.equal((await app.inject({ url: '/v2/models/mlp/ready' })).statusCode, 200)

  // Overrides Triton's load takes are refused, not ignored.
  for (const parameters of [{ config: '{"max_batch_size": 4}' }, { 'file:1/model.onnx': 'AAAA' }]) {
    const overridden = await app.inject({ method: 'POST', url: '/v2/repository/models/mlp/load', payload: { parameters } })
    t.equal(overridden.statusCode, 400)
    t.match(overridden.json(), { code: 'BAD_REQUEST', error: /unsupported parameter '(config|file:1\/model.onnx)': models are loaded from the models directory as they are/ })
  }
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/mlp/load', payload: { parameters: [] } })).statusCode, 400)
  // A client's field name is quoted shortened, as everywhere (it came back whole: a 500 kB message).
  for (const url of ['/v2/repository/models/mlp/load', '/v2/repository/index']) {
    const long = await app.inject({ method: 'POST', url, payload: { ['k'.repeat(500_000)]: true } })
    t.same(long.json(), { error: `body has an unknown field '${'k'.repeat(100)}...'`, code: 'BAD_REQUEST', statusCode: 400 }, url)
  }
  t.same((await infer(app)).json().outputs[0].data, [7, 7, 7, 7], 'still the model that served')
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/nope/load' })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/nope/unload' })).statusCode, 404)
  const resourceModel = await app.inject({ method: 'POST', url: '/v2/repository/models/scaler/unload' })
  t.equal(resourceModel.statusCode, 400)
  t.match(resourceModel.json().error, /used by a resource/)

  const unload = await app.inject({ method: 'POST', url: '/v2/repository/models/late/unload', payload: { parameters: { unload_dependents: false } } })
  t.equal(unload.statusCode, 200)
  const gone = await infer(app, '/v2/models/late/infer')
  t.equal(gone.statusCode, 503)
  t.match(gone.json().error, /unloaded/)
  t.equal((await app.inject({ method: 'POST', url: '/v2/repository/models/late/load' })).statusCode, 200, 'loadable again')
})

/** Sends requests back to back from `workers` loops until stopped; counts answers. */
function load (app: App, url: string, workers = 4) {
  let stop = false
  const seen = new Map<string, number>()
  const failures: string[] = []
  let count = 0
  const loops = Array.from({ length: workers }, async () => {
    while (!stop) {
      const res = await app.inject({ method: 'POST', url, payload: x })
      count++
      if (res.statusCode !== 200) failures.push(`${res.statusCode} ${res.body}`)
      else {
        const key = JSON.stringify(res.json().outputs[0].data)
        seen.set(key, (seen.get(key) ?? 0) + 1)
      }
    }
  })
  return { seen, failures, count: () => count, stop: async () => { stop = true; await Promise.all(loops) } }
}

t.test('hot swap in process: requests keep flowing, none fails, old sessions released after', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel([1, 1, 1, 1]), 'v/1/model.onnx': addModel([1, 1, 1, 1]) })
  const unloaded: string[] = []
  const pool = app.models.pool
  const unload = pool.unload.bind(pool)
  pool.unload = async (key: string) => { unloaded.push(key); return unload(key) }

  const flat = load(app, '/v2/models/mlp/infer')
  const versioned = load(app, '/v2/models/v/infer')
  await new Promise(resolve => setTimeout(resolve, 200))
  for (let i = 2; i <= 4; i++) {
    writeModels(dir, { 'mlp.onnx': addModel([i, i, i, i]), [`v/${i}/model.onnx`]: addModel([i, i, i, i]) })
    await app.reload()
    await new Promise(resolve => setTimeout(resolve, 150))
  }
  await flat.stop()
  await versioned.stop()
  t.same(flat.failures, [], `no failed request across 3 swaps (${flat.count()} requests)`)
  t.same(versioned.failures, [], `no failed request across 3 version additions (${versioned.count()} requests)`)
  t.ok(flat.count() > 20, 'requests flowed')
  t.same([...flat.seen.keys()].filter(k => !/^\[[1-4],[1-4],[1-4],[1-4]\]$/.test(k)), [], 'every answer came from one whole model')
  t.same((await infer(app)).json().outputs[0].data, [4, 4, 4, 4], 'the last swap serves')
  const v = await infer(app, '/v2/models/v/infer')
  t.equal(v.json().model_version, '4')
  t.equal((await infer(app, '/v2/models/v/versions/1/infer')).statusCode, 404, 'latest 1: older versions retired')
  t.equal(unloaded.length, 6, 'three old mlp sessions and three old versions released')
  t.equal(new Set(unloaded).size, 6)
})

t.test('hot swap: the old sessions go only when their in-flight requests finish', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel([1, 1, 1, 1]) })
  const store = app.models
  const pool = store.pool
  const events: string[] = []
  const unload = pool.unload.bind(pool)
  pool.unload = async (key: string) => { events.push(`unload ${key}`); return unload(key) }
  // Hold one run in flight on the current sessions.
  const run = pool.run.bind(pool)
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  pool.run = (key, feeds, options) => { pool.run = run; return gate.then(() => run(key, feeds, options)).finally(() => events.push('in-flight done')) }
  const inflight = infer(app)
  await new Promise(resolve => setTimeout(resolve, 20))
  writeModels(dir, { 'mlp.onnx': addModel([2, 2, 2, 2]) })
  const reload = app.reload()
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same((await infer(app)).json().outputs[0].data, [2, 2, 2, 2], 'new requests get the new model at once')
  t.same(events, [], 'the old sessions wait for the request in flight')
  release()
  t.same((await inflight).json().outputs[0].data, [1, 1, 1, 1], 'the request in flight finished on the old model')
  await reload
  t.equal(events[0], 'in-flight done')
  t.match(events[1], /^unload mlp@/)
})

t.test('hot swap of a resource\'s model: the resource follows, its contract is kept', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel() })
  const before = (await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[0, 0, 0, 0]] } })).json().rows[0]
  // Same contract (float32 x [batch, 4] -> y [batch, 4]): swapped under /scale too.
  writeModels(dir, { 'scaler.onnx': addModel([9, 9, 9, 9]) })
  await app.reload()
  t.same((await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[0, 0, 0, 0]] } })).json().rows[0], [9, 9, 9, 9])
  t.same((await infer(app, '/v2/models/scaler/infer')).json().outputs[0].data, [9, 9, 9, 9])
  t.notSame(before, [9, 9, 9, 9])
  // A model that breaks the resource's contract is refused; the old one serves on.
  writeModels(dir, { 'scaler.onnx': identityModel('int64') })
  await app.reload()
  t.same((await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[0, 0, 0, 0]] } })).json().rows[0], [9, 9, 9, 9])
  const meta = await app.inject({ url: '/v2/models/scaler' })
  t.equal(meta.json().inputs[0].datatype, 'FP32')
})

t.test('reload: a broken replacement leaves the old model serving; a removed model stops serving', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel([1, 1, 1, 1]), 'gone.onnx': addModel() }, { repositoryApi: true })
  writeFileSync(join(dir, 'mlp.onnx'), 'garbage')
  rmSync(join(dir, 'gone.onnx'))
  await app.reload()
  t.same((await infer(app)).json().outputs[0].data, [1, 1, 1, 1])
  const entry = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json().find((e: { name: string }) => e.name === 'mlp')
  t.equal(entry.state, 'READY')
  t.match(entry.reason, /reload failed, still serving the previous version/)
  const gone = await infer(app, '/v2/models/gone/infer')
  t.equal(gone.statusCode, 503)
  // Fixed: the next reload takes it.
  writeModels(dir, { 'mlp.onnx': addModel([3, 3, 3, 3]) })
  mkdirSync(join(dir, 'empty'))
  await app.reload()
  t.same((await infer(app)).json().outputs[0].data, [3, 3, 3, 3])
})

t.test('reload: a scan that fails changes nothing (it would read as every model gone)', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel([1, 1, 1, 1]) }, { repositoryApi: true })
  renameSync(dir, `${dir}.away`)
  t.teardown(() => rmSync(`${dir}.away`, { recursive: true, force: true }))
  await t.rejects(app.reload(), /cannot scan the models directory, nothing reloaded/)
  renameSync(`${dir}.away`, dir)
  t.same((await infer(app)).json().outputs[0].data, [1, 1, 1, 1], 'still serving')
  const entry = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json().find((e: { name: string }) => e.name === 'mlp')
  t.equal(entry.state, 'READY')
})

t.test('reload: a model the load API adds while a reload runs is not retired by it', async t => {
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel([1, 1, 1, 1]) }, { repositoryApi: true })
  writeModels(dir, { 'mlp.onnx': addModel([2, 2, 2, 2]) })
  const reloading = app.reload()
  // Dropped in after the reload's scan, and loaded through the API meanwhile.
  writeModels(dir, { 'late.onnx': addModel([5, 5, 5, 5]) })
  const load = await app.inject({ method: 'POST', url: '/v2/repository/models/late/load', headers: { 'content-type': 'application/json' }, payload: '' })
  t.equal(load.statusCode, 200, load.body)
  await reloading
  const late = await infer(app, '/v2/models/late/infer')
  t.equal(late.statusCode, 200, late.body)
  t.same(late.json().outputs[0].data, [5, 5, 5, 5])
  t.same((await infer(app)).json().outputs[0].data, [2, 2, 2, 2], 'the reload took the changed model')
})

t.test('scan: an entry removed while the scan looks at it is skipped, not the whole scan', async t => {
  const dir = tempModels(t, { 'a.onnx': addModel(), 'b.onnx': addModel(), 'c/1/model.onnx': addModel() })
  const fs = await import('node:fs')
  const vanished = (path: unknown) => Object.assign(new Error(`ENOENT: no such file or directory, '${String(path)}'`), { code: 'ENOENT' })
  // b.onnx and c/ are listed, then gone before they are looked at.
  const { scanModels: scan } = await t.mockImport<typeof import('../../framework/repository.ts')>('../../framework/repository.ts', {
    'node:fs': {
      ...fs,
      statSync: (p: string, ...rest: unknown[]) => { if (p.endsWith('b.onnx')) throw vanished(p); return (fs.statSync as Function)(p, ...rest) },
      lstatSync: (p: string, ...rest: unknown[]) => { if (p.endsWith('b.onnx')) throw vanished(p); return (fs.lstatSync as Function)(p, ...rest) },
      readdirSync: (p: string, ...rest: unknown[]) => { if (p.endsWith('/c')) throw vanished(p); return (fs.readdirSync as Function)(p, ...rest) },
    },
  })
  t.same(scan(dir).map(f => f.name), ['a'])
})

t.test('start-up: a resource\'s model file replaced before the repository adopts it is loaded anew', async t => {
  const { ModelStore } = await import('../../framework/models.ts')
  const { ModelRepository } = await import('../../framework/repository.ts')
  const dir = tempModels(t, { 'mlp.onnx': addModel([1, 1, 1, 1]) })
  const store = new ModelStore({ dir, threads: 1, inlineBelowUs: 0 })
  t.teardown(() => store.close())
  const repo = new ModelRepository({ store, dir })
  repo.discover()
  // A resource's load(), then a new file lands while others load and warm up.
  const model = await store.load('mlp', { inputs: { x: { type: 'float32', shape: [-1, 4] } }, outputs: { y: { type: 'float32', shape: [-1, 4] } } })
  await new Promise(resolve => setTimeout(resolve, 20))
  writeModels(dir, { 'mlp.onnx': addModel([2, 2, 2, 2]) })
  await repo.loadAll()
  const feeds = { x: { type: 'float32' as const, data: new Float32Array(4), dims: [1, 4] } }
  const served = repo.defaultVersion(repo.get('mlp')!)!.loaded!
  t.same(Array.from((await store.run(served.key, feeds)).y.data as Float32Array), [2, 2, 2, 2], 'the repository serves the file on disk')
  t.same(Array.from((await model.run(feeds)).y.data as Float32Array), [2, 2, 2, 2], 'and the resource follows')
})

t.test('a version that failed to load is reported not ready with its reason, not as unknown', async t => {
  const { app } = await oipApp(t, {
    'clf/1/model.onnx': addModel(),
    'clf/2/model.onnx': 'garbage',
    'clf/config.json': JSON.stringify({ versionPolicy: 'all' }),
    'only/1/model.onnx': 'garbage',
  }, { repositoryApi: true })
  const broken = await app.inject({ url: '/v2/models/clf/versions/2/ready' })
  t.equal(broken.statusCode, 503, broken.body)
  t.match(broken.json(), { name: 'clf', ready: false, code: 'MODEL_NOT_READY', error: /version 2 is not ready: cannot load model 'clf' from clf\/2\/model\.onnx/ })
  t.equal((await infer(app, '/v2/models/clf/versions/2/infer')).statusCode, 503)
  t.equal((await infer(app, '/v2/models/clf/versions/1/infer')).statusCode, 200, 'the good version serves')
  t.equal((await infer(app, '/v2/models/clf/infer')).json().model_version, '1', 'and is the default')
  t.same((await app.inject({ url: '/v2/models/clf' })).json().versions, ['1'], 'metadata lists the versions that serve')
  const only = await app.inject({ url: '/v2/models/only/versions/1/ready' })
  t.equal(only.statusCode, 503, only.body)
  t.notMatch(only.json().error, /not versioned/)
  t.equal((await app.inject({ url: '/v2/models/clf/versions/3/ready' })).statusCode, 404, 'a version with no file is still unknown')
  const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json()
  t.same(index.filter((e: { name: string }) => e.name !== 'scaler').map((e: { name: string, version?: string, state: string }) => [e.name, e.version, e.state]),
    [['clf', '1', 'READY'], ['clf', '2', 'UNAVAILABLE'], ['only', '1', 'UNAVAILABLE']])
  t.match(index.find((e: { version?: string }) => e.version === '2').reason, /cannot load model 'clf' from clf\/2\/model\.onnx/)
})

t.test('ONNX Runtime\'s source file, line and C++ function in a load failure are not shown to clients (ready, index, load); its reason is', async t => {
  // An empty model file: ONNX Runtime's message names /onnxruntime_src/.../model.cc:187 and onnxruntime::Model::Model(...).
  const { app, dir } = await oipApp(t, { 'mlp.onnx': addModel(), 'empty.onnx': '' }, { repositoryApi: true })
  writeFileSync(join(dir, 'later.onnx'), '')
  const answers = [
    ['ready', await app.inject({ url: '/v2/models/empty/ready' })],
    ['index', await app.inject({ method: 'POST', url: '/v2/repository/index' })],
    ['load', await app.inject({ method: 'POST', url: '/v2/repository/models/later/load' })],
  ] as const
  for (const [what, res] of answers) {
    t.match(res.body, /from (empty|later)\.onnx: Load model from (empty|later)\.onnx failed: ?ModelProto does not have a graph\./, `${what}: the reason is kept`)
    t.notMatch(res.body, /onnxruntime_src|\.cc:\d|onnxruntime::/, `${what}: no source location or C++ function: ${res.body.slice(0, 300)}`)
  }
})
