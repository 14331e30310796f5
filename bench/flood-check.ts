// Checks bench/flood.ts against plain node:http servers whose answers are
// known, before its figures are trusted. Server pinned to core 0, generator to
// core 1, as in bench/run.ts. Prints one line per check with what was wanted
// and what was measured, and exits 1 if a check failed.
//   node --import tsx bench/flood-check.ts [port=19250] [seconds=3]
//
//   fast:     200 at once; at 2k, 10k and 20k req/s the generator keeps its
//             rate (offered within 2%, nothing unsent, send lag p99 < 2 ms)
//   delay:    200 after 20 ms (a timer); p50 ~20 ms, sockets ~ rate x 20 ms
//   mixed:    every other request 503 at once, the rest 200 after 10 ms:
//             the statuses are measured apart
//   stall:    200 at once, but the event loop blocks 100 ms every 500 ms:
//             ~20% of requests are scheduled inside a stall, so p99 must be
//             near 100 ms (a closed loop, or timing from the write, would hide it)
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FloodResult } from './flood.ts'

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')

if (process.argv[2] === 'serve') {
  const [, , , mode, port] = process.argv
  let n = 0
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const ok = () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' }); res.end('{"ok":true}') }
      if (mode === 'delay') setTimeout(ok, 20)
      else if (mode === 'mixed') {
        if (n++ % 2 === 0) { res.writeHead(503, { 'content-length': '4' }); res.end('full') } else setTimeout(ok, 10)
      } else ok()
    })
  })
  server.keepAliveTimeout = 10_000
  if (mode === 'stall') {
    setInterval(() => { const until = performance.now() + 100; while (performance.now() < until); }, 500)
  }
  server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'))
} else {
  const port = Number(process.argv[2] ?? 19_250)
  const seconds = Number(process.argv[3] ?? 3)
  const node = process.execPath
  let failed = false

  const serve = (mode: string) => new Promise<{ stop: () => void }>((resolve, reject) => {
    const child = spawn('taskset', ['-c', '0', node, '--import', 'tsx', here, 'serve', mode, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    child.stdout.once('data', () => resolve({ stop: () => child.kill() }))
    child.once('exit', code => reject(new Error(`server exited ${code}`)))
  })
  const flood = (rate: number, schedule = 'uniform'): Promise<FloodResult> => new Promise((resolve, reject) => {
    const spec = { url: `http://127.0.0.1:${port}/x`, rate, duration: seconds, body: '{"inputs":[[1,2,3]]}', schedule }
    const child = spawn('taskset', ['-c', '1', node, '--import', 'tsx', join(root, 'bench', 'flood.ts'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    child.once('exit', code => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`flood exited ${code}`)))
  })
  const f = (n: number) => Number.isFinite(n) ? n.toFixed(2) : String(n)
  const check = (name: string, r: FloodResult, wants: Array<[string, boolean]>) => {
    const bad = wants.filter(([, ok]) => !ok).map(([w]) => w)
    if (bad.length) failed = true
    const st = Object.entries(r.statuses).map(([k, v]) => `${k}: n=${v.count} p50 ${f(v.p50)} p99 ${f(v.p99)} max ${f(v.max)}`).join('; ')
    console.log(`${bad.length ? 'FAIL' : 'ok  '} ${name}: offered ${Math.round(r.offeredRps)}/${r.targetRps} sent ${Math.round(r.sentRps)} unsent ${r.unsent} sockets ${r.sockets.peak} lag p99 ${f(r.sendLag.p99)} | ${st}${bad.length ? ` | wanted: ${bad.join(', ')}` : ''}`)
  }

  let s = await serve('fast')
  for (const rate of [2000, 10_000, 20_000]) {
    for (const schedule of ['uniform', 'poisson']) {
      const r = await flood(rate, schedule)
      check(`fast ${schedule} ${rate}/s`, r, [
        ['offered within 2%', Math.abs(r.offeredRps / rate - 1) < 0.02],
        ['nothing unsent', r.unsent === 0],
        ['all 200', Object.keys(r.statuses).join() === '200' && r.statuses['200'].count === r.sent],
        ['send lag p99 < 2 ms', r.sendLag.p99 < 2],
      ])
    }
  }
  s.stop()

  s = await serve('delay')
  {
    const r = await flood(2000)
    const ok = r.statuses['200']
    check('delay 20 ms, 2000/s', r, [
      ['p50 in 20-23 ms', ok?.p50 >= 20 && ok?.p50 < 23],
      ['about 40 sockets (20-80)', r.sockets.peak >= 20 && r.sockets.peak <= 80],
      ['nothing unsent', r.unsent === 0],
    ])
  }
  s.stop()

  s = await serve('mixed')
  {
    const r = await flood(2000)
    const ok = r.statuses['200']
    const no = r.statuses['503']
    check('mixed 503 at once / 200 after 10 ms, 2000/s', r, [
      ['half 503', Math.abs(no?.count / r.sent - 0.5) < 0.01],
      ['503 p99 < 5 ms', no?.p99 < 5],
      ['200 p50 in 10-13 ms', ok?.p50 >= 10 && ok?.p50 < 13],
    ])
  }
  s.stop()

  s = await serve('stall')
  {
    const r = await flood(2000)
    const ok = r.statuses['200']
    check('stall 100 ms every 500 ms, 2000/s', r, [
      ['p99 in 90-110 ms', ok?.p99 >= 90 && ok?.p99 < 110],
      ['max in 100-115 ms', ok?.max >= 100 && ok?.max < 115],
      ['p50 under 50 ms', ok?.p50 < 50],
    ])
  }
  s.stop()
  process.exitCode = failed ? 1 : 0
}
