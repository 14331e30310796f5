// An open-loop load generator: requests are sent on a fixed schedule (uniform
// or Poisson) at an offered rate, whatever the server does, so a slow server
// gets more requests in flight instead of fewer (a closed loop, where each
// connection waits for its answer, would slow down with the server and
// measure its own concurrency: by Little's law, latency = connections / rate).
//
// Latency is measured from each request's SCHEDULED send time, not from when
// it was written, so a stall of the generator or the server is charged to
// every request it delayed (no coordinated omission); the generator's own lag
// (write time - scheduled time) is reported apart, to check that it kept up.
//
// Raw node:net sockets, the request's bytes built once, HTTP/1.1 keep-alive,
// one request outstanding per socket: a request goes to an idle socket, or to
// a new one when none is idle, up to `maxSockets`; past that it is counted as
// unsent (the generator could not offer it). Responses are parsed from the
// status line and content-length only (chunked bodies count as errors).
// Statuses: the HTTP code; 'error' when the socket failed or closed with a
// request outstanding; 'timeout' when no answer came by drainMs after the
// schedule ended. bench/flood-check.ts checks all this against plain servers
// whose answers are known; this machine's single core sends about 20k req/s.
//
// Prints one JSON line:
//   {targetRps, offeredRps, sentRps, scheduled, sent, unsent, seconds,
//    sockets: {opened, peak}, sendLag: {p50, p99, max},
//    statuses: {"200": {count, rps, p50, p99, max}, "503": {...}, "error": ..., "timeout": ...}}
// Milliseconds throughout; rps over the scheduling window.
//   argv[2]: {url, rate, duration, body, headers?, method?, schedule?: 'uniform' | 'poisson',
//             maxSockets? (1024), sockets? (sockets opened before the start, 16), drainMs? (5000), seed? (1)}
import { connect, type Socket } from 'node:net'
import { resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { seededRandom } from '../framework/onnx-builder.ts'

export interface FloodSpec {
  url: string
  /** Offered requests per second. */
  rate: number
  /** Seconds of scheduling. */
  duration: number
  body: string
  headers?: Record<string, string>
  method?: string
  schedule?: 'uniform' | 'poisson'
  maxSockets?: number
  sockets?: number
  /** After the schedule ends, how long answers are waited for; the rest count as 'timeout'. */
  drainMs?: number
  seed?: number
}

export interface Summary { count: number, rps: number, p50: number, p99: number, max: number }

export interface FloodResult {
  targetRps: number
  offeredRps: number
  sentRps: number
  scheduled: number
  sent: number
  unsent: number
  seconds: number
  sockets: { opened: number, peak: number }
  sendLag: { p50: number, p99: number, max: number }
  statuses: Record<string, Summary>
}

/** Nearest-rank percentile of a sorted array. */
function pct (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

/** A growable list of doubles (latencies), cheap to push and sort. */
class Samples {
  private data = new Float64Array(1024)
  length = 0
  push (v: number) {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2)
      bigger.set(this.data)
      this.data = bigger
    }
    this.data[this.length++] = v
  }

  sorted (): Float64Array { return this.data.slice(0, this.length).sort() }
}

const CRLF2 = Buffer.from('\r\n\r\n')

