// Replacements and boots that fail once the server is up, with a real
// cluster (split from test/server-replacements.test.ts for its time): a
// --max-requests worker whose replacement failed asks again, with a back-off;
// a TTIN's worker that fails to load stops the server with a drain.
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { arbiterLog, GATED_IMPORT_APP, SLOW_APP, startReady, startServer, within, workerPids } from './fixtures/server.ts'

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

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
  // A failed replacement still exiting (code 3) as the TERM comes would make the server exit 1.
  const failedIds = () => server.lines.filter(l => l.msg === 'a replacement worker failed to boot: the old worker keeps serving').map(l => l.worker)
  const exitedIds = () => new Set(server.lines.filter(l => l.msg === 'worker exited').map(l => l.worker))
  for (let i = 0; i < 100 && failedIds().some(id => !exitedIds().has(id)); i++) await sleep(100)
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
