// Replacing workers, with a real cluster (the tests of this area added after
// test/server-operator.test.ts had grown near tap's timeout for one file): a
// second HUP while the first one's replacement boots, a worker that dies
// while its replacement boots, TTOU and HUP during a TERM drain; /metrics'
// lifecycle state while a worker boots.
import t from 'tap'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { arbiterLog, gatedCluster, lifecycleStates, SLOW_APP, startReady, within, workerPids } from './fixtures/server.ts'

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
