// How many inference threads? Serves the bench app with 1..N threads on every
// core (not pinned; the load generator shares the cores, as it would on a real
// 2-core box with a proxy) and prints req/s and p99 for mlp and tiny at c=64.
//   node --import tsx bench/threads.ts [maxThreads=3] [seconds=4]
import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { benchModels } from './models.ts'

const [maxThreads = '3', seconds = '4'] = process.argv.slice(2)
const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-threads-'))
const models = benchModels()
for (const m of models) writeFileSync(join(dir, `${m.name}.onnx`), m.bytes)
copyFileSync(join('models', 'scaler.onnx'), join(dir, 'scaler.onnx'))

const run = (args: string[]) => new Promise<string>((resolve, reject) => {
  const c = spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  c.stdout.on('data', d => { out += d })
  c.on('exit', code => code === 0 ? resolve(out) : reject(new Error(`exit ${code}`)))
})

for (let threads = 1; threads <= Number(maxThreads); threads++) {
  for (const batch of [64, 1]) {
    const port = 18_700
    const server = spawn(process.execPath, ['--import', 'tsx', 'server.ts', '--app', 'bench/app.ts', '--models-dir', dir, '--port', String(port), '--log-level', 'error', '--threads', String(threads), '--max-batch-size', String(batch)], { stdio: 'ignore' })
    let exited = false
    server.once('exit', () => { exited = true })
    for (;;) {
      if (exited) throw new Error('server exited before it was ready')
      try { if ((await fetch(`http://127.0.0.1:${port}/health/ready`)).status === 200) break } catch {}
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    for (const m of models.filter(m => m.name === 'tiny' || m.name === 'mlp')) {
      const body = JSON.stringify({ inputs: [m.example] })
      await run(['bench/load.ts', JSON.stringify({ url: `http://127.0.0.1:${port}/bench/${m.name}`, connections: 64, duration: 1, bodies: [body] })])
      const r = JSON.parse(await run(['bench/load.ts', JSON.stringify({ url: `http://127.0.0.1:${port}/bench/${m.name}`, connections: 64, duration: Number(seconds), bodies: [body] })]))
      console.log(`threads=${threads} maxBatch=${batch} ${m.name} c=64: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`)
    }
    server.kill('SIGTERM')
    await new Promise(resolve => server.once('exit', resolve))
  }
}
rmSync(dir, { recursive: true, force: true })
