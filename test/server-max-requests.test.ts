// --max-requests with a real cluster: every request a worker answers counts
// towards it, as in gunicorn, also those refused before a handler runs and
// those whose client left before the answer.
import t from 'tap'
import { connect } from 'node:net'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { arbiterLog, SLOW_APP, startReady, within } from './fixtures/server.ts'

/** Sends `raw` on a connection of its own (the primary hands connections to the workers in turn): the status line's code. */
function rawRequest (port: number, raw: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let answer = ''
    const socket = connect(port, '127.0.0.1', () => socket.end(raw))
    socket.setEncoding('utf8').on('data', chunk => { answer += chunk })
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0))).on('error', reject)
  })
}

t.test('cluster, --max-requests: requests refused before a handler (400 without Host, 417, 413) and one whose client left (499) count', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(40) })
  // Every answered request is an ask (logged by the worker, whether or not the primary acts on it).
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--max-requests', '1', '--max-requests-jitter', '0', '--body-limit', '100'])
  const asks = () => server.lines.filter(l => l.msg === 'max requests reached: asking to be replaced')
  const statuses = [
    await rawRequest(server.port, 'GET /health/live HTTP/1.1\r\n\r\n'),
    await rawRequest(server.port, 'POST /scale HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 0\r\n\r\n'),
    await rawRequest(server.port, `POST /scale HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n${' '.repeat(200)}`),
  ]
  t.same(statuses, [400, 417, 413], 'refused')
  const refusals = await within(server.waitFor(() => asks().length === 3, 10_000), 10_000).catch(() => undefined)
  t.ok(refusals, `each refusal counted: ${asks().length} asks; arbiter: ${arbiterLog(server)}`)
  const before = asks().length
  const socket = connect(server.port, '127.0.0.1', () => socket.write('POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"x":1}'))
  socket.on('error', () => {})
  const arrived = await server.waitFor(l => l.req?.url === '/slow')
  socket.destroy()
  const left = await within(server.waitFor(l => l.msg === 'max requests reached: asking to be replaced' && asks().indexOf(l) >= before, 10_000), 10_000).catch(() => undefined)
  t.match(left, { worker: arrived.worker }, `the request whose client left counted; arbiter: ${arbiterLog(server)}`)
  server.proc.kill('SIGTERM')
  t.same(await within(server.exited, 15_000), { code: 0, signal: null })
})
