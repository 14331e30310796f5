// The primary killed (kill -9) while a worker's event loop is blocked (a
// handler in an endless loop): the orphan cannot drain, nor notice; one of
// its inference threads, whose loop turns, kills it once the drain's bound
// (--graceful-timeout, and a grace) is past.
import t from 'tap'
import { modelsDir, scalerModel } from './fixtures/models.ts'
import { BLOCKING_APP, startReady } from './fixtures/server.ts'

const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

t.test('cluster: a worker blocked in a handler does not outlive a primary killed with SIGKILL', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel() })
  const server = await startReady(t, ['--models-dir', dir, '--app', BLOCKING_APP, '--workers', '2', '--threads', '1', '--graceful-timeout', '1'], { env: { WORKER_TIMEOUT: '0' } })
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  t.equal(workers.length, 2, 'both workers booted')
  // A blocked worker left behind (the defect) spins for ever: killed here, whatever the outcome.
  t.teardown(() => { for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  fetch(`http://127.0.0.1:${server.port}/block`, { signal: AbortSignal.timeout(20_000) }).catch(() => {})
  const blocked = await server.waitFor(l => l.req?.url === '/block')
  server.proc.kill('SIGKILL')
  await server.exited
  // 1 s of graceful timeout, 2 s of grace, a second to notice: 10 s leaves room for a loaded machine.
  for (let i = 0; i < 100 && workers.some(alive); i++) await sleep(100)
  t.notOk(alive(blocked.pid), `the blocked worker (pid ${blocked.pid}) is gone`)
  t.notOk(workers.filter(pid => pid !== blocked.pid).some(alive), 'and the other one, which drained')
})
