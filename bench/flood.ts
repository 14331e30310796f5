// A flood: many keep-alive connections in a closed loop, each latency kept
// with its status, so refusals (503) and admitted requests (200) are measured
// apart. Prints one JSON line. argv[2]: {url, connections, duration, body}
import { Agent, request } from 'node:http'

const spec = JSON.parse(process.argv[2]) as { url: string, connections: number, duration: number, body: string }
const url = new URL(spec.url)
const agent = new Agent({ keepAlive: true, maxSockets: spec.connections })
const byStatus = new Map<number | string, number[]>()
const end = performance.now() + spec.duration * 1000
const body = Buffer.from(spec.body)

function once (): Promise<void> {
  return new Promise(resolve => {
    const started = performance.now()
    const req = request({ agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } }, res => {
      res.resume()
      res.on('end', () => {
        const list = byStatus.get(res.statusCode ?? 0) ?? []
        list.push(performance.now() - started)
        byStatus.set(res.statusCode ?? 0, list)
        resolve()
      })
    })
    req.on('error', () => { const l = byStatus.get('error') ?? []; l.push(performance.now() - started); byStatus.set('error', l); resolve() })
    req.end(body)
  })
}

async function loop () {
  while (performance.now() < end) await once()
}

const started = performance.now()
await Promise.all(Array.from({ length: spec.connections }, loop))
const seconds = (performance.now() - started) / 1000
const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }
const out: Record<string, unknown> = { offeredRps: [...byStatus.values()].reduce((n, l) => n + l.length, 0) / seconds }
for (const [status, list] of byStatus) out[status] = { count: list.length, rps: list.length / seconds, p50: pct(list, 0.5), p99: pct(list, 0.99) }
process.stdout.write(JSON.stringify(out) + '\n')
agent.destroy()
