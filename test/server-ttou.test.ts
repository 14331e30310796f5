// server.ts as a real process: TTOU and HUP while cluster workers boot (TTOU
// and HUP in each order, during a respawn's back-off or beside a booting
// worker, 'all workers ready' after a TTOU at start-up, a TTOU beside the only
// ready worker during a HUP, a HUP whose replacements outnumber a lowered
// target, a worker stopped as it finishes booting). Split from
// test/server-operator.test.ts, which outlasted tap's timeout for one file.

import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { arbiterLog, GATED_IMPORT_APP, gatedCluster, SLOW_IMPORT_APP, startServer, TERM_ENDS_LOAD_APP, within, workerPids } from './fixtures/server.ts'

const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }

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
