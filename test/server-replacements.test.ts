// Replacing workers, with a real cluster (the tests of this area added after
// test/server-operator.test.ts had grown near tap's timeout for one file): a
// second HUP while the first one's replacement boots, a worker that dies
// while its replacement boots, TTOU and HUP during a TERM drain.
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { arbiterLog, GATED_IMPORT_APP, gatedCluster, SLOW_APP, startReady, startServer, within, workerPids } from './fixtures/server.ts'

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

t.test('cluster: TTOU and HUP during a TERM drain are ignored, and say so (no worker is told to go, none is replaced)', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--graceful-timeout', '30'])
  server.proc.kill('SIGTERM')
  await server.waitFor(l => l.msg === 'stopping workers')
  server.proc.kill('SIGTTOU')
  server.proc.kill('SIGHUP')
  const exit = await within(server.exited, 15_000)
  if (exit === 'still running') for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL')
  t.same(exit, { code: 0, signal: null }, 'exit 0 once the workers drained')
  const said = server.lines.filter(l => l.role === 'arbiter' && /^SIG(TTOU|HUP)/.test(l.msg ?? '')).map(l => l.msg)
  t.same(said.sort(), ['SIGHUP: stopping; ignored', 'SIGTTOU: stopping; ignored'], `each is logged as ignored, not as a removal or a reload (${said.join('; ')})`)
  t.equal(server.lines.filter(l => l.msg === 'worker ready').length, 2, 'no worker forked')
})

t.test('cluster, --workers 2: a second HUP stops the first one\'s replacement still booting (one replacement boots at a time); the old workers serve until replaced', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  await Promise.all([importing(1), importing(2)])
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready')
  const hups = () => server.lines.filter(l => l.msg === 'SIGHUP: replacing workers one by one').length
  server.proc.kill('SIGHUP')
  await importing(3)
  server.proc.kill('SIGHUP')
  await server.waitFor(() => hups() === 2)
  await importing(4)
  const stopped = await within(server.waitFor(l => l.msg === 'worker exited' && l.worker === 3, 12_000), 10_000).catch(() => undefined)
  t.ok(stopped && stopped !== 'still running' && stopped.code === 0 && stopped.signal === null, `worker 3, the first HUP's replacement, is stopped while booting (exit 0); arbiter: ${arbiterLog(server)}`)
  t.equal(await health(), 200, 'workers 1 and 2 serve meanwhile')
  // The second HUP's replacements, one at a time.
  open(4)
  await server.waitFor(l => l.msg === 'worker ready' && l.worker === 4)
  await importing(5)
  open(5)
  await server.waitFor(l => l.msg === 'worker ready' && l.worker === 5)
  for (let id = 1; id <= 8; id++) open(id)
  let left = workerPids(server.proc.pid!)
  for (let i = 0; i < 150 && left.length !== 2; i++) left = (await new Promise(resolve => setTimeout(resolve, 100)), workerPids(server.proc.pid!))
  const readyPid = (id: number) => server.lines.find(l => l.msg === 'worker ready' && l.worker === id)?.workerPid
  t.same(left.sort(), [readyPid(4), readyPid(5)].sort(), `workers 4 and 5, the second HUP's, left; arbiter: ${arbiterLog(server)}`)
  t.notOk(server.lines.some(l => l.msg === 'worker ready' && l.worker === 3), 'worker 3 never served')
  const forked = [...new Set(server.lines.filter(l => l.msg === 'importing the app (gated)').map(l => l.worker as number))].sort((a, b) => a - b)
  t.same(forked, [1, 2, 3, 4, 5], 'one replacement per old worker after the second HUP')
  t.equal(await health(), 200, 'and they serve')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --workers 2: a worker that dies while its HUP replacement boots, whose replacement then dies too, is started again (the server does not stay a worker short)', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  await Promise.all([importing(1), importing(2)])
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready')
  const ready1 = server.lines.find(l => l.msg === 'worker ready' && l.worker === 1)!
  server.proc.kill('SIGHUP')
  const booting3 = await importing(3)
  // Worker 1 dies (the OOM killer, say) while worker 3 boots to replace it: worker 3 stands for it.
  process.kill(ready1.workerPid, 'SIGKILL')
  await server.waitFor(l => l.msg === 'worker exited' && l.worker === 1)
  // Then worker 3 dies while booting: nobody stands for worker 1 any more.
  process.kill(booting3.pid, 'SIGKILL')
  await server.waitFor(l => l.msg === 'worker exited' && l.worker === 3)
  for (let id = 1; id <= 8; id++) open(id)
  // The HUP goes on with worker 2, which drains once its replacement is ready.
  await server.waitFor(l => l.msg === 'worker exited' && l.worker === 2, 30_000)
  let live = workerPids(server.proc.pid!)
  for (let i = 0; i < 100 && !(live.length === 2 && server.lines.filter(l => l.msg === 'worker ready' && live.includes(l.workerPid)).length === 2); i++) {
    live = (await new Promise(resolve => setTimeout(resolve, 100)), workerPids(server.proc.pid!))
  }
  t.equal(live.length, 2, `two workers again (${live.join(', ')}); arbiter: ${arbiterLog(server)}`)
  t.equal(server.lines.filter(l => l.msg === 'worker ready' && live.includes(l.workerPid)).length, 2, 'both ready')
  t.notOk(server.lines.some(l => /the old worker keeps serving/.test(l.msg ?? '') && l.worker === 3), 'worker 3\'s death does not claim that worker 1, dead, keeps serving')
  t.equal(await health(), 200, 'and they serve')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

/** GET /metrics on a connection of its own (the primary hands connections to the workers in turn): the states gauge, by state. */
function lifecycleStates (port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: '/metrics', agent: false }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', chunk => { text += chunk }).on('end', () => {
        const states: Record<string, number> = { status: res.statusCode! }
        for (const m of text.matchAll(/^onnx_serve_lifecycle_state\{state="(\w+)"\} (\S+)$/gm)) states[m[1]] = Number(m[2])
        resolve(states)
      })
    }).on('error', reject).end()
  })
}

