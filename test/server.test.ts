// server.ts as a real process: settings, signals, workers, failures.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { request as httpRequest } from 'node:http'
import { modelsDir, scalerModel, slowModel } from './fixtures/models.ts'
import { childEnv, OIP_APP, post, ROOT, SLOW_APP, SLOW_BOOT_APP, startReady, startServer } from './fixtures/server.ts'
import { shiftedModel } from './fixtures/oip.ts'
import { countersDown, readExposition } from './fixtures/exposition.ts'

const tsx = [process.execPath, '--import', 'tsx', 'server.ts']
const row = { rows: [[5.1, 3.5, 1.4, 0.2]] }
const alive = (pid: number) => { try { process.kill(pid, 0); return true } catch { return false } }
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))
const refused = (port: number) => new Promise<boolean>(resolve => {
  const socket = connect(port, '127.0.0.1')
  socket.on('connect', () => { socket.destroy(); resolve(false) })
  socket.on('error', () => resolve(true))
})

t.test('--help prints every setting and exits 0', async t => {
  const res = spawnSync(tsx[0], [...tsx.slice(1), '--help'], { cwd: ROOT, encoding: 'utf8', env: childEnv() })
  t.equal(res.status, 0)
  for (const flag of ['--host', '--port', '--workers', '--threads', '--models-dir', '--timeout', '--keep-alive', '--graceful-timeout', '--load-timeout', '--max-requests', '--max-requests-jitter', '--log-level']) {
    t.match(res.stdout, flag)
  }
  t.match(res.stdout, 'WEB_CONCURRENCY')
})

t.test('a bad setting exits 2 naming the setting', async t => {
  const flag = spawnSync(tsx[0], [...tsx.slice(1), '--workers', 'many'], { cwd: ROOT, encoding: 'utf8', env: childEnv() })
  t.equal(flag.status, 2)
  t.match(flag.stderr, /invalid value for workers \(--workers\): expected an integer/)
  const env = spawnSync(tsx[0], tsx.slice(1), { cwd: ROOT, encoding: 'utf8', env: childEnv({ PORT: 'eighty' }) })
  t.equal(env.status, 2)
  t.match(env.stderr, /invalid value for port \(environment variable PORT\)/)
})

