// Signals in a server process's first moments, before its own modules are
// loaded: `npm start`'s compiled server (scripts/start.sh) holds them from
// there on (framework/signal-hold.ts), alone and with workers, in the primary
// and in each worker. Without that, a HUP then ended the process (exit 129),
// TTIN and TTOU stopped it, and a TERM ended it by the signal.
//
// Deterministic, not timed: each process is held at the first package it
// resolves (fixtures/gate-first-package.mjs, in NODE_OPTIONS so that workers
// get it too), the first of the server's heavy modules, until the test, having
// sent its signals and seen them delivered (/proc/<pid>/status: none pending),
// lets it go. Linux only (/proc), as the signals themselves are POSIX.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { ROOT, SLOW_APP, startServer, within, type Server } from './fixtures/server.ts'

const START = ['/bin/sh', 'scripts/start.sh']
const GATE_HOOK = fileURLToPath(new URL('./fixtures/gate-first-package.mjs', import.meta.url))
const STOPPED = 'stopped while starting: nothing served yet'

// scripts/start.sh runs the compiled server (dist/): `npm start` compiles it first.
const build = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, encoding: 'utf8' })
if (build.status !== 0) throw new Error(`scripts/build.mjs failed: ${build.stderr}`)

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))
const status = (pid: number): string | undefined => { try { return readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return undefined } }
/** The process's state letter (R, S, T for stopped, Z...), undefined once it is gone. */
const state = (pid: number) => /^State:\s+(\S)/m.exec(status(pid) ?? '')?.[1]
/**
 * Resolves once no signal is pending for the process any more (each was
 * delivered: handled, or its default action taken), or it is gone, or
 * stopped (a stopped process keeps other signals pending).
 */
async function delivered (pid: number) {
  for (;;) {
    const s = status(pid)
    if (s === undefined || state(pid) === 'Z' || state(pid) === 'T') return
    const pending = ['SigPnd', 'ShdPnd'].map(f => BigInt('0x' + new RegExp(`^${f}:\\s+([0-9a-f]+)`, 'm').exec(s)![1]))
    if (pending.every(p => p === 0n)) return
    await sleep(5)
  }
}

/** A gate directory for fixtures/gate-first-package.mjs, and the environment that passes it to the server's processes. */
function gates (t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-gates-'))
  const open = (pid: number) => writeFileSync(join(dir, `go-${pid}`), '')
  t.teardown(() => {
    // Processes still held go on (and are killed by startServer's teardown).
    for (const f of readdirSync(dir)) if (f.startsWith('waiting-')) open(Number(f.slice('waiting-'.length)))
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    env: { NODE_OPTIONS: `--import ${GATE_HOOK}`, GATE_FIRST_PACKAGE_DIR: dir },
    /** The pids of the processes held at their first package, in no particular order. */
    waiting: () => readdirSync(dir).filter(f => f.startsWith('waiting-')).map(f => Number(f.slice('waiting-'.length))),
    /** Resolves once `pid` is held at its first package (what it was, e.g. 'onnxruntime-node'). */
    async heldAt (pid: number, server: Server): Promise<string> {
      const file = join(dir, `waiting-${pid}`)
      while (!existsSync(file)) {
        if (await within(server.exited, 10) !== 'still running') throw new Error(`the server exited before it loaded a package; stderr: ${server.stderr()}`)
      }
      return readFileSync(file, 'utf8')
    },
    isOpen: (pid: number) => existsSync(join(dir, `go-${pid}`)),
    open,
  }
}

/**
 * Sends the signals one by one to `pid`, held at its first package, each once
 * the one before was delivered; checks that none ended or stopped it.
 */
async function signalWhileHeld (t: Test, server: Server, pid: number, signals: NodeJS.Signals[], who: string): Promise<boolean> {
  for (const signal of signals) {
    process.kill(pid, signal)
    await delivered(pid)
    // A default action that ends the process was taken at delivery: by now, or
    // a moment later, it is a zombie or gone (reaped by the test or the primary).
    await sleep(100)
    const now = state(pid)
    const exited = server.proc.pid === pid ? await within(server.exited, 10) : 'still running'
    t.ok(now !== undefined && now !== 'Z', `${who}: ${signal} did not end it (${now ?? 'gone'}${exited === 'still running' ? '' : `, ${JSON.stringify(exited)}`})`)
    t.not(now, 'T', `${who}: ${signal} did not stop it`)
    if (now === undefined || now === 'Z' || now === 'T') return false
  }
  return true
}

const fixtureModels = (t: Test) => modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })

