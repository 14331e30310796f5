// Workers that fail to boot for one cause at start-up: the operator reads the
// failure once (one stderr line, one JSON error line, from the primary), not
// once per worker; for causes of their own, each. To have both workers fail
// before the primary hears of the first (else it kills the second one before
// it fails), the primary is stopped (SIGSTOP) while they load and exit, so
// that on SIGCONT it reads both failures.
import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { modelsDir, slowModel } from './fixtures/models.ts'
import { GATED_IMPORT_APP, startServer, within, workerPids } from './fixtures/server.ts'
import { fileURLToPath } from 'node:url'

/**
 * Starts two workers on `app`, each held at its gate; stops the primary while
 * both fail to load, and each worker once it has sent its failure; then lets
 * the primary read both. Resolves once the server has exited.
 */
async function bothFail (t: Test, app: string) {
  // No scaler model in the directory: the apps cannot load it.
  const dir = modelsDir(t, { 'slow.onnx': slowModel(1) })
  const gates = mkdtempSync(join(tmpdir(), 'onnx-serve-gates-'))
  t.teardown(() => rmSync(gates, { recursive: true, force: true }))
  const server = startServer(t, ['--models-dir', dir, '--app', app, '--workers', '2', '--threads', '1', '--log-level', 'debug'], { env: { GATE_DIR: gates } })
  const primary = server.proc.pid!
  t.teardown(() => { try { process.kill(primary, 'SIGCONT') } catch {} })
  t.teardown(() => { for (const pid of workerPids(primary)) process.kill(pid, 'SIGKILL') })
  const importing = await Promise.all([1, 2].map(id => server.waitFor(l => l.msg === 'importing the app (gated)' && l.worker === id, 60_000)))
  process.kill(primary, 'SIGSTOP')
  // Each worker is let exit once it said (debug) that its load failed: a
  // zombie until the stopped primary reaps it. Its message was sent (stopping
  // it after that line instead could catch it before the message, on a
  // loaded machine), and the primary reads a worker's messages before it
  // counts it gone (its channel's end comes after them).
  const zombie = (pid: number) => /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  const failed = importing.map(async ({ worker, pid }) => {
    await server.waitFor(l => l.msg === 'models failed to load' && l.worker === worker, 60_000)
    for (let i = 0; i < 600 && !zombie(pid); i++) await new Promise(resolve => setTimeout(resolve, 50))
  })
  for (const id of [1, 2]) writeFileSync(join(gates, String(id)), '')
  await Promise.all(failed)
  process.kill(primary, 'SIGCONT')
  t.same(await within(server.exited, 30_000), { code: 3, signal: null }, 'exit 3')
  return server
}

t.test('cluster: two workers failing to load at start-up for one cause: one stderr line, one JSON error line, exit 3', async t => {
  const server = await bothFail(t, GATED_IMPORT_APP)
  const stderr = server.stderr().split('\n').filter(Boolean)
  const cause = /^error: worker failed to boot: model 'scaler' not found/
  const exit = /^error: worker \d+ exited \(code 3, signal null\) before it was ready/
  t.ok(stderr.every(l => cause.test(l) || exit.test(l)), `only the cause and a worker's exit on stderr: ${server.stderr()}`)
  // The cause, alone; or, had a worker exited before the test stopped it (a
  // loaded machine), its death may be read first and be the report, with the
  // cause after it if its message still came (a cause not reported yet is).
  t.ok(stderr.length === 1 || (stderr.length === 2 && exit.test(stderr[0]) && cause.test(stderr[1])), `one line, or the exit then the cause: ${server.stderr()}`)
  const errors = server.lines.filter(l => l.level >= 50)
  t.equal(errors.length, stderr.length, `a JSON error line for each stderr line: ${errors.map(l => l.msg).join('; ')}`)
  t.match(errors[0], { role: 'arbiter', msg: /^worker (failed to boot|died before it was ready): stopping the server$/ })
})

t.test('cluster: two workers failing to load at start-up for causes of their own: both reported, exit 3', async t => {
  const server = await bothFail(t, fileURLToPath(new URL('./fixtures/gated-per-worker-app.ts', import.meta.url)))
  const stderr = server.stderr()
  for (const id of [1, 2]) t.match(stderr, new RegExp(`error: worker failed to boot: model 'scaler-${id}' not found`), `worker ${id}'s cause on stderr`)
  t.equal(server.lines.filter(l => l.level >= 50 && /model 'scaler-\d' not found/.test(String(l.error))).length, 2, 'and in the log at error level or above, each')
})
