// --worker-timeout, gunicorn's worker timeout: a cluster worker whose event
// loop is blocked is killed and replaced, with a real cluster and a route
// that never lets go of the loop; one whose load holds it past
// --load-timeout is killed too (a failed boot). A file of its own: the other server test
// files are near tap's timeout for one file.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { modelsDir } from './fixtures/models.ts'
import { BLOCKING_APP, startReady, startServer, within } from './fixtures/server.ts'

const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }

t.test('cluster: a worker whose event loop is blocked past --worker-timeout is killed and replaced; a boot that holds the loop longer is not', async t => {
  const dir = modelsDir(t, {})
  // Each worker's load holds its event loop 1.5 s, past the 1 s timeout: a boot is not watched.
  const server = await startReady(t, ['--models-dir', dir, '--app', BLOCKING_APP, '--workers', '2', '--threads', '1'], { env: { WORKER_TIMEOUT: '1', BLOCK_LOAD_MS: '1500' } })
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  t.equal(workers.length, 2, 'both workers booted')
  // A blocked worker left behind (a failure here) never exits on its own: it would hold tap's pipe.
  t.teardown(() => { for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  // The primary hands this request to one worker, whose handler never returns.
  const blocked = fetch(`http://127.0.0.1:${server.port}/block`, { signal: AbortSignal.timeout(15_000) }).then(res => res.status, (err: Error) => err.cause ?? err)
  const killed = await within(server.waitFor(l => l.msg === 'worker silent past --worker-timeout (event loop blocked?): killing it', 10_000), 10_000).catch(() => undefined)
  t.ok(killed && killed !== 'still running', 'the primary kills the silent worker')
  if (!killed || killed === 'still running') return
  t.ok(workers.includes(killed.workerPid), `it names the worker's pid (${killed.workerPid})`)
  t.ok(killed.silentMs >= 1000 && killed.silentMs < 5000, `and how long it was silent (${killed.silentMs} ms)`)
  t.equal(killed.role, 'arbiter')
  // (stderr is another pipe than the log's: its line may come a little later.)
  for (let i = 0; i < 50 && !server.stderr().includes('past --worker-timeout'); i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.match(server.stderr(), new RegExp(`^error: worker \\d+ \\(pid ${killed.workerPid}\\) silent for \\d+\\.\\d s, past --worker-timeout: killed \\(SIGKILL\\)\\n$`), 'one line on stderr')
  const exited = await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === killed.workerPid)
  t.equal(exited.signal, 'SIGKILL')
  t.notOk(alive(killed.workerPid), 'it is gone')
  t.not(await within(blocked, 5000), 'still running', 'the request it held ends (its connection closed), no hang')
  const fresh = await server.waitFor(l => l.msg === 'worker ready' && !workers.includes(l.workerPid))
  t.ok(alive(fresh.workerPid), 'a new worker took its place')
  const statuses = await Promise.all(Array.from({ length: 8 }, () =>
    fetch(`http://127.0.0.1:${server.port}/health/ready`, { signal: AbortSignal.timeout(5000) }).then(res => res.status, () => 0)))
  t.same(statuses, Array(8).fill(200), 'and every request is served')
  t.equal(server.lines.filter(l => l.msg === 'worker silent past --worker-timeout (event loop blocked?): killing it').length, 1, 'no other worker was killed (their boot included)')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})

t.test('cluster: a worker whose load holds the event loop past --load-timeout (its own timer cannot fire) is killed: at start-up, the server stops (exit 3)', async t => {
  const dir = modelsDir(t, {})
  const server = startServer(t, ['--models-dir', dir, '--app', BLOCKING_APP, '--workers', '2', '--threads', '1', '--load-timeout', '1'], { env: { WORKER_TIMEOUT: '1', BLOCK_LOAD_MS: '20000' } })
  const children = () => spawnSync('pgrep', ['-P', String(server.proc.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)
  const seen = new Set<number>()
  const watch = setInterval(() => children().forEach(pid => seen.add(pid)), 100)
  t.teardown(() => { clearInterval(watch); for (const pid of seen) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  t.same(await within(server.exited, 30_000), { code: 3, signal: null }, `the server stops with exit 3, as on any boot failure; arbiter: ${server.lines.filter(l => l.role === 'arbiter').map(l => l.msg).join('; ')}`)
  const killed = server.lines.find(l => l.msg === 'worker silent past --load-timeout while booting (event loop blocked?): killing it')
  t.ok(killed && killed.silentMs >= 1000, `the primary says which worker it killed, and why (${JSON.stringify(killed)})`)
  t.match(server.stderr(), /^error: worker \d+ \(pid \d+\) silent for \d+\.\d s while booting, past --load-timeout: killed \(SIGKILL\)$/m, server.stderr())
})
