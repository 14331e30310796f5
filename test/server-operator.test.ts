// server.ts as a real process, as an operator meets it: start-up errors
// (a bad --app, a port in use, an IPv6 host) and signals (TTIN/TTOU alone, a
// HUP during the import, TTOU and HUP while the workers boot, TTOU during a
// respawn's back-off or beside a booting worker, 'all workers ready' after a
// TTOU at start-up, a TTOU beside the only ready worker during a HUP, a HUP
// whose replacements outnumber a lowered target, a worker stopped as it
// finishes booting, INT during a drain, TERM
// with --graceful-timeout 0, USR1 and USR2), and
// scripts/start.sh. A file of its own: with test/server.test.ts's, the tests
// would outlast tap's timeout for one file.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { arbiterLog, childEnv, CLOSING_LOAD_APP, GATED_IMPORT_APP, gatedCluster, HUNG_CLOSE_APP, post, ROOT, SLOW_APP, SLOW_BUILD_APP, SLOW_IMPORT_APP, startReady, startServer, TERM_ENDS_LOAD_APP, within, workerPids } from './fixtures/server.ts'

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
  await Promise.all((['SIGTERM', 'SIGINT'] as const).map(async signal => {
    const server = startServer(t, ['--models-dir', dir, '--app', SLOW_IMPORT_APP, '--workers', '2', '--threads', '1'])
    await server.waitFor(l => l.msg === 'importing the app' && server.lines.filter(m => m.msg === l.msg).length === 2)
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

t.test('cluster: TTOU while every worker boots removes one of them at once, not the first one ready', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_IMPORT_APP, '--workers', '2', '--threads', '1'])
  t.teardown(() => { for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL') })
  await server.waitFor(l => l.msg === 'importing the app' && server.lines.filter(m => m.msg === l.msg).length === 2)
  server.proc.kill('SIGTTOU')
  const said = await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
  t.equal(said.msg, 'SIGTTOU: removing a worker', 'a booting worker is removed at once')
  const allReady = await server.waitFor(l => l.msg === 'all workers ready')
  t.equal(allReady.workers, 1, '\'all workers ready\' for the one left')
  const exited = await server.waitFor(l => l.msg === 'worker exited', 15_000)
  t.same([exited.code, exited.signal], [0, null], 'the worker removed exited 0')
  t.notOk(server.lines.some(l => l.msg === 'worker ready' && l.worker === exited.worker), 'without having been ready (the first one ready stays)')
  let left = workerPids(server.proc.pid!)
  for (let i = 0; i < 50 && left.length !== 1; i++) left = (await new Promise(resolve => setTimeout(resolve, 100)), workerPids(server.proc.pid!))
  t.equal(left.length, 1, `one worker left (${left.join(', ')})`)
  t.notOk(server.lines.some(l => /stopping the server/.test(l.msg ?? '')), 'no boot failure')
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at '))
  t.equal((await fetch(`${listening.msg.slice('Server listening at '.length)}/health/ready`)).status, 200, 'and it serves')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

// A TTOU and a HUP while the workers boot. A TTOU removes a booting worker
// that is no replacement at once; when every live worker booting is a HUP's
// replacement (two HUPs during the boot), it lowers the target with none to
// remove, and the first worker ready beyond it goes then. A replacement
// counts for the worker it replaces, which is off the count. Each order
// must end with one worker serving, one that was ready, every worker
// removed having exited 0 (earlier code left 2 workers serving for a target
// of 1 in some: the workers ready beyond the target were replacements, or
// workers being replaced, whose removal lowered nothing; or an old worker
// came back when its replacement died).
// The steps: 'TTOU n', worker n (booting) is removed at once; 'TTOU', none
// is removed yet (every booting worker a replacement); 'HUP n' (n: the
// first replacement it forks); 'boot n', worker n's import goes on, until
// it is ready; 'kill n', worker n is killed while it imports. Cluster worker
// ids: 1 and 2 at start, then 3, 4, ... in the order forked.
const TTOU_HUP_ORDERS: Array<{ name: string, steps: string[] }> = [
  { name: 'TTOU, HUP; only the replacement boots', steps: ['TTOU 1', 'HUP 3', 'boot 3'] },
  { name: 'HUP, TTOU; only the replacement boots', steps: ['HUP 3', 'TTOU 2', 'boot 3'] },
  { name: 'TTOU, HUP; the worker being replaced boots before its replacement', steps: ['TTOU 1', 'HUP 3', 'boot 2', 'boot 3'] },
  { name: 'HUP, TTOU; the worker being replaced boots before its replacement', steps: ['HUP 3', 'TTOU 2', 'boot 1', 'boot 3'] },
  { name: 'TTOU, two HUPs; the second HUP\'s replacement dies booting', steps: ['TTOU 1', 'HUP 3', 'boot 3', 'HUP 4', 'kill 4'] },
  // The second HUP stops the first one's replacement (3) still booting, and replaces worker 1 with 4.
  { name: 'two HUPs, TTOU; the second HUP stops the first one\'s replacement, the TTOU removes the other booting worker', steps: ['HUP 3', 'HUP 4', 'TTOU 2', 'boot 4'] },
  { name: 'two HUPs, TTOU; the second HUP stops the first one\'s replacement, and its own dies', steps: ['HUP 3', 'HUP 4', 'TTOU 2', 'kill 4', 'boot 1'] },
]
for (const order of TTOU_HUP_ORDERS) {
  t.test(`cluster, --workers 2: TTOU and HUP while the workers boot leave one worker (${order.name})`, async t => {
    const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
    const gates = mkdtempSync(join(tmpdir(), 'onnx-serve-gates-'))
    t.teardown(() => rmSync(gates, { recursive: true, force: true }))
    const server = startServer(t, ['--models-dir', dir, '--app', GATED_IMPORT_APP, '--workers', '2', '--threads', '1'], { env: { GATE_DIR: gates } })
    t.teardown(() => { for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL') })
    const importing = (id: number) => server.waitFor(l => l.msg === 'importing the app (gated)' && l.worker === id)
    const open = (id: number) => writeFileSync(join(gates, String(id)), '')
    await Promise.all([importing(1), importing(2)])
    const killed: number[] = []
    for (const step of order.steps) {
      const [what, n] = step.split(' ') as [string, string | undefined]
      const id = Number(n)
      // Each step is seen done in the log before the next one.
      if (what === 'TTOU') {
        server.proc.kill('SIGTTOU')
        const said = await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
        if (n === undefined) t.equal(said.msg, 'SIGTTOU: no worker ready yet: the first one ready beyond the target will be removed', 'TTOU: none removed yet')
        else t.same([said.msg, said.worker], ['SIGTTOU: removing a worker', id], `TTOU: the booting worker ${id} is removed at once`)
      } else if (what === 'HUP') {
        const hups = server.lines.filter(l => l.msg === 'SIGHUP: replacing workers one by one').length
        server.proc.kill('SIGHUP')
        await server.waitFor(l => l.msg === 'SIGHUP: replacing workers one by one' && server.lines.filter(m => m.msg === l.msg).length === hups + 1)
        await importing(id)
      } else if (what === 'boot') {
        open(id)
        await server.waitFor(l => l.msg === 'worker ready' && l.worker === id)
      } else if (what === 'kill') {
        process.kill((await importing(id)).pid, 'SIGKILL')
        killed.push(id)
        await server.waitFor(l => l.msg === 'worker exited' && l.worker === id)
      }
    }
    // Whatever is still booting may go on (a worker drained while importing exits at once).
    for (let id = 1; id <= 8; id++) open(id)
    let left = workerPids(server.proc.pid!)
    for (let i = 0; i < 150 && left.length !== 1; i++) left = (await new Promise(resolve => setTimeout(resolve, 100)), workerPids(server.proc.pid!))
    t.equal(left.length, 1, `one worker left (${left.join(', ')}); arbiter: ${server.lines.filter(l => l.role === 'arbiter').map(l => `${l.msg} ${l.worker ?? ''}`).join('; ')}`)
    // Every worker forked but the one left has exited (its 'exit' may come after pgrep stops listing it).
    const forked = new Set(server.lines.filter(l => l.msg === 'importing the app (gated)').map(l => l.worker)).size
    const exited = (l: Record<string, any>) => l.msg === 'worker exited'
    await server.waitFor(() => server.lines.filter(exited).length === forked - 1)
    const removed = server.lines.filter(l => exited(l) && !killed.includes(l.worker))
    t.ok(removed.every(l => l.code === 0 && l.signal === null), `every worker removed drained (exit 0): ${removed.map(l => `${l.worker}: ${l.code}/${l.signal}`).join(', ')}`)
    t.ok(server.lines.some(l => l.msg === 'worker ready' && l.workerPid === left[0]), 'the worker left is one that was ready')
    const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at '))
    t.equal((await fetch(`${listening.msg.slice('Server listening at '.length)}/health/ready`)).status, 200, 'and it serves')
    server.proc.kill('SIGTERM')
    t.same(await within(server.exited, 15_000), { code: 0, signal: null })
  })
}

t.test('cluster, --workers 2: a TTOU while a dead worker\'s respawn waits out its back-off removes nobody, and the respawn is dropped', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready')
  const keeper = server.lines.find(l => l.msg === 'worker ready' && l.worker === 1)!.workerPid as number
  // Worker 2 is killed, then each respawn while it imports: the back-off
  // doubles (0, 100, 200, ... ms) until it is well past a drain (0.5 s).
  let id = 2
  let pid = server.lines.find(l => l.msg === 'worker ready' && l.worker === 2)!.workerPid as number
  for (;;) {
    process.kill(pid, 'SIGKILL')
    const died = await server.waitFor(l => l.msg === 'worker died: replacing it' && l.worker === id)
    id++
    if (died.restartInMs >= 1600) break
    pid = (await importing(id)).pid
  }
  server.proc.kill('SIGTTOU')
  await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
  // What comes first: worker 1's exit (drained by the TTOU), the respawn
  // dropped, or forked (worker `id`) when the back-off ends.
  const seen = (what: string) => () => what
  const first = await Promise.race([
    server.waitFor(l => l.msg === 'worker exited' && l.worker === 1).then(seen('worker 1 exited'), seen('')),
    server.waitFor(l => l.msg?.startsWith('a dead worker\'s respawn is no longer needed')).then(seen('respawn dropped'), seen('')),
    importing(id).then(seen(`worker ${id} forked`), seen('')),
  ])
  t.equal(first, 'respawn dropped', 'the respawn is dropped once its back-off ends, worker 1 left in place')
  t.equal(await health(), 200, 'worker 1 still serves')
  // Nothing else is pending: the last worker killed was reaped (its exit was reported).
  const left = workerPids(server.proc.pid!)
  t.same(left, [keeper], `worker 1 left alone, for a target of 1 (${left.join(', ')}); arbiter: ${server.lines.filter(l => l.role === 'arbiter').map(l => `${l.msg} ${l.worker ?? ''}`).join('; ')}`)
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --workers 2: a TTOU while a TTIN\'s worker boots removes that one, not the only ready worker', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready')
  // The first TTOU leaves one worker; a TTIN forks worker 3, held in its import.
  const ttou = async (n: number) => {
    server.proc.kill('SIGTTOU')
    return server.waitFor(l => l.msg === 'SIGTTOU: removing a worker' && server.lines.filter(m => m.msg === l.msg).length === n)
  }
  const first = (await ttou(1)).worker as number
  await server.waitFor(l => l.msg === 'worker exited' && l.worker === first)
  const keeper = 3 - first
  server.proc.kill('SIGTTIN')
  await importing(3)
  const removed = await ttou(2)
  t.equal(removed.worker, 3, `the booting worker 3 is removed, not the ready worker ${keeper}`)
  const exited = await server.waitFor(l => l.msg === 'worker exited' && l.worker === removed.worker)
  t.same([exited.code, exited.signal], [0, null], 'it exits 0 at once')
  t.equal(await health(), 200, `worker ${keeper} still serves`)
  t.same(workerPids(server.proc.pid!), [server.lines.find(l => l.msg === 'worker ready' && l.worker === keeper)!.workerPid], `worker ${keeper} left alone`)
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --workers 2: a TTOU while both workers boot removes one of them at once; the other serves once ready, and none was ready in between', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  const pids = new Map(await Promise.all([1, 2].map(async id => [id, (await importing(id)).pid as number] as const)))
  server.proc.kill('SIGTTOU')
  const said = await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
  t.equal(said.msg, 'SIGTTOU: removing a worker', 'one of them is removed at once, not the first one ready')
  const removed = said.worker as number | undefined
  if (removed === 1 || removed === 2) {
    const keeper = 3 - removed
    t.ok(alive(pids.get(keeper)!), `worker ${keeper} still boots (held in its import)`)
    // It exits at once (serve.ts: a TERM during the import), or once its import ends.
    open(removed)
    const exited = await server.waitFor(l => l.msg === 'worker exited' && l.worker === removed)
    t.same([exited.code, exited.signal], [0, null], `worker ${removed} exits 0`)
    t.notOk(server.lines.some(l => l.msg === 'worker ready'), `without having been ready, nor worker ${keeper}`)
    t.ok(alive(pids.get(keeper)!) && !server.lines.some(l => l.msg === 'worker exited' && l.worker === keeper), `worker ${keeper} still boots`)
    t.equal(server.proc.exitCode, null, 'the server still runs: no boot failure')
    open(keeper)
  } else {
    // The old arbiter removed none yet: both boot.
    open(1)
    open(2)
  }
  const allReady = await server.waitFor(l => l.msg === 'all workers ready')
  t.equal(allReady.workers, 1, '\'all workers ready\', for one worker')
  let left = workerPids(server.proc.pid!)
  for (let i = 0; i < 150 && left.length !== 1; i++) left = (await new Promise(resolve => setTimeout(resolve, 100)), workerPids(server.proc.pid!))
  t.equal(left.length, 1, `one worker left (${left.join(', ')})`)
  // The first worker ready stayed: after it, one was always ready.
  t.same(server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid), left, 'the only worker ever ready is the one left')
  t.equal(await health(), 200, 'and it serves')
  t.notOk(server.lines.some(l => /stopping the server/.test(l.msg ?? '')), 'no boot failure logged')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --workers 3: a TTOU that stops a worker still booting at start-up does not keep \'all workers ready\' from being logged', async t => {
  const { server, importing, open, health } = gatedCluster(t, 3)
  await Promise.all([importing(1), importing(2), importing(3)])
  open(1)
  open(3)
  await Promise.all([1, 3].map(id => server.waitFor(l => l.msg === 'worker ready' && l.worker === id)))
  server.proc.kill('SIGTTOU')
  const removed = await server.waitFor(l => l.msg === 'SIGTTOU: removing a worker')
  t.equal(removed.worker, 2, 'the booting worker 2 is removed, not a ready one')
  // Workers 1 and 3, the target now, are all ready: no 'ready' is to come.
  const allReady = await server.waitFor(l => l.msg === 'all workers ready', 5000).catch(() => undefined)
  t.equal(allReady?.workers, 2, `'all workers ready' logged, for 2 workers; arbiter: ${server.lines.filter(l => l.role === 'arbiter').map(l => `${l.msg} ${l.worker ?? ''}`).join('; ')}`)
  open(2)
  const exited = await server.waitFor(l => l.msg === 'worker exited' && l.worker === 2)
  t.same([exited.code, exited.signal], [0, null], 'worker 2 exits 0')
  t.notOk(server.lines.some(l => l.msg === 'worker ready' && l.worker === 2), 'without having been ready')
  t.equal(await health(), 200, 'workers 1 and 3 serve')
  t.equal(workerPids(server.proc.pid!).length, 2, 'two workers left')
  t.equal(server.lines.filter(l => l.msg === 'all workers ready').length, 1, '\'all workers ready\' logged once')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

/** Polls the worker processes (up to 15 s) until one is left: the ones removed may still be draining. */
async function oneWorkerLeft (primary: number): Promise<number[]> {
  let left = workerPids(primary)
  for (let i = 0; i < 150 && left.length !== 1; i++) left = (await new Promise(resolve => setTimeout(resolve, 100)), workerPids(primary))
  return left
}

t.test('cluster, --workers 2: a TTOU after a HUP that replaces a worker still booting does not remove the only ready worker', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  await Promise.all([importing(1), importing(2)])
  open(2)
  await server.waitFor(l => l.msg === 'worker ready' && l.worker === 2)
  // The HUP replaces worker 1 first (still booting) with worker 3, held in its import.
  server.proc.kill('SIGHUP')
  await importing(3)
  // Worker 2 is the only one ready; worker 3, a replacement, and worker 1, being replaced, boot.
  server.proc.kill('SIGTTOU')
  const said = await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
  t.not(said.worker, 2, `worker 2, the only one ready, is not removed (${said.msg} ${said.worker ?? ''})`)
  t.equal(await health(), 200, 'worker 2 serves')
  open(3)
  const ready3 = await server.waitFor(l => l.msg === 'worker ready' && l.worker === 3)
  open(1)
  const left = await oneWorkerLeft(server.proc.pid!)
  t.same(left, [ready3.workerPid], `worker 3 left (${left.join(', ')}); arbiter: ${arbiterLog(server)}`)
  // The arbiter's own lines, in its order (a worker's lines share the pipe, and may come before or after it).
  const told2 = server.lines.findIndex(l => l.role === 'arbiter' && l.msg?.endsWith('removing a worker') && l.worker === 2)
  t.ok(told2 > server.lines.indexOf(ready3), `worker 2 was told to stop only once worker 3 was ready: one worker served all along; arbiter: ${arbiterLog(server)}`)
  await server.waitFor(() => server.lines.filter(l => l.msg === 'worker exited').length === 2)
  const exits = server.lines.filter(l => l.msg === 'worker exited')
  t.ok(exits.every(l => l.code === 0 && l.signal === null), `workers 1 and 2 exit 0: ${exits.map(l => `${l.worker}: ${l.code}/${l.signal}`).join(', ')}`)
  t.equal(await health(), 200, 'worker 3 serves')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --workers 2: a TTOU while two HUPs\' replacements boot: the second HUP stops the first one\'s, and replaces no more workers than the target', async t => {
  const { server, importing, open, health } = gatedCluster(t)
  await Promise.all([importing(1), importing(2)])
  const hup = async (n: number, replacement: number) => {
    server.proc.kill('SIGHUP')
    await server.waitFor(l => l.msg === 'SIGHUP: replacing workers one by one' && server.lines.filter(m => m.msg === l.msg).length === n)
    await importing(replacement)
  }
  // The first HUP replaces worker 1 with worker 3; the second stops worker 3, still booting, and replaces worker 1 with worker 4.
  await hup(1, 3)
  await hup(2, 4)
  const stopped = await server.waitFor(l => l.msg === 'worker exited' && l.worker === 3)
  t.same([stopped.code, stopped.signal], [0, null], 'worker 3, the first HUP\'s replacement, is stopped while booting')
  server.proc.kill('SIGTTOU')
  const said = await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
  t.same([said.msg, said.worker], ['SIGTTOU: removing a worker', 2], 'worker 2, booting and no replacement, is removed at once')
  // Worker 4 ready: worker 1, which it replaces, goes.
  open(4)
  await server.waitFor(l => l.msg === 'worker ready' && l.worker === 4)
  for (let id = 1; id <= 8; id++) open(id)
  const left = await oneWorkerLeft(server.proc.pid!)
  const forked = [...new Set(server.lines.filter(l => l.msg === 'importing the app (gated)').map(l => l.worker as number))].sort((a, b) => a - b)
  t.same(forked, [1, 2, 3, 4], `no more workers forked; arbiter: ${arbiterLog(server)}`)
  const ready4 = server.lines.find(l => l.msg === 'worker ready' && l.worker === 4)!
  t.same(left, [ready4.workerPid], `worker 4, the second HUP's, left (${left.join(', ')})`)
  await server.waitFor(() => server.lines.filter(l => l.msg === 'worker exited').length === forked.length - 1)
  const exits = server.lines.filter(l => l.msg === 'worker exited')
  t.ok(exits.every(l => l.code === 0 && l.signal === null), `every worker removed exits 0: ${exits.map(l => `${l.worker}: ${l.code}/${l.signal}`).join(', ')}`)
  t.equal(await health(), 200, 'and it serves')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster, --workers 2: a worker a TTOU stops just as it finishes booting does not listen while it drains, and is not counted ready', async t => {
  const dir = modelsDir(t, {})
  // Worker 2's load ends with the TERM, while it drains: it listened then and said 'ready'.
  const server = startServer(t, ['--models-dir', dir, '--app', TERM_ENDS_LOAD_APP, '--workers', '2', '--threads', '1'], { env: { HELD_WORKERS: '2' } })
  t.teardown(() => { for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL') })
  await server.waitFor(l => l.msg === 'worker ready' && l.worker === 1)
  const listening = await server.waitFor(l => l.worker === 1 && l.msg?.startsWith('Server listening at '))
  await server.waitFor(l => l.msg === 'loading until a TERM' && l.worker === 2)
  server.proc.kill('SIGTTOU')
  const removed = await server.waitFor(l => l.msg?.startsWith('SIGTTOU'))
  t.same([removed.msg, removed.worker], ['SIGTTOU: removing a worker', 2], 'the booting worker 2 is removed')
  await server.waitFor(l => l.msg === 'ready: models loaded' && l.worker === 2)
  const exited = await server.waitFor(l => l.msg === 'worker exited' && l.worker === 2)
  t.same([exited.code, exited.signal], [0, null], 'and drained: exit 0')
  t.notOk(server.lines.some(l => l.worker === 2 && l.msg?.startsWith('Server listening at ')), 'worker 2 never listened: its load ended in its drain')
  t.notOk(server.lines.some(l => l.msg === 'worker ready' && l.worker === 2), `worker 2 not logged as ready; arbiter: ${arbiterLog(server)}`)
  t.same(server.lines.filter(l => l.msg === 'all workers ready').map(l => l.workers), [1], '\'all workers ready\' once, for worker 1')
  const res = await fetch(`http://127.0.0.1:${Number(/:(\d+)$/.exec(listening.msg)![1])}/health/ready`, { signal: AbortSignal.timeout(5000) })
  t.equal(res.status, 200, 'worker 1 serves')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
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
