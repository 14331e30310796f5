// `npm run bench`: the whole benchmark in one run, written to bench/RESULTS.md.
//
// Every server is pinned to core 0 and every load generator to core 1
// (taskset), on loopback. Configurations: the models tiny, mlp and tagger
// (bench/models.ts) at concurrency 1, 16 and 64, one example per request,
// against (a) this framework through a resource route (/bench/<model>) and
// through the Open Inference Protocol (JSON, and binary tensors for mlp),
// (b) the hand-written baseline (bench/baseline-server.ts), (c) session.run in
// a loop at batch 1 and 64; /ner and /pos with real sentences (framework only:
// a hand-written baseline would have to re-implement the NLP pipeline). Then a flood at 10x the concurrency, and the
// default server's start-up time and peak RSS.
//   BENCH_SECONDS=4 (per run of a configuration), BENCH_ROUNDS=3 (runs, interleaved with the baseline), BENCH_THREADS (framework threads; default: the server's default)
//   BENCH_ONLY=tiny,tagger: a partial run of those groups (models, /ner, /pos) for development: no
//   flood, no default-server figures, written to bench/RESULTS.partial.md instead of RESULTS.md
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchModels, type BenchModel } from './models.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number)
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined
const SERVER_CORE = '0'
const LOAD_CORE = '1'
const node = process.execPath
const log = (...args: unknown[]) => process.stderr.write(args.join(' ') + '\n')

interface LoadResult { rps: number, p50: number, p99: number, errors: number, non2xx: number, total: number }

function run (cmd: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? root, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    child.on('exit', code => code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)))
  })
}

const pinned = (core: string, script: string, args: string[]) => ['-c', core, node, '--import', 'tsx', script, ...args]

async function load (url: string, connections: number, bodies: string[], extra: { base64?: boolean, headers?: Record<string, string> } = {}): Promise<LoadResult> {
  const out = await run('taskset', pinned(LOAD_CORE, 'bench/load.ts', [JSON.stringify({ url, connections, duration: SECONDS, bodies, ...extra })]))
  return JSON.parse(out.trim().split('\n').pop()!)
}

async function warm (url: string, bodies: string[], extra: { base64?: boolean, headers?: Record<string, string> } = {}) {
  await run('taskset', pinned(LOAD_CORE, 'bench/load.ts', [JSON.stringify({ url, connections: 64, duration: 1, bodies, ...extra })]))
}

/** Median of several runs of one configuration, field by field (errors summed). */
function median (runs: LoadResult[]): LoadResult {
  const mid = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }
  return {
    rps: mid(runs.map(r => r.rps)),
    p50: mid(runs.map(r => r.p50)),
    p99: mid(runs.map(r => r.p99)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    total: runs.reduce((n, r) => n + r.total, 0),
  }
}

interface Server { child: ChildProcess, readyMs: number, stop: () => Promise<number> }

/** Peak resident set (VmHWM) of a process, in MB. */
function peakRssMb (pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : NaN
}

async function startServer (args: string[], readyUrl: string, readyStatus = 200): Promise<Server> {
  const started = performance.now()
  const child = spawn('taskset', ['-c', SERVER_CORE, node, '--import', 'tsx', ...args], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  let exited = false
  child.on('exit', () => { exited = true })
  for (;;) {
    if (exited) throw new Error(`server ${args.join(' ')} exited before it was ready`)
    try {
      const res = await fetch(readyUrl)
      if (res.status === readyStatus) break
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  const readyMs = performance.now() - started
  return {
    child,
    readyMs,
    stop: async () => {
      const rss = peakRssMb(child.pid!)
      child.kill('SIGTERM')
      await new Promise(resolve => exited ? resolve(null) : child.once('exit', resolve))
      return rss
    },
  }
}

const jsonBody = (m: BenchModel) => JSON.stringify({ inputs: [m.example] })
const oipBody = (m: BenchModel) => JSON.stringify({ inputs: [{ name: m.input, shape: [1, m.width], datatype: m.type === 'int64' ? 'INT64' : 'FP32', data: m.example }] })
function oipBinary (m: BenchModel): { body: string, headers: Record<string, string> } {
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: m.input, shape: [1, m.width], datatype: 'FP32', parameters: { binary_data_size: m.width * 4 } }],
    parameters: { binary_data_output: true },
  }))
  const tensor = Buffer.from(Float32Array.from(m.example).buffer)
  return { body: Buffer.concat([header, tensor]).toString('base64'), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) } }
}