t.test('serves the app with its defaults: ready, model answers, OpenAPI; SIGTERM exits 0', async t => {
  const server = await startReady(t, [])
  const ready = await fetch(`http://127.0.0.1:${server.port}/health/ready`)
  t.equal(ready.status, 200)
  const res = await post(server.port, '/scale', row)
  t.equal(res.status, 200)
  t.ok(Math.abs(res.body.rows[0][0] + 0.9006) < 1e-3)
  const ner = await post(server.port, '/ner', { text: 'Barack Obama visited Paris with Microsoft engineers.' })
  t.same(ner.body.entities, [
    { text: 'Barack Obama', label: 'PER', start: 0, end: 12 },
    { text: 'Paris', label: 'LOC', start: 21, end: 26 },
    { text: 'Microsoft', label: 'ORG', start: 32, end: 41 },
  ])
  const doc = await (await fetch(`http://127.0.0.1:${server.port}/openapi.json`)).json() as any
  for (const path of ['/ner', '/pos', '/scale', '/health/ready', '/v2/models/{name}/infer']) t.ok(doc.paths[path], `${path} is documented`)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('--timeout 0: a body sent a byte at a time still gets --body-timeout\'s 408, and the server keeps serving', async t => {
  // The body read was bounded by the request deadline alone: --timeout 0 left it unbounded.
  const server = await startReady(t, ['--timeout', '0', '--body-timeout', '1'])
  const started = Date.now()
  const text = await new Promise<string>((resolve, reject) => {
    let text = ''
    let drip: NodeJS.Timeout | undefined
    const socket = connect(server.port, '127.0.0.1', () => {
      socket.write('POST /scale HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"rows":')
      drip = setInterval(() => { if (socket.writable) socket.write(' ') }, 200)
    })
    const giveUp = setTimeout(() => { socket.destroy(); resolve(`${text} (still open after 8 s)`) }, 8000)
    socket.on('data', chunk => { text += chunk })
    socket.on('close', () => { clearInterval(drip); clearTimeout(giveUp); resolve(text) })
    socket.on('error', err => { if ((err as NodeJS.ErrnoException).code !== 'EPIPE' && (err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err) })
  })
  t.match(text, /^HTTP\/1.1 408 /)
  t.same(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), { error: 'the request body did not arrive within 1 s', code: 'REQUEST_TIMEOUT', statusCode: 408 })
  t.ok(Date.now() - started < 4000, `closed after ${Date.now() - started} ms`)
  t.equal((await post(server.port, '/scale', row)).status, 200, 'still serving')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('a run that ONNX Runtime fails on the input\'s values: a 400, and no line of ONNX Runtime\'s own on stderr', async t => {
  // ONNX Runtime wrote each failed run to stderr itself, in colour and out of
  // the JSON log: a client sending bad ids could fill the log.
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'shifted.onnx': shiftedModel() })
  const server = await startReady(t, ['--models-dir', dir, '--app', OIP_APP])
  const ids = (data: number[]) => ({ inputs: [{ name: 'ids', shape: [1, data.length], datatype: 'INT64', data }] })
  const bad = await post(server.port, '/v2/models/shifted/infer', ids([9]))
  t.equal(bad.status, 400)
  t.match(bad.body.error, /its Gather node '.*' failed: indices element out of data bounds, idx=10/)
  t.equal((await post(server.port, '/v2/models/shifted/infer', ids([8]))).status, 200)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
  t.notMatch(server.stderr(), /onnxruntime|out of data bounds/)
  t.notOk(server.lines.some(l => l.level >= 50), 'nothing logged as an error: the client\'s input was at fault')
})

t.test('SIGTERM with a request in flight: it completes, new connections are refused, exit 0', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(120) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP])
  const inFlight = post(server.port, '/slow', { x: 1 })
  await sleep(150)
  server.proc.kill('SIGTERM')
  await server.waitFor(l => l.msg === 'closing the listener: new connections are refused')
  await sleep(100)
  t.ok(await refused(server.port), 'new connections are refused while draining')
  const res = await inFlight
  t.equal(res.status, 200, 'the in-flight request completed')
  t.ok(Number.isFinite(res.body.y))
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('a second SIGTERM while draining does not cut the drain short', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(120) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP])
  const inFlight = post(server.port, '/slow', { x: 1 })
  await sleep(150)
  server.proc.kill('SIGTERM')
  await server.waitFor(l => l.msg === 'draining: finishing in-flight requests')
  // What a process group's TERM followed by the arbiter's gives a worker.
  server.proc.kill('SIGTERM')
  const res = await inFlight
  t.equal(res.status, 200, 'the in-flight request completed')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('after the graceful timeout the rest is killed (exit 1)', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(400) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--graceful-timeout', '0.2'])
  const inFlight = post(server.port, '/slow', { x: 1 }).catch(err => err)
  await sleep(100)
  const started = Date.now()
  server.proc.kill('SIGTERM')
  // Killed outright: a model was still computing, which process.exit() cannot interrupt.
  t.same(await server.exited, { code: null, signal: 'SIGKILL' })
  t.ok(Date.now() - started < 3000, 'did not wait for the slow request')
  t.type(await inFlight, Error, 'the cut request fails on the client side')
})

t.test('SIGINT stops at once when idle, exit 0', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP])
  server.proc.kill('SIGINT')
  t.same(await server.exited, { code: 0, signal: null })
  t.ok(server.lines.some(l => l.msg === 'stopping now' && l.signal === 'SIGINT'))
})

