// server.ts as a real process, as an operator meets it: start-up errors
// (a bad --app, a port in use, an IPv6 host) and signals (TTIN/TTOU alone, a
// HUP during the import, INT during a drain, TERM with --graceful-timeout 0,
// USR1 and USR2), and scripts/start.sh. TTOU and HUP while workers boot are in
// test/server-ttou.test.ts. Files of their own: together, or with
// test/server.test.ts's, the tests would outlast tap's timeout for one file.

import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { childEnv, CLOSING_LOAD_APP, GATED_IMPORT_APP, HUNG_CLOSE_APP, post, ROOT, SLOW_APP, SLOW_BUILD_APP, SLOW_IMPORT_APP, startReady, startServer, within, workerPids } from './fixtures/server.ts'

const tsx = [process.execPath, '--import', 'tsx', 'server.ts']
const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }

t.test('an --app that is not a module exits 2 with one line naming it, no stack trace', async t => {
  for (const app of ['./no-such-app.ts', './README.md', './models']) {
    const res = spawnSync(tsx[0], [...tsx.slice(1), '--app', app, '--port', '0'], { cwd: ROOT, encoding: 'utf8', env: childEnv() })
    t.equal(res.status, 2, app)
    t.match(res.stderr, /^error: cannot load the app \(--app \/.*\): .*\n$/, `${app}: ${res.stderr}`)
    t.equal(res.stderr.split('\n').length, 2, `${app}: one line`)
  }
  // An app that is there but whose own import is missing is not a bad --app: its stack is kept.
  const res = spawnSync(tsx[0], [...tsx.slice(1), '--app', './test/fixtures/missing-import-app.ts', '--port', '0'], { cwd: ROOT, encoding: 'utf8', env: childEnv() })
  t.not(res.status, 2, 'not a usage error')
  t.notMatch(res.stderr, /cannot load the app/)
  t.match(res.stderr, /no-such-package-for-the-test[\s\S]*\n\s+at /, 'the error and its stack')
})