/** Sentences for /ner and /pos: news-like English, 5 to 30 tokens. */
const SENTENCES = [
  'Barack Obama visited Paris on Monday.',
  'The European Central Bank left interest rates unchanged on Thursday, citing slowing growth in Germany and Italy.',
  'Apple opened a new store in Tokyo.',
  'Angela Merkel met Emmanuel Macron in Berlin to discuss the budget of the European Union and the war in Ukraine.',
  'I think the new phone is way too expensive for what it does.',
  'Researchers at Stanford University published the study in Nature last week.',
  'Thanks!',
  'Microsoft said on Tuesday that it would buy the game maker Activision Blizzard for about $69 billion in cash.',
]

interface Row { target: string, model: string, c: number | string, r: LoadResult, spread?: number[] }

async function main () {
  const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-bench-'))
  const models = benchModels()
  for (const m of models) writeFileSync(join(dir, `${m.name}.onnx`), m.bytes)
  // The real app's models too, so app.ts's resources load as in production.
  for (const name of ['scaler.onnx', 'ner', 'pos']) {
    if (existsSync(join(root, 'models', name))) cpSync(join(root, 'models', name), join(dir, name), { recursive: true })
  }
  const rows: Row[] = []
  const raw: Array<{ model: string, batch: number, examplesPerSec: number, p50: number, p99: number }> = []
  const rss: Record<string, number> = {}
  const notes: string[] = []

  // (c) The ceiling: session.run in a loop.
  for (const m of models) {
    if (ONLY && !ONLY.has(m.name)) continue
    log(`raw ${m.name}`)
    const out = await run('taskset', pinned(SERVER_CORE, 'bench/raw.ts', [join(dir, `${m.name}.onnx`), m.input, m.type, String(m.width), String(Math.min(3, SECONDS))]))
    for (const line of out.trim().split('\n')) raw.push({ model: m.name, ...JSON.parse(line) })
  }

  // (a) This framework and (b) the hand-written baselines run side by side
  // (all pinned to the server core; an idle server costs nothing), and each
  // configuration is measured in turn against its baseline, ROUNDS times in
  // alternating order: a load change on this shared machine then hits both
  // sides alike instead of whichever happened to run later. Medians are kept.
  const port = 18_400
  const threads = process.env.BENCH_THREADS ? ['--threads', process.env.BENCH_THREADS] : []
  const fw = await startServer(['server.ts', '--app', 'bench/app.ts', '--models-dir', dir, '--port', String(port), '--log-level', 'error', ...threads], `http://127.0.0.1:${port}/health/ready`)
  const base = `http://127.0.0.1:${port}`
  let hasOip = false
  try { hasOip = (await fetch(`${base}/v2/models/mlp/ready`)).status === 200 } catch {}
  if (!hasOip) notes.push('OIP routes were not served (framework/oip.ts missing or mlp not ready): no OIP rows.')
  const baselines = new Map<string, Server>()
  for (const [i, m] of models.entries()) {
    const bport = 18_500 + i
    baselines.set(m.name, await startServer(['bench/baseline-server.ts', join(dir, `${m.name}.onnx`), m.input, m.output, m.type, String(m.width), String(bport)], `http://127.0.0.1:${bport}/`, 404))
  }

  interface Target { target: string, model: string, url: string, bodies: string[], extra?: { base64?: boolean, headers?: Record<string, string> } }
  const targetsFor = (m: BenchModel, i: number): Target[] => {
    const list: Target[] = [
      { target: 'baseline (hand-written)', model: m.name, url: `http://127.0.0.1:${18_500 + i}/infer`, bodies: [jsonBody(m)] },
      { target: 'framework: resource route', model: m.name, url: `${base}/bench/${m.name}`, bodies: [jsonBody(m)] },
    ]
    if (hasOip) {
      list.push({ target: 'framework: OIP JSON', model: m.name, url: `${base}/v2/models/${m.name}/infer`, bodies: [oipBody(m)] })
      if (m.name === 'mlp') {
        const b = oipBinary(m)
        list.push({ target: 'framework: OIP binary', model: m.name, url: `${base}/v2/models/${m.name}/infer`, bodies: [b.body], extra: { base64: true, headers: b.headers } })
      }
    }
    return list
  }
  const taggerBodies = SENTENCES.map(text => JSON.stringify({ text }))
  const groups: Target[][] = [
    ...models.map((m, i) => targetsFor(m, i)),
    ...['ner', 'pos'].map(route => [{ target: 'framework: resource route', model: `/${route}`, url: `${base}/${route}`, bodies: taggerBodies }]),
  ].filter(group => !ONLY || ONLY.has(group[0].model.replace(/^\//, '')))
  // Warm up every target (JIT, sessions' first batch sizes); not measured.
  for (const group of groups) for (const tgt of group) await warm(tgt.url, tgt.bodies, tgt.extra)
  const samples = new Map<string, { tgt: Target, c: number, runs: LoadResult[] }>()
  for (let round = 0; round < ROUNDS; round++) {
    for (const group of groups) {
      for (const c of CONCURRENCY) {
        const order = round % 2 === 0 ? group : [...group].reverse()
        for (const tgt of order) {
          log(`round ${round + 1}/${ROUNDS} ${tgt.target} ${tgt.model} c=${c}`)
          const key = `${tgt.target}|${tgt.model}|${c}`
          if (!samples.has(key)) samples.set(key, { tgt, c, runs: [] })
          samples.get(key)!.runs.push(await load(tgt.url, c, tgt.bodies, tgt.extra))
        }
      }
    }
  }
  for (const { tgt, c, runs } of samples.values()) rows.push({ target: tgt.target, model: tgt.model, c, r: median(runs), spread: runs.map(r => r.rps) })
  if (ONLY) {
    rss.framework = await fw.stop()
    for (const [name, b] of baselines) rss[`baseline ${name}`] = await b.stop()
    rmSync(dir, { recursive: true, force: true })
    writeFileSync(join(root, 'bench', 'RESULTS.partial.md'), report({ rows, raw, rss, flood: {}, alive: true, starts: [], notes: [`Partial run: BENCH_ONLY=${process.env.BENCH_ONLY}.`] }))
    log('wrote bench/RESULTS.partial.md')
    return
  }

  // Flood: 10x the top concurrency on mlp through the resource route.
  log('flood mlp c=640')
  const mlp = models.find(m => m.name === 'mlp')!
  const floodOut = await run('taskset', pinned(LOAD_CORE, 'bench/flood.ts', [JSON.stringify({ url: `${base}/bench/mlp`, connections: 640, duration: SECONDS, body: jsonBody(mlp) })]))
  const flood = JSON.parse(floodOut.trim())
  const alive = fw.child.exitCode === null
  rss.framework = await fw.stop()
  for (const [name, b] of baselines) rss[`baseline ${name}`] = await b.stop()

  // The default server (app.ts, the bundled models, default threads): start-up and peak RSS under load.
  const dport = 18_600
  const starts: number[] = []
  for (let i = 0; i < 3; i++) {
    const d = await startServer(['server.ts', '--port', String(dport), '--log-level', 'error'], `http://127.0.0.1:${dport}/health/ready`)
    starts.push(d.readyMs)
    if (i < 2) { await d.stop(); continue }
    log('default server under load')
    const scaler = JSON.stringify({ rows: [[5.1, 3.5, 1.4, 0.2]] })
    rows.push({ target: 'default server: /scale', model: 'scaler', c: 64, r: await load(`http://127.0.0.1:${dport}/scale`, 64, [scaler]) })
    rss['default server'] = await d.stop()
  }
  rmSync(dir, { recursive: true, force: true })
  writeFileSync(join(root, 'bench', 'RESULTS.md'), report({ rows, raw, rss, flood, alive, starts, notes }))
  log('wrote bench/RESULTS.md')
}

const f0 = (n: number) => Math.round(n).toLocaleString('en-US')
const f1 = (n: number) => n === undefined || Number.isNaN(n) ? '-' : n.toFixed(n < 10 ? 2 : 1)

function report ({ rows, raw, rss, flood, alive, starts, notes }: {
  rows: Row[], raw: Array<{ model: string, batch: number, examplesPerSec: number, p50: number, p99: number }>,
  rss: Record<string, number>, flood: Record<string, any>, alive: boolean, starts: number[], notes: string[]
}): string {
  const find = (target: string, model: string, c: number) => rows.find(r => r.target === target && r.model === model && r.c === c)?.r
  const ratio = (target: string, model: string, c: number) => {
    const a = find(target, model, c)
    const b = find('baseline (hand-written)', model, c)
    return a && b ? a.rps / b.rps : NaN
  }
  const goal = (label: string, value: number, want: number, unit = 'x') =>
    `| ${label} | ${Number.isNaN(value) ? '-' : value.toFixed(2) + unit} | ${want}${unit} | ${Number.isNaN(value) ? 'not measured' : value >= want ? 'met' : 'MISSED'} |`
  const below = (label: string, value: number, limit: number, unit: string) =>
    `| ${label} | ${Number.isNaN(value) || value === undefined ? '-' : value.toFixed(1) + ' ' + unit} | < ${limit} ${unit} | ${value === undefined || Number.isNaN(value) ? 'not measured' : value < limit ? 'met' : 'MISSED'} |`
  const mlp64 = find('framework: resource route', 'mlp', 64)
  const admitted = flood['200']
  const refused = flood['503']
  const unloaded1 = find('framework: resource route', 'mlp', 1)
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  const lines = [
    '# Benchmark results',
    '',
    `Made by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
    `Machine: ${cpus().length} x ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GB RAM, Node ${process.version}, Linux; shared with other jobs, so compare within this run.`,
    `Every server pinned to core ${SERVER_CORE}, every load generator (autocannon ${'\u2265'}8, bench/load.ts) to core ${LOAD_CORE}, loopback, ${SECONDS} s per configuration, one example per request, keep-alive.`,
    `Each configuration ran ${ROUNDS} times, interleaved with its baseline in alternating order; the tables give medians (req/s range over the runs in the last column).`,
    '',
    '## Goals',
    '',
    '| Goal | Measured | Wanted | |',
    '| --- | --- | --- | --- |',
    goal('mlp c=64, resource route (JSON) / baseline', ratio('framework: resource route', 'mlp', 64), 1.8),
    goal('mlp c=64, OIP JSON / baseline', ratio('framework: OIP JSON', 'mlp', 64), 1.8),
    goal('mlp c=64, OIP binary / baseline', ratio('framework: OIP binary', 'mlp', 64), 3),
    below('mlp c=64 p99 (resource route)', mlp64?.p99 ?? NaN, 20, 'ms'),
    goal('tagger c=64, resource route / baseline', ratio('framework: resource route', 'tagger', 64), 2),
    goal('tagger c=64, OIP JSON / baseline', ratio('framework: OIP JSON', 'tagger', 64), 2),
    goal('tiny c=1, resource route / baseline', ratio('framework: resource route', 'tiny', 1), 0.8),
    goal('tiny c=64, resource route / baseline', ratio('framework: resource route', 'tiny', 64), 1),
    below('flood: refusal p99', refused?.p99 ?? NaN, 10, 'ms'),
    below('flood: admitted p99 / mlp c=64 p99', admitted && mlp64 ? admitted.p99 / mlp64.p99 : NaN, 2, 'x'),
    // autocannon counts whole milliseconds: an unloaded p99 of 0 ms has no ratio.
    below('flood: admitted p99 / mlp c=1 p99', admitted && unloaded1?.p99 ? admitted.p99 / unloaded1.p99 : NaN, 2, 'x'),
    below('default server ready after start (median of 3)', [...starts].sort((a, b) => a - b)[1], 1500, 'ms'),
    below('default server peak RSS', rss['default server'], 200, 'MB'),
    '',
    '## Throughput and latency',
    '',
    '| Target | Model | Concurrency | req/s | p50 ms | p99 ms | errors | non-2xx | req/s range |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...[...rows].sort((a, b) => a.model.localeCompare(b.model) || Number(a.c) - Number(b.c) || a.target.localeCompare(b.target))
      .map(({ target, model, c, r, spread }) => `| ${target} | ${model} | ${c} | ${f0(r.rps)} | ${f1(r.p50)} | ${f1(r.p99)} | ${r.errors} | ${r.non2xx} | ${spread ? `${f0(Math.min(...spread))}-${f0(Math.max(...spread))}` : ''} |`),
    '',
    '## session.run in a loop (the ceiling, one thread)',
    '',
    '| Model | Batch | examples/s | p50 ms per call | p99 ms per call |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...raw.map(r => `| ${r.model} | ${r.batch} | ${f0(r.examplesPerSec)} | ${f1(r.p50)} | ${f1(r.p99)} |`),
    '',
    '## Flood: mlp through the resource route, 640 connections (10x the top concurrency)',
    '',
    `Server alive after the flood: ${alive ? 'yes' : 'NO'}. Offered: ${f0(flood.offeredRps)} req/s (closed loop).`,
    '',
    '| Status | count | req/s | p50 ms | p99 ms |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...Object.entries(flood).filter(([k]) => k !== 'offeredRps').map(([k, v]) => `| ${k} | ${v.count} | ${f0(v.rps)} | ${f1(v.p50)} | ${f1(v.p99)} |`),
    '',
    '## Memory and start-up',
    '',
    '| Process | peak RSS (VmHWM) MB |',
    '| --- | ---: |',
    ...Object.entries(rss).map(([k, v]) => `| ${k} | ${v} |`),
    '',
    `Default server (\`node --import tsx server.ts\`, app.ts, bundled models, default threads) ready after: ${starts.map(s => f0(s) + ' ms').join(', ')}.`,
    '',
    ...(notes.length ? ['## Notes', '', ...notes.map(n => `- ${n}`), ''] : []),
    'Command: `npm run bench` (BENCH_SECONDS sets the seconds per configuration).',
    '',
  ]
  return lines.join('\n')
}

await main()