t.test('npm start, alone: HUP, TTIN, TTOU, USR1 and USR2 before the server\'s modules load neither end, stop nor inspect it', async t => {
  const gate = gates(t)
  const server = startServer(t, ['--models-dir', fixtureModels(t), '--app', SLOW_APP], { command: START, env: gate.env })
  const pid = server.proc.pid!
  t.equal(await gate.heldAt(pid, server), 'onnxruntime-node', 'held at the first package the server resolves (the others are bundled into dist/: scripts/build.mjs)')
  if (!await signalWhileHeld(t, server, pid, ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2'], 'the server')) return
  gate.open(pid)
  await server.waitFor(l => l.msg === 'ready: models loaded')
  const listening = await server.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening at '))
  t.equal((await fetch(`${listening.msg.slice('Server listening at '.length)}/health/ready`, { signal: AbortSignal.timeout(5000) })).status, 200, 'serves')
  t.notMatch(server.stderr(), /Debugger listening/, 'USR1 did not open the inspector')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 20_000), { code: 0, signal: null }, 'a TERM once serving drains, exit 0')
})

t.test('npm start: TERM or INT before the server\'s modules load exits 0 at once and says so (at the level set), alone and with workers', async t => {
  const cases = [
    { signal: 'SIGTERM', args: [] },
    { signal: 'SIGINT', args: [] },
    { signal: 'SIGTERM', args: ['--workers', '2'] },
    { signal: 'SIGTERM', args: ['--log-level', 'warn'] },
  ] as const
  await Promise.all(cases.map(async ({ signal, args }) => {
    const name = `${signal} ${args.join(' ')}`
    const gate = gates(t)
    const server = startServer(t, ['--models-dir', fixtureModels(t), '--app', SLOW_APP, ...args], { command: START, env: gate.env })
    const pid = server.proc.pid!
    await gate.heldAt(pid, server)
    server.proc.kill(signal)
    // The gate stays shut: the stop cannot wait for the modules.
    t.same(await within(server.exited, 10_000), { code: 0, signal: null }, `${name}: exit 0`)
    const logged = server.lines.filter(l => l.msg === STOPPED)
    if ((args as readonly string[]).includes('warn')) t.same(logged, [], `${name}: an info line, not logged at warn`)
    else t.match(logged, [{ level: 30, pid, signal }], `${name}: logged, pino's shape`)
    t.equal(server.stderr(), '', `${name}: nothing on stderr`)
    t.notOk(server.lines.some(l => l.msg === 'starting workers'), `${name}: no worker forked`)
  }))
})

t.test('npm start, --workers 2: TTIN and HUP to the primary before its modules load add a worker, and HUP, TTIN, TTOU to a worker before its own neither end nor stop it', async t => {
  const gate = gates(t)
  const server = startServer(t, ['--models-dir', fixtureModels(t), '--app', SLOW_APP, '--workers', '2', '--threads', '1'], { command: START, env: gate.env })
  const primary = server.proc.pid!
  await gate.heldAt(primary, server)
  if (!await signalWhileHeld(t, server, primary, ['SIGTTIN', 'SIGHUP'], 'the primary')) return
  gate.open(primary)

  // The first worker held gets signals of its own; the others go on at once.
  let signalled: number | undefined
  const allReady = server.waitFor(l => l.msg === 'all workers ready', 60_000)
  let done = false
  void allReady.finally(() => { done = true }).catch(() => {})
  while (!done && await within(server.exited, 20) === 'still running') {
    for (const pid of gate.waiting().filter(p => p !== primary && !gate.isOpen(p))) {
      if (signalled === undefined) {
        signalled = pid
        if (!await signalWhileHeld(t, server, pid, ['SIGHUP', 'SIGTTIN', 'SIGTTOU'], 'a worker')) return
      }
      gate.open(pid)
    }
  }
  t.match(await allReady, { workers: 3 }, 'three workers: the held TTIN counted')
  t.ok(signalled, 'a worker was signalled while held')
  const early = server.lines.filter(l => l.role === 'arbiter' && /before the workers are forked/.test(l.msg))
  t.equal(early.length, 2, 'the primary says what it made of them')
  // In either order: the kernel hands pending signals over by number.
  t.match(early.find(l => l.signal === 'SIGTTIN'), { target: 3, msg: 'SIGTTIN before the workers are forked: starting 3' }, 'TTIN: one worker more')
  t.match(early.find(l => l.signal === 'SIGHUP'), { msg: /nothing to replace/ }, 'HUP: dropped')
  t.same(server.lines.filter(l => l.msg === 'worker exited'), [], 'no worker exited')
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 30_000), { code: 0, signal: null }, 'TERM: exit 0')
})
