// Paired A/B of servers on one route: checkouts of this project against each
// other (the same route before and after a change) and against the
// hand-written baselines, in alternating rounds, so that the shared host's
// drift falls on every variant alike. What a change is worth is read from
// the medians and from the server CPU per request, which a busy neighbour
// moves less than req/s (it is read from /proc: Linux only).
//
//   node --import tsx bench/ab.ts '<spec>' [rounds (5)]
//   spec: {"target": "tiny" | "mlp" | "tagger" | "ner" | "pos", "oip"?: true,
//          "variants": [{"name": "baseline", "baseline": true},
//                       {"name": "before", "cwd": "/tmp/wt-old"}, {"name": "after"}]}
//   a variant may also set environment variables: {"name": "x", "env": {"INLINE_BELOW_US": "100"}},
//   and the app module: compiled as bench/run.ts serves it (after `node scripts/build.mjs --out bench/dist bench/app.ts`),
//   {"name": "compiled", "env": {"SERVER_ENTRY": "bench/dist/server.js"}, "app": "bench/dist/bench/app.js"}
//   env: C (connections, 64), SEC (seconds per run, 4)
//
// A variant is a framework server (`scripts/start.sh --app bench/app.ts`
// from its `cwd`, a checkout of this project; default this one) on
// /bench/<target>, /<target> for ner and pos, or OIP infer with "oip"; or
// with "baseline", the hand-written server of bench/run.ts for the target.
// Servers on core 0, autocannon (bench/load.ts) on core 1, as in
// bench/run.ts; each load cycles through the same examples as there.
// Prints one line per variant: req/s of each round, the median and its
// ratio to the first baseline's, server CPU us per request, p99.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchModels } from './models.ts'
import type { TaggerConfig } from '../nlp/tagger.ts'
import { featureBodies, jsonBodies, oipBodies, sentenceBodies, writeModels } from './workload.ts'

interface Variant { name: string, cwd?: string, baseline?: boolean, env?: Record<string, string>, app?: string }
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const spec = JSON.parse(process.argv[2] ?? '{}') as { target: string, oip?: boolean, variants: Variant[] }
const rounds = Number(process.argv[3] ?? 5)
const connections = Number(process.env.C ?? 64)
const seconds = Number(process.env.SEC ?? 4)
const nlp = spec.target === 'ner' || spec.target === 'pos'
const model = benchModels().find(m => m.name === spec.target)
if (!nlp && !model) throw new Error(`target must be tiny, mlp, tagger, ner or pos, not ${spec.target}`)

const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-ab-'))
writeModels(dir)

/** The bodies bench/run.ts sends to this target, for the baseline and the resource route, and through OIP. */
function bodies (oip: boolean): string[] {
  if (nlp) return oip ? featureBodies(JSON.parse(readFileSync(join(dir, spec.target, 'config.json'), 'utf8')) as TaggerConfig) : sentenceBodies()
  return oip ? oipBodies(model!) : jsonBodies(model!)
}

/** Server CPU time so far, in microseconds (utime + stime from /proc, in clock ticks of 10 ms). */
function cpuUs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

interface Run { rps: number, p99: number, us: number, bad: number }
const servers: Array<{ v: Variant, child: ChildProcess, url: string, bodies: string[], runs: Run[] }> = []
let port = 18_900
try {
  for (const v of spec.variants) {
    const p = port++
    const args = v.baseline
      ? nlp
        ? ['node', '--import', 'tsx', 'bench/baseline-nlp-server.ts', join(dir, spec.target), String(p)]
        : ['node', '--import', 'tsx', 'bench/baseline-server.ts', join(dir, `${model!.name}.onnx`), model!.input, model!.output, model!.type, String(model!.width), String(p)]
      : ['sh', 'scripts/start.sh', '--app', v.app ?? 'bench/app.ts', '--models-dir', dir, '--port', String(p), '--log-level', 'error']
    const child = spawn('taskset', ['-c', '0', ...args], { cwd: v.baseline ? root : (v.cwd ?? root), stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, SERVER_ENTRY: '--import tsx server.ts', ...v.env } })
    const base = `http://127.0.0.1:${p}`
    for (let tries = 0; ; tries++) {
      if (child.exitCode !== null || tries > 600) throw new Error(`${v.name} did not start`)
      try { if ((await fetch(v.baseline ? base : `${base}/health/ready`)).status === (v.baseline ? 404 : 200)) break } catch {}
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const path = v.baseline ? '/infer' : spec.oip ? `/v2/models/${spec.target}/infer` : nlp ? `/${spec.target}` : `/bench/${spec.target}`
    servers.push({ v, child, url: base + path, bodies: bodies(!v.baseline && spec.oip === true), runs: [] })
  }
  const load = (s: typeof servers[number], duration: number) => JSON.parse(execFileSync('taskset', ['-c', '1', process.execPath, '--import', 'tsx', 'bench/load.ts'], {
    cwd: root, input: JSON.stringify({ url: s.url, connections, duration, bodies: s.bodies }),
  }).toString()) as { rps: number, total: number, p99: number, errors: number, non2xx: number }
  for (const s of servers) load(s, 2) // warm-up, not counted
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? servers : [...servers].reverse()) {
      const before = cpuUs(s.child.pid!)
      const out = load(s, seconds)
      s.runs.push({ rps: out.rps, p99: out.p99, us: (cpuUs(s.child.pid!) - before) / out.total, bad: out.errors + out.non2xx })
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
  const first = servers.find(s => s.v.baseline) ?? servers[0]
  const reference = median(first.runs.map(x => x.rps))
  for (const s of servers) {
    const rps = median(s.runs.map(x => x.rps))
    process.stdout.write(`${s.v.name.padEnd(12)} req/s ${s.runs.map(x => Math.round(x.rps)).join(', ')}: median ${Math.round(rps)}, ${(rps / reference).toFixed(2)}x ${first.v.name}; ` +
      `server CPU ${median(s.runs.map(x => x.us)).toFixed(1)} us per request (${s.runs.map(x => x.us.toFixed(0)).join(', ')}); p99 ${median(s.runs.map(x => x.p99))} ms; errors and non-2xx ${s.runs.reduce((n, x) => n + x.bad, 0)}\n`)
  }
} finally {
  for (const s of servers) s.child.kill('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
}