export function flood (spec: FloodSpec): Promise<FloodResult> {
  const url = new URL(spec.url)
  const host = url.hostname
  const port = Number(url.port || 80)
  const body = Buffer.from(spec.body)
  const headers: Record<string, string> = { host: url.host, 'content-type': 'application/json', ...spec.headers, 'content-length': String(body.length) }
  const head = `${spec.method ?? 'POST'} ${url.pathname}${url.search} HTTP/1.1\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
  const requestBytes = Buffer.concat([Buffer.from(head, 'latin1'), body])
  const maxSockets = spec.maxSockets ?? 1024
  const drainMs = spec.drainMs ?? 5000
  const intervalMs = 1000 / spec.rate
  // A seeded uniform [0, 1) for the Poisson schedule (the one the model writer uses).
  const random = seededRandom(spec.seed ?? 1)
  const gap = spec.schedule === 'poisson' ? () => -Math.log(1 - random()) * intervalMs : () => intervalMs

  const byStatus = new Map<string, Samples>()
  const record = (status: string, ms: number) => {
    let s = byStatus.get(status)
    if (!s) byStatus.set(status, s = new Samples())
    s.push(ms)
  }
  const lag = new Samples()

  interface Conn { socket: Socket, scheduled: number, busy: boolean, buf?: Buffer, dead: boolean }
  const idle: Conn[] = []
  const all = new Set<Conn>()
  let opened = 0
  let peak = 0
  let outstanding = 0

  const finish = (conn: Conn, status: string) => {
    if (!conn.busy) return
    conn.busy = false
    outstanding--
    record(status, performance.now() - conn.scheduled)
  }
  const kill = (conn: Conn) => {
    if (conn.dead) return
    conn.dead = true
    finish(conn, 'error')
    all.delete(conn)
    const i = idle.indexOf(conn)
    if (i >= 0) idle.splice(i, 1)
    conn.socket.destroy()
  }
  const open = (): Conn => {
    const socket = connect({ host, port })
    socket.setNoDelay(true)
    const conn: Conn = { socket, scheduled: 0, busy: false, dead: false }
    all.add(conn)
    opened++
    peak = Math.max(peak, all.size)
    socket.on('data', chunk => onData(conn, chunk))
    socket.on('error', () => kill(conn))
    socket.on('close', () => kill(conn))
    return conn
  }
  function onData (conn: Conn, chunk: Buffer) {
    let buf = conn.buf ? Buffer.concat([conn.buf, chunk]) : chunk
    for (;;) {
      const end = buf.indexOf(CRLF2)
      if (end < 0) {
        if (buf.length > 65_536) return kill(conn)
        conn.buf = buf
        return
      }
      const headText = buf.toString('latin1', 0, end)
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(headText)
      if (!headText.startsWith('HTTP/1.') || !length) return kill(conn)
      const total = end + 4 + Number(length[1])
      if (buf.length < total) {
        conn.buf = buf
        return
      }
      finish(conn, headText.slice(9, 12))
      buf = buf.subarray(total)
      if (/\r\nconnection:[ \t]*close/i.test(headText)) {
        conn.dead = true
        all.delete(conn)
        conn.socket.destroy()
        return
      }
      if (!conn.busy && !idle.includes(conn)) idle.push(conn)
      if (buf.length === 0) {
        conn.buf = undefined
        return
      }
    }
  }

  let scheduled = 0
  let sent = 0
  let unsent = 0
  const send = (at: number) => {
    scheduled++
    let conn = idle.pop()
    if (!conn) {
      if (all.size >= maxSockets) { unsent++; return }
      conn = open()
    }
    conn.busy = true
    conn.scheduled = at
    outstanding++
    sent++
    conn.socket.write(requestBytes)
    lag.push(performance.now() - at)
  }

  return new Promise(resolve => {
    // Sockets opened (and connected) before the clock starts.
    const warm = Array.from({ length: Math.min(spec.sockets ?? 16, maxSockets) }, () => {
      const conn = open()
      idle.push(conn)
      return new Promise(done => { conn.socket.once('connect', done); conn.socket.once('close', done) })
    })
    Promise.all(warm).then(start)

    function start () {
      const t0 = performance.now()
      const endAt = t0 + spec.duration * 1000
      let next = t0
      const tick = () => {
        const now = performance.now()
        while (next <= now && next < endAt) {
          send(next)
          next += gap()
        }
        if (next >= endAt) return drain(t0, endAt)
        // Busy-wait (setImmediate, which still polls I/O) when the next send is
        // near; sleep when it is far (a timer may fire a millisecond late).
        const wait = next - performance.now()
        if (wait > 2) setTimeout(tick, wait - 1.5)
        else setImmediate(tick)
      }
      tick()
    }

    function drain (t0: number, endAt: number) {
      const seconds = (endAt - t0) / 1000
      const giveUpAt = performance.now() + drainMs
      const check = () => {
        if (outstanding > 0 && performance.now() < giveUpAt) return setTimeout(check, 5)
        for (const conn of all) finish(conn, 'timeout')
        for (const conn of [...all]) { conn.dead = true; conn.socket.destroy() }
        all.clear()
        const statuses: Record<string, Summary> = {}
        for (const [status, samples] of [...byStatus].sort(([a], [b]) => a.localeCompare(b))) {
          const s = samples.sorted()
          statuses[status] = { count: s.length, rps: s.length / seconds, p50: pct(s, 0.5), p99: pct(s, 0.99), max: s[s.length - 1] }
        }
        const l = lag.sorted()
        resolve({
          targetRps: spec.rate,
          offeredRps: scheduled / seconds,
          sentRps: sent / seconds,
          scheduled,
          sent,
          unsent,
          seconds,
          sockets: { opened, peak },
          sendLag: { p50: pct(l, 0.5), p99: pct(l, 0.99), max: l[l.length - 1] ?? NaN },
          statuses,
        })
      }
      check()
    }
  })
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolvePath(process.argv[1])) {
  const result = await flood(JSON.parse(process.argv[2]) as FloodSpec)
  process.stdout.write(JSON.stringify(result) + '\n')
}
