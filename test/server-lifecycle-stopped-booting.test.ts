// A worker told to stop while it still boots is on its way out until it
// exits: /metrics' lifecycle state gauge counts it as draining (the primary
// counts it: it cannot answer), not in no state at all. The worker is held
// in its (gated) import and stopped (SIGSTOP) before it is told to go, so
// that it stays until the test lets it exit (SIGCONT).
import t from 'tap'
import { gatedCluster, lifecycleStates, within } from './fixtures/server.ts'

const WAIT_MS = 60_000

t.test('cluster: a booting worker told to stop (TTOU; a HUP\'s replacement a later HUP stops; TERM) is draining until it exits', async t => {
  const { server, importing, open } = gatedCluster(t)
  const booting = (id: number) => server.waitFor(l => l.msg === 'importing the app (gated)' && l.worker === id, WAIT_MS)
  /** Stops worker `id` (booting) until the test's end or `resume()`. */
  const hold = async (id: number) => {
    const { pid } = await booting(id)
    process.kill(pid, 'SIGSTOP')
    const resume = () => { try { process.kill(pid, 'SIGCONT') } catch {} }
    t.teardown(resume)
    return resume
  }
  const exited = (id: number) => server.waitFor(l => l.msg === 'worker exited' && l.worker === id, WAIT_MS)
  await Promise.all([importing(1), importing(2)])
  open(1)
  open(2)
  await server.waitFor(l => l.msg === 'all workers ready', WAIT_MS)
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at http://127.0.0.1:'))
  const port = Number(/:(\d+)$/.exec(listening.msg)![1])

  // A TTIN's worker, booting, that a TTOU removes.
  server.proc.kill('SIGTTIN')
  let resume = await hold(3)
  server.proc.kill('SIGTTOU')
  await server.waitFor(l => l.msg === 'SIGTTOU: removing a worker' && l.worker === 3, WAIT_MS)
  const during = [await lifecycleStates(port), await lifecycleStates(port)]
  t.same(during, [1, 2].map(() => ({ status: 200, loading: 0, ready: 2, draining: 1, failed: 0 })), 'TTOU: the removed worker, still there, is draining, whichever worker answers')
  resume()
  await exited(3)
  t.same(await lifecycleStates(port), { status: 200, loading: 0, ready: 2, draining: 0, failed: 0 }, 'TTOU: gone once it exited')

  // A HUP's replacement, booting, that a later HUP stops (its own replacement boots then).
  server.proc.kill('SIGHUP')
  resume = await hold(4)
  server.proc.kill('SIGHUP')
  await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: an earlier replacement still booting is stopped') && l.worker === 4, WAIT_MS)
  await booting(5)
  t.same(await lifecycleStates(port), { status: 200, loading: 1, ready: 2, draining: 1, failed: 0 }, 'HUP: the superseded replacement is draining; the new one loading')
  resume()
  await exited(4)
  t.same(await lifecycleStates(port), { status: 200, loading: 1, ready: 2, draining: 0, failed: 0 }, 'HUP: gone once it exited')

  // The server stopping (TERM) while worker 5 boots. A scrape must reach a
  // worker once the primary stops: the ready workers are stopped too, the
  // scrape's connection handed to one of them meanwhile, and they resume
  // once the primary said it stops the workers (the scrape and their TERM
  // in either order: each worker counts itself as ready or draining).
  resume = await hold(5)
  const readyPids = server.lines.filter(l => l.msg === 'worker ready' && (l.worker === 1 || l.worker === 2)).map(l => l.workerPid as number)
  t.equal(readyPids.length, 2)
  for (const pid of readyPids) process.kill(pid, 'SIGSTOP')
  t.teardown(() => { for (const pid of readyPids) try { process.kill(pid, 'SIGCONT') } catch {} })
  const scrape = lifecycleStates(port)
  server.proc.kill('SIGTERM')
  await server.waitFor(l => l.msg === 'stopping workers', WAIT_MS)
  for (const pid of readyPids) process.kill(pid, 'SIGCONT')
  const stopping = await scrape
  t.match(stopping, { status: 200, loading: 0, failed: 0 }, `TERM: the booting worker is no longer loading: ${JSON.stringify(stopping)}`)
  t.equal(stopping.ready + stopping.draining, 3, 'the two ready workers (ready or draining) and the booting one (draining)')
  t.ok(stopping.draining >= 1, 'the booting one draining')
  resume()
  t.same(await within(server.exited, 30_000), { code: 0, signal: null })
})