t.test('cluster: /metrics counts the workers still booting as loading (the primary counts them: they cannot answer yet)', async t => {
  const { server, importing, open } = gatedCluster(t)
  await Promise.all([importing(1), importing(2)])
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready')
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at http://127.0.0.1:'))
  const port = Number(/:(\d+)$/.exec(listening.msg)![1])
  t.same(await lifecycleStates(port), { status: 200, loading: 0, ready: 2, draining: 0, failed: 0 }, 'two workers ready')
  server.proc.kill('SIGTTIN')
  await importing(3)
  const during = [await lifecycleStates(port), await lifecycleStates(port)]
  t.same(during, [1, 2].map(() => ({ status: 200, loading: 1, ready: 2, draining: 0, failed: 0 })), 'the TTIN\'s worker, booting, is loading, whichever worker answers')
  open(3)
  await server.waitFor(l => l.msg === 'worker ready' && l.worker === 3)
  t.same(await lifecycleStates(port), { status: 200, loading: 0, ready: 3, draining: 0, failed: 0 }, 'then ready')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

/** POST /scale on a connection of its own (the primary hands connections to the workers in turn): the status. */
function scale (port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/scale', agent: false, headers: { 'content-type': 'application/json' } }, res => {
      res.resume().on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
    req.end(JSON.stringify({ rows: [[5.1, 3.5, 1.4, 0.2]] }))
  })
}