/** A port held by another listener for the test's length. */
async function heldPort (t: Test): Promise<number> {
  const holder: NetServer = createServer()
  await new Promise<void>(resolve => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  return (holder.address() as AddressInfo).port
}

t.test('a port in use: one line on stderr and exit 1, alone and with workers (before any worker boots)', async t => {
  const port = await heldPort(t)
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  for (const workers of ['1', '2']) {
    const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', workers, '--port', String(port)])
    t.same(await server.exited, { code: 1, signal: null }, `--workers ${workers}: exit 1`)
    t.match(server.stderr(), new RegExp(`^error: cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE[^\\n]*\\n$`), `--workers ${workers}: ${server.stderr()}`)
    t.notOk(server.lines.some(l => l.msg === 'ready: models loaded' || l.msg === 'starting workers'), `--workers ${workers}: no model was loaded, no worker forked`)
  }
})

t.test('an IPv6 host written in brackets is listened on', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP, '--host', '[::1]'])
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at '))
  const port = Number(/^Server listening at http:\/\/\[::1\]:(\d+)$/.exec(listening.msg)?.[1])
  t.ok(port > 0, listening.msg)
  t.equal((await fetch(`http://[::1]:${port}/health/live`)).status, 200)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('TTIN and TTOU to a lone server are ignored, not a stop (their default action)', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP])
  for (const signal of ['SIGTTIN', 'SIGTTOU'] as const) {
    server.proc.kill(signal)
    await server.waitFor(l => l.msg === `${signal} ignored: adding and removing workers needs --workers >= 2`, 5000)
    const res = await fetch(`http://127.0.0.1:${server.port}/health/live`, { signal: AbortSignal.timeout(5000) })
    t.equal(res.status, 200, `still serving after ${signal}`)
  }
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('a HUP while the app is still being imported does not kill the server', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_IMPORT_APP])
  await server.waitFor(l => l.msg === 'importing the app')
  server.proc.kill('SIGHUP')
  await server.waitFor(l => l.msg === 'ready: models loaded')
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at '))
  t.equal((await fetch(`${listening.msg.slice('Server listening at '.length)}/health/ready`)).status, 200)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('TERM, INT or QUIT while the app is imported or built stops the server, exit 0 (not ended by the signal)', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const phases = [{ app: SLOW_IMPORT_APP, msg: 'importing the app' }, { app: SLOW_BUILD_APP, msg: 'building the app' }]
  await Promise.all(phases.flatMap(({ app, msg }) => (['SIGTERM', 'SIGINT', 'SIGQUIT'] as const).map(async signal => {
    const server = startServer(t, ['--models-dir', dir, '--app', app])
    await server.waitFor(l => l.msg === msg)
    server.proc.kill(signal)
    t.same(await within(server.exited, 10_000), { code: 0, signal: null }, `${signal} while ${msg}: exit 0`)
    t.ok(server.lines.some(l => l.signal === signal && l.msg === 'stopped while starting: nothing served yet'), `${signal} while ${msg}: the stop is logged`)
    t.notOk(server.lines.some(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at ')), `${signal} while ${msg}: never listened`)
    t.equal(server.stderr(), '', `${signal} while ${msg}: nothing on stderr (no ONNX Runtime abort)`)
  })))
})

t.test('cluster: TERM or INT while the workers import the app: each worker exits 0, and so does the primary', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  // The workers' imports wait for gates never opened: with the slow import's
  // fixed second, a loaded machine could start the second worker more than
  // the hold's window after the first (a fresh-clone CI run read one line).
  const gates = mkdtempSync(join(tmpdir(), 'onnx-serve-gates-'))
  t.teardown(() => rmSync(gates, { recursive: true, force: true }))
  await Promise.all((['SIGTERM', 'SIGINT'] as const).map(async signal => {
    const server = startServer(t, ['--models-dir', dir, '--app', GATED_IMPORT_APP, '--workers', '2', '--threads', '1'], { env: { GATE_DIR: gates } })
    await server.waitFor(l => l.msg === 'importing the app (gated)' && server.lines.filter(m => m.msg === l.msg).length === 2)
    server.proc.kill(signal)
    t.same(await within(server.exited, 10_000), { code: 0, signal: null }, `${signal}: the primary exits 0`)
    const exits = server.lines.filter(l => l.msg === 'worker exited').map(l => [l.code, l.signal])
    t.same(exits, [[0, null], [0, null]], `${signal}: each worker exits 0, not ended by the signal`)
    t.equal(server.lines.filter(l => l.msg === 'stopped while starting: nothing served yet' && l.signal === signal).length, 2, `${signal}: and says so`)
  }))
})

t.test('SIGTERM while the models load: exit 0, and no model reported as failed (alone and with workers)', async t => {
  const dir = modelsDir(t, {})
  for (const workers of ['1', '2']) {
    const server = startServer(t, ['--models-dir', dir, '--app', CLOSING_LOAD_APP, '--workers', workers])
    await server.waitFor(l => l.msg === 'loading until the app closes' && server.lines.filter(m => m.msg === l.msg).length === Number(workers))
    server.proc.kill('SIGTERM')
    t.same(await server.exited, { code: 0, signal: null }, `--workers ${workers}: exit 0`)
    t.equal(server.stderr(), '', `--workers ${workers}: nothing on stderr`)
    t.notOk(server.lines.some(l => l.msg === 'models failed to load' || /failed to boot/.test(l.msg ?? '')), `--workers ${workers}: no model failure logged`)
    t.ok(server.lines.some(l => l.msg === 'stopped while loading the models'), `--workers ${workers}: the stop is logged as such`)
  }
})

