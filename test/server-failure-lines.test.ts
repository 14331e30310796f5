// How a failure reads in the log, with a real server: one line on stderr for
// the operator, one JSON log line, no stack trace for an error that is not a bug.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Server as NetServer } from 'node:net'
import { join } from 'node:path'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { SLOW_APP, startReady, startServer } from './fixtures/server.ts'

t.test('cluster: a replacement that fails to load its models is one stderr line and one JSON error line', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1'])
  writeFileSync(join(dir, 'scaler.onnx'), 'garbage, not an ONNX protobuf')
  server.proc.kill('SIGTTOU')
  await server.waitFor(l => l.msg === 'worker exited')
  server.proc.kill('SIGHUP')
  const failed = await server.waitFor(l => l.msg === 'a replacement worker failed to boot: the old worker keeps serving')
  await server.waitFor(l => l.msg === 'worker exited' && l.worker === failed.worker)
  const stderr = server.stderr().split('\n').filter(Boolean)
  t.equal(stderr.length, 1, `one line on stderr: ${server.stderr()}`)
  t.match(stderr[0], /^error: a replacement worker failed to boot \(the old one keeps serving\): cannot load model 'scaler'/)
  const errors = server.lines.filter(l => l.level >= 50)
  t.equal(errors.length, 1, `one error line in the log: ${errors.map(l => l.msg).join('; ')}`)
  t.match(errors[0], { worker: failed.worker, error: /cannot load model 'scaler'/ })
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

// Both workers failing before the primary stops them: server-boot-failure-once.test.ts.
t.test('cluster: workers that fail to load at start-up: one stderr line and one JSON line, from the primary', async t => {
  const dir = modelsDir(t, { 'slow.onnx': slowModel(1) })
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1'])
  t.same(await server.exited, { code: 3, signal: null })
  const stderr = server.stderr().split('\n').filter(Boolean)
  t.equal(stderr.length, 1, `one stderr line: ${server.stderr()}`)
  t.match(stderr[0], /^error: worker failed to boot: model 'scaler' not found/)
  const errors = server.lines.filter(l => l.level >= 50)
  t.equal(errors.length, 1, `one JSON error line: ${errors.map(l => l.msg).join('; ')}`)
  t.ok(errors.every(l => l.role === 'arbiter' && !l.err), 'from the primary, no stack trace')
})

t.test('a port in use: one stderr line, one JSON error line without a stack trace, exit 1; alone and with workers', async t => {
  const holder: NetServer = createServer()
  await new Promise<void>(resolve => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  const port = (holder.address() as AddressInfo).port
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  for (const workers of ['1', '2']) {
    const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', workers, '--port', String(port)])
    t.same(await server.exited, { code: 1, signal: null }, `--workers ${workers}: exit 1`)
    t.equal(server.stderr(), `error: cannot listen on 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`, `--workers ${workers}`)
    const errors = server.lines.filter(l => l.level >= 50)
    t.equal(errors.length, 1, `--workers ${workers}: one JSON error line`)
    t.match(errors[0], { msg: 'cannot listen', error: /EADDRINUSE/, code: 'EADDRINUSE' }, `--workers ${workers}`)
    t.notOk(server.lines.some(l => /\n\s+at /.test(JSON.stringify(l).replace(/\\n/g, '\n'))), `--workers ${workers}: no stack trace in the log`)
  }
})