t.test('SIGINT stops at once, without waiting for in-flight work', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(400) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP])
  void post(server.port, '/slow', { x: 1 }).catch(() => {})
  await sleep(100)
  const started = Date.now()
  server.proc.kill('SIGINT')
  t.same(await server.exited, { code: null, signal: 'SIGKILL' }, 'killed outright while a model computes')
  t.ok(Date.now() - started < 3000, 'did not wait for the slow request')
})

t.test('a missing model stops the server with a non-zero exit naming it', async t => {
  const dir = modelsDir(t, {})
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP])
  const exit = await server.exited
  t.equal(exit.code, 3)
  t.match(server.stderr(), /model 'scaler' not found in .*looked for scaler\.onnx/)
})

t.test('a corrupt model stops the server with a non-zero exit naming the file', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': 'garbage, not an ONNX protobuf' })
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP])
  const exit = await server.exited
  t.equal(exit.code, 3)
  t.match(server.stderr(), /cannot load model 'scaler' from .*scaler\.onnx/)
})

t.test('cluster: a worker that fails to load stops the whole server', async t => {
  const dir = modelsDir(t, {})
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2'])
  const exit = await server.exited
  t.equal(exit.code, 3)
  t.match(server.stderr(), /worker failed to boot: model 'scaler' not found/)
})

t.test('/health/live answers within 50 ms while a slow model computes', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(150) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--threads', '1'])
  // Warm the connection pool so we time the server, not the TCP handshake.
  await fetch(`http://127.0.0.1:${server.port}/health/live`)
  const slow = post(server.port, '/slow', { x: 1 })
  await sleep(50)
  const times: number[] = []
  let computing = true
  void slow.then(() => { computing = false })
  while (computing && times.length < 200) {
    const started = performance.now()
    const res = await fetch(`http://127.0.0.1:${server.port}/health/live`)
    await res.text()
    times.push(performance.now() - started)
    await sleep(5)
  }
  const res = await slow
  t.equal(res.status, 200)
  t.ok(res.body.ms > 300, `the model computed for ${Math.round(res.body.ms)} ms`)
  t.ok(times.length >= 10, `${times.length} probes while it computed`)
  times.sort((a, b) => a - b)
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(1)
  // p95, not max: this 2-core machine is shared, and the probe client runs
  // on it too; a blocked event loop would push every probe past 50 ms.
  t.ok(Number(at(0.95)) < 50, `/health/live over ${times.length} probes: median ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms`)
  server.proc.kill('SIGTERM')
  await server.exited
})

t.test('cluster: a killed worker is replaced while the others keep serving', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2'])
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  t.equal(workers.length, 2)
  process.kill(workers[0], 'SIGKILL')
  // A connection the primary handed to the worker as it died is lost with it;
  // from the moment the primary knows, every request must succeed.
  await server.waitFor(l => l.msg === 'worker died: replacing it')
  let failures = 0
  const deadline = Date.now() + 1500
  let served = 0
  const replaced = server.waitFor(l => l.msg === 'worker ready' && !workers.includes(l.workerPid))
  while (Date.now() < deadline) {
    const res = await post(server.port, '/scale', row).catch(() => ({ status: 0 }))
    if (res.status === 200) served++
    else failures++
  }
  t.ok(served > 10, `${served} requests served after the kill`)
  t.equal(failures, 0, 'no request failed')
  const fresh = await replaced
  t.ok(alive(fresh.workerPid), 'a new worker took its place')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
  t.notOk(alive(workers[1]), 'workers are gone after the primary exits')
})