t.test('cluster: INT while the workers drain after a TERM stops them at once', async t => {
  // A request that computes for 10 s or more, which the drain would wait for.
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1000) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--graceful-timeout', '60'])
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  t.teardown(() => { for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  const inFlight = post(server.port, '/slow', { x: 1 }).catch((err: Error) => err)
  await server.waitFor(l => l.req?.url === '/slow')
  server.proc.kill('SIGTERM')
  await server.waitFor(l => l.msg === 'draining: finishing in-flight requests' && server.lines.filter(m => m.msg === l.msg).length === 2)
  const started = Date.now()
  server.proc.kill('SIGINT')
  const exit = await within(server.exited, 5000)
  t.same(exit, { code: 0, signal: null }, `the primary exited ${Date.now() - started} ms after INT, not after the request or the graceful timeout`)
  t.type(await inFlight, Error, 'the request in flight was cut')
})

t.test('USR1 and USR2 (gunicorn: reopen logs, upgrade) neither open the inspector nor end the server, alone or with workers', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  for (const workers of ['1', '2']) {
    const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', workers, '--threads', '1'])
    for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) {
      server.proc.kill(signal)
      await server.waitFor(l => l.signal === signal && /ignored/.test(l.msg), 5000)
      const res = await fetch(`http://127.0.0.1:${server.port}/health/ready`, { signal: AbortSignal.timeout(5000) })
      t.equal(res.status, 200, `--workers ${workers}: still serving after ${signal}`)
    }
    t.notMatch(server.stderr(), /Debugger listening/, `--workers ${workers}: no inspector opened`)
    server.proc.kill('SIGTERM')
    t.same(await server.exited, { code: 0, signal: null }, `--workers ${workers}: TERM still drains, exit 0`)
  }
})

t.test('scripts/start.sh without nproc: no shell errors; the cores from getconf, and no GC flag without either', async t => {
  // A PATH holding only what the script needs besides nproc.
  const bin = mkdtempSync(join(tmpdir(), 'onnx-serve-path-'))
  t.teardown(() => rmSync(bin, { recursive: true, force: true }))
  symlinkSync(process.execPath, join(bin, 'node'))
  symlinkSync(spawnSync('sh', ['-c', 'command -v dirname'], { encoding: 'utf8' }).stdout.trim(), join(bin, 'dirname'))
  const res = spawnSync('/bin/sh', ['scripts/start.sh'], {
    cwd: ROOT, encoding: 'utf8', env: childEnv({ PATH: bin, SERVER_ENTRY: '-p process.execArgv.join(",")' }),
  })
  t.equal(res.stderr, '', 'nothing on stderr')
  t.equal(res.status, 0)
  t.match(res.stdout, /^--no-allocation-site-pretenuring,--heap-growing-percent=50,--max-semi-space-size=8,-p,/)
  // With getconf alone (macOS), its count of cores is used: 2 gives the GC flag.
  const getconf = join(bin, 'getconf')
  writeFileSync(getconf, '#!/bin/sh\necho 2\n')
  chmodSync(getconf, 0o755)
  const mac = spawnSync('/bin/sh', ['scripts/start.sh'], {
    cwd: ROOT, encoding: 'utf8', env: childEnv({ PATH: bin, SERVER_ENTRY: '-p process.execArgv.join(",")' }),
  })
  t.equal(mac.stderr, '', 'nothing on stderr')
  t.match(mac.stdout, /--single-threaded-gc/, 'getconf counted 2 cores')
})

t.test('cluster: TTIN during a TERM drain forks no worker: exit 0 once the workers drained', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--graceful-timeout', '30'])
  server.proc.kill('SIGTERM')
  await server.waitFor(l => l.msg === 'stopping workers')
  server.proc.kill('SIGTTIN')
  const exit = await within(server.exited, 15_000)
  if (exit === 'still running') for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL')
  t.same(exit, { code: 0, signal: null }, 'exit 0, without waiting for the graceful timeout')
  t.equal(server.lines.filter(l => l.msg === 'worker ready').length, 2, 'no third worker')
})


