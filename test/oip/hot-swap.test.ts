// Hot swap on a real server: requests flow over HTTP from several clients
// while the model file is replaced and a version folder is added, then
// SIGHUP; not one request may fail, and the new model must be served after.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { childEnv } from '../fixtures/server.ts'
import { addModel, scalerModel, tempModels, writeModels } from '../fixtures/oip.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

async function startServer (t: Test, dir: string) {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'server.ts', '--port', '0', '--models-dir', dir, '--threads', '1', '--app', fileURLToPath(new URL('../fixtures/oip-app.ts', import.meta.url))], {
    cwd: ROOT, env: childEnv({ LOG_LEVEL: 'info' }), stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  const lines: Array<Record<string, any>> = []
  let buffer = ''
  let stderr = ''
  proc.stderr!.setEncoding('utf8').on('data', c => { stderr += c })
  const waitFor = (match: (l: Record<string, any>) => boolean, timeoutMs = 30_000) => new Promise<Record<string, any>>((resolve, reject) => {
    const found = lines.find(match)
    if (found) return resolve(found)
    const timer = setTimeout(() => reject(new Error(`no such log line; stderr: ${stderr}\n${lines.map(l => JSON.stringify(l)).join('\n')}`)), timeoutMs)
    proc.stdout!.on('data', function check () {
      const l = lines.find(match)
      if (l) { clearTimeout(timer); proc.stdout!.off('data', check); resolve(l) }
    })
  })
  proc.stdout!.setEncoding('utf8').on('data', chunk => {
    buffer += chunk
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      try { lines.push(JSON.parse(buffer.slice(0, nl))) } catch { lines.push({ raw: buffer.slice(0, nl) }) }
      buffer = buffer.slice(nl + 1)
    }
  })
  const listening = await waitFor(l => /Server listening at/.test(l.msg ?? ''))
  const port = Number(/:(\d+)$/.exec(listening.msg)![1])
  await waitFor(l => l.msg === 'ready: models loaded')
  return { proc, port, lines, waitFor }
}

t.test('SIGHUP swaps a replaced file and a new version under load with zero failed requests', async t => {
  const dir = tempModels(t, { 'scaler.onnx': scalerModel(), 'mlp.onnx': addModel([1, 1, 1, 1]), 'v/1/model.onnx': addModel([1, 1, 1, 1]) })
  const server = await startServer(t, dir)
  const base = `http://127.0.0.1:${server.port}`
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] })

  let stop = false
  const failures: string[] = []
  const answers = new Map<string, number>()
  let total = 0
  const client = async (model: string) => {
    while (!stop) {
      try {
        const res = await fetch(`${base}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
        const text = await res.text()
        total++
        if (res.status !== 200) failures.push(`${model}: ${res.status} ${text}`)
        else {
          const key = `${model} v${JSON.parse(text).model_version ?? '-'} ${JSON.stringify(JSON.parse(text).outputs[0].data)}`
          answers.set(key, (answers.get(key) ?? 0) + 1)
        }
      } catch (err) {
        total++
        failures.push(`${model}: ${(err as Error).message}`)
      }
    }
  }
  const clients = [client('mlp'), client('mlp'), client('v'), client('v')]
  await new Promise(resolve => setTimeout(resolve, 500))
  for (let i = 2; i <= 3; i++) {
    writeModels(dir, { 'mlp.onnx': addModel([i, i, i, i]), [`v/${i}/model.onnx`]: addModel([i, i, i, i]) })
    const swaps = server.lines.filter(l => l.msg === 'reload done').length
    server.proc.kill('SIGHUP')
    await server.waitFor(l => l.msg === 'reload done' && server.lines.filter(x => x.msg === 'reload done').length > swaps)
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  stop = true
  await Promise.all(clients)
  t.comment(`hot swap under load: ${total} requests, ${failures.length} failed; answers: ${JSON.stringify(Object.fromEntries(answers))}`)
  t.same(failures, [], 'zero failed requests across two SIGHUP swaps')
  t.ok(total > 50, `requests flowed (${total})`)
  t.ok(answers.get('mlp v- [3,3,3,3]'), 'the replaced file is served after the swap')
  t.ok(answers.get('mlp v- [1,1,1,1]'), 'the old file was served before it')
  t.ok(answers.get('v v3 [3,3,3,3]'), 'the new version folder is served after the swap')
  const swapped = server.lines.filter(l => l.msg === 'model swapped').map(l => l.model)
  t.same([...new Set(swapped)].sort(), ['mlp', 'v'])
  const liveness = await fetch(`${base}/v2/health/ready`)
  t.equal(liveness.status, 200)
  server.proc.kill('SIGTERM')
  await new Promise(resolve => server.proc.once('exit', resolve))
})