t.test('cluster: SIGHUP replaces workers one by one without dropping requests', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2'])
  const before = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  let failures = 0
  let served = 0
  let running = true
  // Two clients: one on a keep-alive connection, one opening a connection per
  // request (which the primary may hand to a worker that is booting or draining).
  const client = (send: () => Promise<{ status: number }>) => (async () => {
    while (running) {
      const res = await send().catch(() => ({ status: 0 }))
      if (res.status === 200) served++
      else failures++
    }
  })()
  const load = Promise.all([client(() => post(server.port, '/scale', row)), client(() => fresh(server.port, 'POST', '/scale', row))])
  server.proc.kill('SIGHUP')
  await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === before[0] && l.code === 0)
  await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === before[1] && l.code === 0)
  await sleep(200)
  running = false
  await load
  const after = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number).filter(p => !before.includes(p))
  t.equal(after.length, 2, 'two new workers')
  t.ok(served > 20, `${served} requests served during the reload`)
  t.equal(failures, 0, 'no request failed during the reload')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('cluster: SIGHUP drops no Open Inference Protocol request either (a draining worker serves them, as it does resource routes)', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel() })
  const server = await startReady(t, ['--models-dir', dir, '--app', OIP_APP, '--workers', '2'])
  const before = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  const infer = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] }
  const failures: string[] = []
  let served = 0
  let running = true
  // As above: a keep-alive client, and one opening a connection per request,
  // which the primary hands to a worker draining for the HUP while it still accepts.
  const client = (send: () => Promise<{ status: number, text?: string }>) => (async () => {
    while (running) {
      const res = await send().catch((err: Error) => ({ status: 0, text: err.message }))
      if (res.status === 200) served++
      else failures.push(`${res.status} ${res.text ?? ''}`)
    }
  })()
  const load = Promise.all([
    client(async () => { const res = await post(server.port, '/v2/models/scaler/infer', infer); return { status: res.status, text: JSON.stringify(res.body) } }),
    client(() => fresh(server.port, 'POST', '/v2/models/scaler/infer', infer)),
  ])
  server.proc.kill('SIGHUP')
  await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === before[0] && l.code === 0)
  await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === before[1] && l.code === 0)
  running = false
  await load
  t.ok(served > 20, `${served} requests served during the reload`)
  t.same(failures.slice(0, 3), [], `no request failed during the reload (${failures.length} did)`)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('cluster: readiness stays 200 through a SIGHUP (a worker drained for its replacement is no server shutting down)', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel() })
  const server = await startReady(t, ['--models-dir', dir, '--app', OIP_APP, '--workers', '2'])
  const before = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  const failures: string[] = []
  let probes = 0
  let running = true
  // A load balancer's probes: a connection each, which the primary also hands
  // to a worker draining for the HUP while it still accepts.
  const prober = (path: string) => (async () => {
    while (running) {
      const res = await fresh(server.port, 'GET', path).catch((err: Error) => ({ status: 0, text: err.message }))
      probes++
      if (res.status !== 200) failures.push(`${path}: ${res.status} ${res.text}`)
    }
  })()
  const probing = Promise.all([prober('/health/ready'), prober('/v2/health/ready')])
  server.proc.kill('SIGHUP')
  await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === before[0] && l.code === 0)
  await server.waitFor(l => l.msg === 'worker exited' && l.workerPid === before[1] && l.code === 0)
  running = false
  await probing
  t.ok(probes > 20, `${probes} probes during the reload`)
  t.same(failures.slice(0, 3), [], `every probe answered 200 during the reload (${failures.length} did not)`)
  t.equal(server.lines.filter(l => l.msg === 'draining: finishing in-flight requests' && l.replaced === true).length, 2, 'both old workers drained as replaced')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('cluster: --max-requests recycles a worker without failing requests', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--max-requests', '15', '--max-requests-jitter', '5'])
  let failures = 0
  for (let i = 0; i < 60; i++) {
    const res = await post(server.port, '/scale', row).catch(() => ({ status: 0 }))
    if (res.status !== 200) failures++
  }
  await server.waitFor(l => l.msg === 'max requests reached: asking to be replaced')
  await server.waitFor(l => l.msg === 'worker exited' && l.code === 0)
  t.equal(failures, 0)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('npm start passes signals to node: no orphaned process', async t => {
  const server = await startReady(t, [], { command: ['npm', 'start', '--silent', '--'] })
  const nodePid = server.lines.find(l => l.msg === 'ready: models loaded')!.pid as number
  t.not(nodePid, server.proc.pid)
  server.proc.kill('SIGTERM')
  await server.exited
  await sleep(300)
  t.notOk(alive(nodePid), 'the node process exited with npm')
})

t.test('cluster: TTIN adds a worker, TTOU drains one', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2'])
  const ready = () => server.lines.filter(l => l.msg === 'worker ready').length
  t.equal(ready(), 2)
  server.proc.kill('SIGTTIN')
  await server.waitFor(l => l.msg === 'worker ready' && ready() === 3)
  t.equal(ready(), 3, 'a third worker booted')
  server.proc.kill('SIGTTOU')
  const gone = await server.waitFor(l => l.msg === 'worker exited')
  t.equal(gone.code, 0, 'the removed worker drained and exited 0')
  t.equal((await post(server.port, '/scale', row)).status, 200, 'the others keep serving')
  t.notOk(server.lines.some(l => l.msg === 'worker died: replacing it'), 'a removed worker is not replaced')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

/** One request on a connection of its own (`agent: false`), so the cluster's primary hands each to the next worker. */
function fresh (port: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return new Promise<{ status: number, text: string }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, agent: false, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers } }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', chunk => { text += chunk }).on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

/** The value of one sample in a text exposition, or undefined. */
function sample (text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${name}${labels} `))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

t.test('cluster: every /metrics scrape counts the requests of every worker', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1'])
  for (let i = 0; i < 20; i++) t.equal((await fresh(server.port, 'POST', '/scale', row)).status, 200)
  // Each scrape on a connection of its own: the primary hands them to both workers in turn.
  const counts = []
  for (let i = 0; i < 4; i++) {
    const res = await fresh(server.port, 'GET', '/metrics')
    t.equal(res.status, 200)
    counts.push({
      scale: sample(res.text, 'http_requests_total', '{method="POST",route="/scale",status_code="200"}'),
      ready: sample(res.text, 'onnx_serve_lifecycle_state', '{state="ready"}'),
      threads: sample(res.text, 'onnx_serve_inference_threads'),
    })
  }
  t.same(counts.map(c => c.scale), [20, 20, 20, 20], 'each scrape counts the 20 requests, half of which the answering worker never saw')
  t.same(counts.map(c => c.ready), [2, 2, 2, 2], 'two workers ready')
  t.same(counts.map(c => c.threads), [2, 2, 2, 2], 'one inference thread in each worker')
  // A worker still booting is not asked (it could not answer yet): scrapes
  // while a third one boots answer at once, for the two that are ready.
  server.proc.kill('SIGTTIN')
  await server.waitFor(l => l.msg === 'SIGTTIN: adding a worker')
  const started = performance.now()
  const during = await fresh(server.port, 'GET', '/metrics')
  t.equal(during.status, 200, 'a scrape while a worker boots succeeds')
  t.ok(performance.now() - started < 3000, `and answers in ${Math.round(performance.now() - started)} ms, not after a timeout`)
  await server.waitFor(l => l.msg === 'worker ready' && server.lines.filter(m => m.msg === 'worker ready').length === 3)
  const after = await fresh(server.port, 'GET', '/metrics')
  t.equal(sample(after.text, 'onnx_serve_lifecycle_state', '{state="ready"}'), 3, 'three workers ready once the third is')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('cluster: /metrics counters keep counting when workers are recycled', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--max-requests', '6', '--max-requests-jitter', '0'])
  const counts: Array<number | undefined> = []
  // Slowly enough for replacements to boot and the old workers to drain and
  // exit: 40 requests at least, more (up to 120) while fewer than two old
  // workers have exited (replacements boot slower on a busy host).
  const exited = () => server.lines.filter(l => l.msg === 'worker exited' && l.code === 0).length
  for (let i = 0; i < 40 || (exited() < 2 && i < 120); i++) {
    t.equal((await fresh(server.port, 'POST', '/scale', row)).status, 200)
    await sleep(100)
    const res = await fresh(server.port, 'GET', '/metrics')
    counts.push(res.status === 200 ? sample(res.text, 'http_requests_total', '{method="POST",route="/scale",status_code="200"}') : res.status)
  }
  const recycled = exited()
  t.ok(recycled >= 2, `${recycled} workers recycled meanwhile`)
  t.same(counts, counts.map((_, i) => i + 1), 'after n requests, every scrape counts n: an exited worker\'s requests stay counted')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

t.test('cluster: a silent worker makes /metrics answer 503 METRICS_UNAVAILABLE, not the request deadline\'s 504', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  // A deadline shorter than the arbiter's 5 s wait for a silent worker.
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--threads', '1', '--timeout', '1'])
  const [, silent] = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  process.kill(silent, 'SIGSTOP')
  t.teardown(() => { try { process.kill(silent, 'SIGCONT') } catch {} })
  // Three scrapes at once: the stopped worker holds at most one, the other worker answers the rest.
  const started = performance.now()
  const scrapes = Array.from({ length: 3 }, () => fresh(server.port, 'GET', '/metrics').then(res => ({ ...res, ms: performance.now() - started })))
  // Scrapes with a deadline of their own, shorter than the wait: 504, and nothing more once the gathering gives up.
  const hurried = Array.from({ length: 2 }, () => fresh(server.port, 'GET', '/metrics', undefined, { 'x-request-timeout': '1' }))
  const first = await Promise.race(scrapes)
  t.equal(first.status, 503, `answered ${first.status} after ${Math.round(first.ms)} ms: ${first.text}`)
  t.equal(JSON.parse(first.text).code, 'METRICS_UNAVAILABLE')
  t.ok(first.ms > 4000, 'after the arbiter gave up on the silent worker')
  process.kill(silent, 'SIGCONT')
  for (const res of await Promise.all(scrapes)) t.ok(res.status === 200 || res.status === 503, `then ${res.status}`)
  for (const res of await Promise.all(hurried)) t.ok([200, 503, 504].includes(res.status), `with X-Request-Timeout: ${res.status}`)
  // The silent worker's scrapes are answered once it runs again: wait for its gathering to end too.
  await new Promise(resolve => setTimeout(resolve, 5500))
  t.notOk(server.lines.some(l => /already sent|Promise errored/.test(`${l.msg} ${l.err?.message ?? ''}`)), 'no scrape was answered twice')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})

/** The worker processes of a cluster primary now (its other children, such as tsx's esbuild, left out). */
const workerPids = (primary: number): number[] => {
  const out = spawnSync('pgrep', ['-P', String(primary)], { encoding: 'utf8' })
  const isWorker = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('server.ts') } catch { return false } }
  return out.stdout.split('\n').filter(Boolean).map(Number).filter(isWorker)
}
const readyCount = (server: { lines: Array<Record<string, any>> }) => server.lines.filter(l => l.msg === 'worker ready').length
/** The server answers ready, then drains on SIGTERM and exits 0. */
async function servesThenStops (t: Test, server: Awaited<ReturnType<typeof startReady>>) {
  t.equal((await fetch(`http://127.0.0.1:${server.port}/health/ready`)).status, 200)
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
}

t.test('cluster: with --port 0, workers started after all the others died listen on the same port', async t => {
  const server = await startReady(t, ['--workers', '2', '--threads', '1'])
  for (const pid of workerPids(server.proc.pid!)) process.kill(pid, 'SIGKILL')
  await server.waitFor(() => readyCount(server) >= 4)
  const ports = server.lines.filter(l => l.msg === 'worker ready').map(l => l.port)
  t.same(new Set(ports), new Set([server.port]), `every worker on ${server.port}: ${ports.join(', ')}`)
  await servesThenStops(t, server)
})

t.test('cluster: a worker that dies while booting, once the server is up, is replaced (not a boot failure)', async t => {
  const server = await startReady(t, ['--workers', '2', '--threads', '1'])
  const first = workerPids(server.proc.pid!)
  process.kill(first[0], 'SIGKILL')
  await server.waitFor(l => l.msg === 'worker died: replacing it')
  // The replacement, still booting, dies too.
  let booting: number | undefined
  for (let i = 0; i < 100 && booting === undefined; i++) {
    booting = workerPids(server.proc.pid!).find(pid => !first.includes(pid))
    if (booting === undefined) await sleep(20)
  }
  t.ok(booting, 'a replacement was forked')
  process.kill(booting!, 'SIGKILL')
  await server.waitFor(() => readyCount(server) >= 3)
  t.notOk(server.lines.some(l => /stopping the server/.test(l.msg ?? '')), 'the server did not stop')
  await servesThenStops(t, server)
})

t.test('cluster: TTOU during a HUP removes a ready worker, and the HUP still retires the old one', async t => {
  const server = await startReady(t, ['--workers', '2', '--threads', '1'])
  const before = workerPids(server.proc.pid!)
  server.proc.kill('SIGHUP')
  await sleep(200) // the first replacement is booting
  server.proc.kill('SIGTTOU')
  await server.waitFor(() => readyCount(server) >= 3)
  // The old workers drain and exit: one retired by the HUP, one by the TTOU.
  for (let i = 0; i < 100 && workerPids(server.proc.pid!).length > 1; i++) await sleep(50)
  const after = workerPids(server.proc.pid!)
  t.equal(after.length, 1, `one worker left: ${after.join(', ')}`)
  t.notOk(before.includes(after[0]), 'and it is the new one')
  await servesThenStops(t, server)
})

/** Whether a process runs: a worker whose primary died is reaped by init, which may leave a zombie for a while. */
const running = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')) } catch { return false }
}
async function gone (pids: number[], withinMs: number) {
  for (const deadline = Date.now() + withinMs; Date.now() < deadline && pids.some(running);) await sleep(50)
  return pids.filter(running)
}
/** Resolves once every process writing the server's log (the workers share the primary's stdout) is gone and the last line read. */
const logEnded = ({ proc }: Awaited<ReturnType<typeof startReady>>) =>
  new Promise<void>(resolve => proc.stdout!.closed ? resolve() : proc.stdout!.once('close', () => resolve()))