t.test('cluster: a HUP whose replacements fail to load their models leaves the old workers serving', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1'])
  writeFileSync(join(dir, 'scaler.onnx'), 'garbage, not an ONNX protobuf')
  server.proc.kill('SIGHUP')
  const failed = (l: Record<string, any>) => l.msg === 'a replacement worker failed to boot: the old worker keeps serving'
  await server.waitFor(l => failed(l) && server.lines.filter(failed).length === 2)
  await server.waitFor(l => l.msg === 'worker exited' && server.lines.filter(m => m.msg === 'worker exited').length === 2)
  t.equal(server.proc.exitCode, null, 'the server still runs')
  t.match(server.stderr(), /error: a replacement worker failed to boot \(the old one keeps serving\): cannot load model 'scaler'/)
  for (let i = 0; i < 4; i++) t.equal((await post(server.port, '/scale', { rows: [[5.1, 3.5, 1.4, 0.2]] })).status, 200, 'the old workers serve')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('--graceful-timeout 0: an idle server exits 0 at once on TERM; one with a request in flight stops it at once', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1000) })
  const idle = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--graceful-timeout', '0'])
  // A keep-alive connection left idle by an answered request is no request in flight.
  t.equal((await post(idle.port, '/scale', { rows: [[5.1, 3.5, 1.4, 0.2]] })).status, 200)
  idle.proc.kill('SIGTERM')
  t.same(await within(idle.exited, 5000), { code: 0, signal: null }, 'idle: exit 0')
  t.notOk(idle.lines.some(l => l.msg?.startsWith('graceful timeout reached')), 'idle: no request reported in flight')

  const busy = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--graceful-timeout', '0'])
  const inFlight = post(busy.port, '/slow', { x: 1 }).catch((err: Error) => err)
  await busy.waitFor(l => l.req?.url === '/slow')
  busy.proc.kill('SIGTERM')
  // Killed outright: the model is computing, which process.exit() cannot interrupt.
  t.same(await within(busy.exited, 5000), { code: null, signal: 'SIGKILL' }, 'busy: stopped at once')
  t.type(await inFlight, Error, 'the request in flight was cut')
})

t.test('cluster, --graceful-timeout 0: idle workers drain and the primary exits 0; a request in flight is cut and the primary exits 1', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1000) })
  const idle = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--graceful-timeout', '0'])
  t.equal((await post(idle.port, '/scale', { rows: [[5.1, 3.5, 1.4, 0.2]] })).status, 200)
  idle.proc.kill('SIGTERM')
  t.same(await within(idle.exited, 10_000), { code: 0, signal: null }, 'idle: exit 0')
  t.notOk(idle.lines.some(l => l.msg === 'workers still running after the timeout: killing them'), 'idle: no worker killed')

  const busy = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--graceful-timeout', '0'])
  const inFlight = post(busy.port, '/slow', { x: 1 }).catch((err: Error) => err)
  await busy.waitFor(l => l.req?.url === '/slow')
  busy.proc.kill('SIGTERM')
  t.same(await within(busy.exited, 10_000), { code: 1, signal: null }, 'busy: exit 1')
  t.type(await inFlight, Error, 'the request in flight was cut')
})

t.test('--graceful-timeout: an idle server whose resource never finishes closing is stopped soon after the timeout, exit 1', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel() })
  for (const timeout of ['0', '0.5']) {
    const server = await startReady(t, ['--models-dir', dir, '--app', HUNG_CLOSE_APP, '--graceful-timeout', timeout])
    server.proc.kill('SIGTERM')
    t.same(await within(server.exited, 5000), { code: 1, signal: null }, `--graceful-timeout ${timeout}: stopped`)
    t.ok(server.lines.some(l => l.msg?.startsWith('graceful timeout reached: closing has not finished')), 'and says why')
  }
})

t.test('--graceful-timeout: a model still computing for a client that left is stopped at the timeout, not waited for', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1000) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--graceful-timeout', '1'])
  // The client leaves: its response closes (no request in flight), but its run goes on in a thread.
  const client = new AbortController()
  const gone = fetch(`http://127.0.0.1:${server.port}/slow`, {
    method: 'POST', body: JSON.stringify({ x: 1 }), headers: { 'content-type': 'application/json' }, signal: client.signal,
  }).catch((err: Error) => err)
  await server.waitFor(l => l.req?.url === '/slow')
  await new Promise(resolve => setTimeout(resolve, 300))
  client.abort()
  await gone
  await new Promise(resolve => setTimeout(resolve, 300))
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 6000), { code: null, signal: 'SIGKILL' }, 'stopped at the graceful timeout')
})