t.test('cluster, --max-requests: a worker whose replacement failed to load asks again --max-requests later, and is recycled then', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--max-requests', '4', '--max-requests-jitter', '0'])
  const original = server.lines.filter(l => l.msg === 'worker ready').map(l => l.worker as number)
  // Its replacement will not load.
  const scaler = scalerModel()
  writeFileSync(join(dir, 'scaler.onnx'), 'garbage, not an ONNX protobuf')
  const asking = () => server.lines.filter(l => l.msg === 'max requests reached: asking to be replaced')
  // One request at a time, until a worker asks: only that one.
  for (let i = 0; i < 20 && asking().length === 0; i++) {
    t.equal(await scale(server.port), 200)
    await sleep(200)
  }
  t.equal(asking().length, 1, 'one worker asked to be replaced')
  const recycled = asking()[0].worker as number
  const failed = await server.waitFor(l => l.msg === 'a replacement worker failed to boot: the old worker keeps serving')
  await server.waitFor(l => l.msg === 'worker exited' && l.worker === failed.worker)
  // The models are fine again: the next replacement loads.
  writeFileSync(join(dir, 'scaler.onnx'), scaler)
  const gone = () => server.lines.some(l => l.msg === 'worker exited' && l.worker === recycled)
  for (let i = 0; i < 24 && !gone(); i++) {
    t.equal(await scale(server.port), 200)
    await sleep(100)
  }
  const exited = await within(server.waitFor(l => l.msg === 'worker exited' && l.worker === recycled), 15_000).catch(() => 'not exited')
  t.match(exited, { code: 0, signal: null }, `worker ${recycled} (of ${original.join(', ')}) asked again and was replaced, then drained; arbiter: ${arbiterLog(server)}`)
  t.ok(asking().filter(l => l.worker === recycled).length >= 2, 'it asked again')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --max-requests: asks that come soon after a failed replacement are ignored for a back-off, not a replacement booting after another', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--max-requests', '1', '--max-requests-jitter', '0'])
  writeFileSync(join(dir, 'scaler.onnx'), 'garbage, not an ONNX protobuf')
  // Every request is an ask (--max-requests 1), as on a busy server; every replacement fails to load.
  const ignored = () => server.lines.find(l => l.msg === 'a worker at --max-requests asks again soon after its replacement failed: ignored (back-off)')
  const failures = () => server.lines.filter(l => l.msg === 'a replacement worker failed to boot: the old worker keeps serving').length
  const started = performance.now()
  const statuses = new Set<number>()
  while (!ignored() && performance.now() - started < 12_000) {
    statuses.add(await scale(server.port))
    await sleep(20)
  }
  t.same([...statuses], [200], 'the old workers serve')
  t.ok(ignored(), `an ask during the back-off is ignored, and said so; ${failures()} replacements failed; arbiter: ${arbiterLog(server)}`)
  t.match(ignored(), { retryInMs: Number }, 'with the time left')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster: a worker added once the server is up (TTIN) that fails to load stops the server (exit 3) with a drain: the requests in flight finish', async t => {
  // About 2 s a run on a loaded 2-core machine: it outlasts worker 3's failed load.
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(250) })
  const gates = mkdtempSync(join(tmpdir(), 'onnx-serve-gates-'))
  t.teardown(() => rmSync(gates, { recursive: true, force: true }))
  const server = startServer(t, ['--models-dir', dir, '--app', GATED_IMPORT_APP, '--workers', '2', '--threads', '1'], { env: { GATE_DIR: gates } })
  t.teardown(() => { for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL') })
  const open = (id: number) => writeFileSync(join(gates, String(id)), '')
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready')
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at http://127.0.0.1:'))
  const port = Number(/:(\d+)$/.exec(listening.msg)![1])
  writeFileSync(join(dir, 'scaler.onnx'), 'garbage, not an ONNX protobuf')
  server.proc.kill('SIGTTIN')
  await server.waitFor(l => l.msg === 'importing the app (gated)' && l.worker === 3)
  // A slow request in flight in a worker that serves, then worker 3 goes on and fails to load.
  const slow = new Promise<{ status: number, body: string } | string>(resolve => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/slow', agent: false, headers: { 'content-type': 'application/json' } }, res => {
      let body = ''
      res.setEncoding('utf8').on('data', chunk => { body += chunk }).on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', (err: Error) => resolve(err.message))
    req.end(JSON.stringify({ x: 1 }))
  })
  await sleep(300)
  open(3)
  await server.waitFor(l => l.msg === 'worker failed to boot: stopping the server')
  const answer = await slow
  t.match(answer, { status: 200 }, `the request in flight is answered (${JSON.stringify(answer)})`)
  t.same(await within(server.exited, 15_000), { code: 3, signal: null }, 'exit 3, a failed boot')
  t.match(server.stderr(), /error: worker failed to boot: cannot load model 'scaler'/)
})