t.test('cluster: the primary killed with SIGKILL: workers finish their in-flight requests, then exit', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(120) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2'])
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  t.teardown(() => { for (const pid of workers) if (running(pid)) process.kill(pid, 'SIGKILL') })
  const inFlight = post(server.port, '/slow', { x: 1 }).catch((err: Error) => err)
  await server.waitFor(l => l.req?.url === '/slow')
  // What the OOM killer does.
  server.proc.kill('SIGKILL')
  t.same(await server.exited, { code: null, signal: 'SIGKILL' })
  const res = await inFlight
  if (res instanceof Error) t.fail(`the in-flight request was cut: ${(res.cause as Error | undefined)?.message ?? res.message}`)
  else t.equal(res.status, 200, 'the in-flight request completed')
  t.same(await gone(workers, 10_000), [], 'then every worker exited')
  await logEnded(server)
  t.equal(server.lines.filter(l => l.msg === 'draining: finishing in-flight requests' && l.signal === 'primary disconnected').length, 2, 'both workers drained')
  t.equal(server.lines.filter(l => l.msg === 'drained, exiting').length, 2, 'and exited once drained')
})

t.test('cluster: after the primary died, a worker is not left behind past the graceful timeout', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(400) })
  const server = await startReady(t, ['--models-dir', dir, '--app', SLOW_APP, '--workers', '2', '--graceful-timeout', '0.5'])
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  t.teardown(() => { for (const pid of workers) if (running(pid)) process.kill(pid, 'SIGKILL') })
  const inFlight = post(server.port, '/slow', { x: 1 }).catch((err: Error) => err)
  await server.waitFor(l => l.req?.url === '/slow')
  const started = Date.now()
  server.proc.kill('SIGKILL')
  t.same(await gone(workers, 5000), [], 'every worker exited')
  t.ok(Date.now() - started < 5000, `within ${Date.now() - started} ms, not after the slow request`)
  t.type(await inFlight, Error, 'the request that outlasted the graceful timeout was cut')
})

