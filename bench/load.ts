// One load run with autocannon, in its own process so that it can be pinned
// to a core (`taskset -c 1`). Reads a JSON spec from argv[2] (or, without
// one, from stdin), prints one JSON line: req/s, latency percentiles (ms),
// errors and non-2xx counts.
//   spec: {url, connections, duration, bodies: string[], base64?, headers?}
import autocannon from 'autocannon'
import { readFileSync } from 'node:fs'

const spec = JSON.parse(process.argv[2] ?? readFileSync(0, 'utf8')) as { url: string, connections: number, duration: number, bodies: string[], base64?: boolean, headers?: Record<string, string> }
// Binary bodies (OIP binary tensor data) travel as base64 in the spec.
const bodies: Array<string | Buffer> = spec.base64 ? spec.bodies.map(b => Buffer.from(b, 'base64')) : spec.bodies
let next = 0
const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  duration: spec.duration,
  method: 'POST',
  headers: { 'content-type': 'application/json', ...spec.headers },
  requests: [{
    method: 'POST',
    setupRequest: req => ({ ...req, body: bodies[next++ % bodies.length] as string }),
  }],
})
process.stdout.write(JSON.stringify({
  rps: result.requests.average,
  total: result.requests.total,
  p50: result.latency.p50,
  p90: result.latency.p90,
  p99: result.latency.p99,
  errors: result.errors + result.timeouts,
  non2xx: result.non2xx,
}) + '\n')