t.test('cluster: the primary killed while the workers boot: each exits once loaded, without aborting ONNX Runtime', async t => {
  const dir = modelsDir(t, { 'slow.onnx': slowModel(60) })
  const server = startServer(t, ['--models-dir', dir, '--app', SLOW_BOOT_APP, '--workers', '2'])
  const warming = await server.waitFor(l => l.msg === 'warming up the slow model')
  const workers = workerPids(server.proc.pid!)
  t.ok(workers.includes(warming.pid), 'a worker is warming up its model')
  t.teardown(() => { for (const pid of workers) if (running(pid)) process.kill(pid, 'SIGKILL') })
  server.proc.kill('SIGKILL')
  t.same(await gone(workers, 20_000), [], 'every worker exited')
  await logEnded(server)
  t.notMatch(server.stderr(), /terminate called|Napi::Error/, 'ONNX Runtime did not abort')
  t.ok(server.lines.some(l => l.msg === 'loaded with the primary gone: exiting' && l.pid === warming.pid), 'the warming worker exited once loaded')
  t.notOk(server.lines.some(l => l.msg === 'worker ready' || (l.msg ?? '').startsWith('Server listening')), 'and never listened')
})

t.test('cluster: every /metrics scrape is a valid exposition, and no counter goes down as workers are killed or recycled', async t => {
  const dir = modelsDir(t, { 'scaler.onnx': scalerModel(), 'slow.onnx': slowModel(1) })
  const server = await startReady(t, ['--models-dir', dir, '--app', OIP_APP, '--workers', '2', '--threads', '1', '--max-requests', '12', '--max-requests-jitter', '0'])
  const scrapes: string[] = []
  const scrape = async (when: string) => {
    const res = await fresh(server.port, 'GET', '/metrics')
    t.equal(res.status, 200, `scrape ${when}`)
    t.same(readExposition(res.text).problems, [], `a valid exposition ${when}`)
    if (scrapes.length > 0) t.same(countersDown(scrapes.at(-1)!, res.text), [], `no counter went down ${when}`)
    scrapes.push(res.text)
  }
  // Requests of three routes, answered 200 and 404, and a model run over OIP.
  const traffic = async () => {
    t.equal((await fresh(server.port, 'POST', '/scale', row)).status, 200)
    const tensor = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
    t.equal((await fresh(server.port, 'POST', '/v2/models/scaler/infer', tensor)).status, 200)
    t.equal((await fresh(server.port, 'GET', '/v2/models/nosuch')).status, 404)
  }
  for (let i = 0; i < 2; i++) await traffic()
  await scrape('after some traffic')
  await scrape('again')
  // A killed worker is counted as of the last scrape.
  const workers = server.lines.filter(l => l.msg === 'worker ready').map(l => l.workerPid as number)
  process.kill(workers[0], 'SIGKILL')
  await server.waitFor(l => l.msg === 'worker ready' && !workers.includes(l.workerPid))
  await scrape('after a worker was killed and replaced')
  // --max-requests recycles workers (a scrape is a request too): each sends
  // its final counts as it closes.
  const recycled = () => server.lines.filter(l => l.msg === 'worker exited' && l.code === 0).length
  for (let i = 0; i < 100 && recycled() < 1; i++) {
    await traffic()
    await scrape(`while workers are recycled (${i})`)
    await sleep(100)
  }
  t.ok(recycled() >= 1, 'a worker was recycled')
  await scrape('after a worker was recycled')
  server.proc.kill('SIGTERM')
  t.same(await server.exited, { code: 0, signal: null })
})
