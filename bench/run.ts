// `npm run bench`: the whole benchmark in one run, written to bench/RESULTS.md.
//
// Every server is pinned to core 0 and every load generator to core 1
// (taskset), on loopback. Configurations: the models tiny, mlp and tagger
// (bench/models.ts) at concurrency 1, 16 and 64, one example per request
// (cycling through 256 different ones: bench/models.ts's examplesOf says why),
// against (a) this framework through a resource route (/bench/<model>) and
// through the Open Inference Protocol (JSON, and binary tensors for mlp),
// (b) the hand-written baseline (bench/baseline-server.ts), (c) session.run in
// a loop at batch 1 and 64; /ner and /pos with real sentences, against
// (b) a hand-written baseline built on this project's NLP library
// (bench/baseline-nlp-server.ts) and through OIP (the feature ids in, the
// scores out), and (c) their taggers in a loop; the node:http floor (bench/
// floor-server.ts) with tiny's requests, and the fastify floor (bench/
// fastify-floor-server.ts) with mlp's OIP binary ones. Then a flood: the compute-bound `heavy` model's capacity
// (c=64) and unloaded latency, measured in the same run, and an open-loop flood at 10x that capacity
// (bench/flood.ts); a second server set for latency (nothing queues) flooded at 10x its own capacity,
// then at the first flood's rate. Then the default server's start-up time, and its peak RSS while
// /scale, /ner and /pos are loaded in turn (3 starts, medians).
//   BENCH_SECONDS=4 (per run of a configuration), BENCH_ROUNDS=5 (runs, interleaved with the baseline; 5 since session 4: with 3, two runs 20 minutes apart differed by up to 12% in a ratio), BENCH_THREADS (framework threads; default: the server's default)
//   BENCH_ONLY=tiny,tagger: a partial run of those groups (models, /ner, /pos) for development: no
//   flood, no default-server figures, written to bench/RESULTS.partial.md instead of RESULTS.md
//   BENCH_FLOOD_ONLY=1: only the flood sections (raw heavy; capacity, unloaded and floods, with the defaults and latency first), to RESULTS.partial.md
//   BENCH_FLOOD_RATE: the flood's offered req/s instead of 10x the measured capacity (development)
//   BENCH_PORT=18400: the framework's port (baselines from +100, the default server at +200, the latency-first flood server at +300)
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchModels, examplesOf, type BenchModel } from './models.ts'
import { EXAMPLES, featureBodies, jsonBodies, oipBodies, SENTENCES, sentenceBodies, writeModels } from './workload.ts'
import type { FloodResult, FloodSpec } from './flood.ts'
import { SETTINGS } from '../framework/settings.ts'
import type { TaggerConfig } from '../nlp/tagger.ts'
import { tokenize } from '../nlp/tokenize.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number)
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined
const FLOOD_ONLY = process.env.BENCH_FLOOD_ONLY === '1' && !ONLY
/** Ports: the framework on PORT, baselines from PORT + 100, the default server on PORT + 200, the latency-first flood server on PORT + 300. */
const PORT = Number(process.env.BENCH_PORT ?? 18_400)
/** The flood's model: compute-bound, so that 10x its capacity is an HTTP rate one core can be offered. */
const FLOOD_MODEL = 'heavy'
/**
 * How the framework's servers run: compiled as `npm start` runs them
 * (scripts/build.mjs, with bench/app.ts, which adds the bench routes to
 * app.ts, as one more entry, into bench/dist/: in the project, where the
 * packages left out of the bundle resolve), under scripts/start.sh, so with
 * the node and malloc settings `npm start` gives the server. Returns the start
 * command and the --app argument.
 */
async function compiledFramework (): Promise<{ command: [string[], NodeJS.ProcessEnv], app: string[] }> {
  const out = join(root, 'bench', 'dist')
  await run(node, ['scripts/build.mjs', '--out', out, 'bench/app.ts'])
  return { command: [['sh', 'scripts/start.sh'], { SERVER_ENTRY: join(out, 'server.js') }], app: ['--app', join(out, 'bench', 'app.js')] }
}
/**
 * The flood's second server: set for latency rather than throughput. Nothing
 * queues (`--max-queue-items 0`): a request is admitted only when an
 * inference thread is free to start it, so it never waits behind another.
 */
const LATENCY_FIRST = ['--max-queue-items', '0']
/** The node:http floor's row (bench/floor-server.ts). */
const FLOOR = 'node:http floor (no framework, no model)'
/** The fastify floor's row (bench/fastify-floor-server.ts): fastify alone, with mlp's OIP binary requests. */
const FASTIFY_FLOOR = 'fastify floor (OIP binary route, no model)'
const SERVER_CORE = '0'
const LOAD_CORE = '1'
const node = process.execPath
const log = (...args: unknown[]) => process.stderr.write(args.join(' ') + '\n')

interface LoadResult { rps: number, p50: number, p99: number, errors: number, non2xx: number, total: number }
/** One line of bench/raw.ts: session.run in a loop at one batch size (answerUs and answerF32Us at batch 64). */
interface RawRow { model: string, batch: number, examplesPerSec: number, p50: number, p99: number, answerUs?: number, answerF32Us?: number }

function run (cmd: string, args: string[], options: { cwd?: string, input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? root, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'inherit'] })
    child.stdin?.end(options.input)
    let out = ''
    child.stdout!.on('data', d => { out += d })
    child.on('exit', code => code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)))
  })
}

const pinned = (core: string, script: string, args: string[]) => ['-c', core, node, '--import', 'tsx', script, ...args]

async function load (url: string, connections: number, bodies: string[], extra: { base64?: boolean, headers?: Record<string, string> } = {}, duration = SECONDS): Promise<LoadResult> {
  // The spec goes on stdin: 256 bodies are more than one argument may hold.
  const out = await run('taskset', pinned(LOAD_CORE, 'bench/load.ts', []), { input: JSON.stringify({ url, connections, duration, bodies, ...extra }) })
  return JSON.parse(out.trim().split('\n').pop()!)
}

/**
 * The flood figures against one server: its capacity (closed loop, c=64 or
 * `connections`, ROUNDS runs) and latency at c=1, its unloaded latency (open loop at 5% of
 * capacity, ROUNDS runs, timed like the flood: autocannon counts whole ms),
 * then ROUNDS open-loop floods at 10x the best capacity (or the rates given),
 * after a 1 s flood that warms the refusal path (JIT) and is not counted.
 * Other jobs on the machine only ever lower a throughput and raise a latency,
 * so the references keep the best run: the flood is measured against the
 * server at its best.
 */
async function measureFlood (model: string, url: string, body: string, server: Server, base: string, serverArgs: string[], rates?: { flood: number, unloaded: number }, connections = 64): Promise<FloodReport> {
  await warm(url, [body])
  const capacity: LoadResult[] = []
  for (let i = 0; i < ROUNDS; i++) {
    log(`flood ${model}: capacity at c=${connections}, ${i + 1}/${ROUNDS}`)
    // Answers other than 2xx (a server with a short queue refuses some) are not capacity.
    const r = await load(url, connections, [body])
    capacity.push({ ...r, rps: r.total > 0 ? r.rps * (r.total - r.non2xx) / r.total : 0 })
  }
  const best = Math.max(...capacity.map(r => r.rps))
  log(`flood ${model}: c=1`)
  const c1 = await load(url, 1, [body])
  const unloadedRate = rates?.unloaded ?? Math.max(10, Math.round(best / 20))
  const unloaded: FloodResult[] = []
  for (let i = 0; i < ROUNDS; i++) {
    log(`flood ${model}: unloaded, open loop at ${unloadedRate} req/s, ${i + 1}/${ROUNDS}`)
    unloaded.push(await floodRun({ url, rate: unloadedRate, duration: SECONDS, body }))
  }
  const rate = rates?.flood ?? Number(process.env.BENCH_FLOOD_RATE ?? Math.round(best * 10))
  await floodRun({ url, rate, duration: 1, body, sockets: 512 })
  const results = await floods(url, rate, body, `${model}: open loop at ${rate} req/s, ${serverArgs.join(' ') || 'defaults'}`)
  return { model, rate, capacity, capacityConnections: connections, c1, unloaded, results, alive: await alive(server, base), serverArgs }
}

/** ROUNDS open-loop floods of `url` at `rate` (up to 512 sockets), one after the other. */
async function floods (url: string, rate: number, body: string, label: string): Promise<FloodResult[]> {
  const results: FloodResult[] = []
  for (let i = 0; i < ROUNDS; i++) {
    log(`flood ${label}, ${i + 1}/${ROUNDS}`)
    results.push(await floodRun({ url, rate, duration: SECONDS, body, sockets: 512 }))
  }
  return results
}

/** The server process still running and /health/live answering 200. */
async function alive (server: Server, base: string): Promise<boolean> {
  let live = false
  try { live = (await fetch(`${base}/health/live`)).status === 200 } catch {}
  return server.child.exitCode === null && live
}

async function warm (url: string, bodies: string[], extra: { base64?: boolean, headers?: Record<string, string> } = {}) {
  await load(url, 64, bodies, extra, 1)
}

/** One open-loop run of bench/flood.ts on the load core. */
async function floodRun (spec: FloodSpec): Promise<FloodResult> {
  const out = await run('taskset', pinned(LOAD_CORE, 'bench/flood.ts', [JSON.stringify(spec)]))
  return JSON.parse(out.trim().split('\n').pop()!)
}

interface FloodReport {
  model: string
  /** Offered req/s (10x the best capacity unless BENCH_FLOOD_RATE says otherwise). */
  rate: number
  /** Closed loop (autocannon) at capacityConnections, ROUNDS runs (capacity, loaded latency). */
  capacity: LoadResult[]
  /** The closed loop's connections for `capacity`. */
  capacityConnections: number
  /** Closed loop at c=1, once. */
  c1: LoadResult
  /** Open loop at 5% of the capacity, ROUNDS runs: the unloaded latency, timed like the flood. */
  unloaded: FloodResult[]
  /** The floods, ROUNDS runs. */
  results: FloodResult[]
  /** The process still running and /health/live answering 200 after the floods. */
  alive: boolean
  /** Flags the framework server got beyond the defaults. */
  serverArgs: string[]
  /** A server set for latency (LATENCY_FIRST), flooded at 10x its own capacity. */
  latencyFirst?: FloodReport
  /** More floods of that server, at another rate (the first server's flood rate), ROUNDS runs. */
  alsoAt?: { rate: number, results: FloodResult[] }
}

const mid = (xs: number[]) => { const s = xs.filter(x => !Number.isNaN(x)).sort((a, b) => a - b); return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }

/** What the goals compare: the references at their best, the floods' medians. */
function floodFigures (flood: FloodReport) {
  const stat = (r: FloodResult, status: string, field: 'p50' | 'p99' | 'max' | 'rps') => r.statuses[status]?.[field] ?? NaN
  return {
    capacity: Math.max(...flood.capacity.map(r => r.rps)),
    loadedP99: Math.min(...flood.capacity.map(r => r.p99)),
    unloadedP99: Math.min(...flood.unloaded.map(r => stat(r, '200', 'p99'))),
    refusedP99: mid(flood.results.map(r => stat(r, '503', 'p99'))),
    admittedP99: mid(flood.results.map(r => stat(r, '200', 'p99'))),
    /** Answers neither 200 nor 503 (other statuses, socket errors, none within the drain), over every flood. */
    other: [...flood.results, ...(flood.alsoAt?.results ?? [])].reduce((n, r) => n + Object.entries(r.statuses).filter(([k]) => k !== '200' && k !== '503').reduce((m, [, v]) => m + v.count, 0), 0),
  }
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

/** The V8 flags scripts/start.sh gives node (its `v8=` line), named in the report as they are. */
function startV8Flags (): string {
  return /^v8="([^"]*)"$/m.exec(readFileSync(join(root, 'scripts', 'start.sh'), 'utf8'))?.[1] ?? '(none found)'
}

/** Peak resident set (VmHWM) of a process, in MB. */
function peakRssMb (pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : NaN
}

/** Servers still running: a run that fails stops them on its way out. */
const running = new Set<ChildProcess>()
process.on('exit', () => { for (const child of running) child.kill('SIGTERM') })

/** Starts `command args` on the server core (the sources under tsx unless told). */
async function startServer (args: string[], readyUrl: string, readyStatus = 200, command = [node, '--import', 'tsx'], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const started = performance.now()
  const child = spawn('taskset', ['-c', SERVER_CORE, ...command, ...args], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } })
  let exited = false
  running.add(child)
  child.on('exit', () => { exited = true; running.delete(child) })
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

function oipBinary (m: BenchModel): { bodies: string[], headers: Record<string, string> } {
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: m.input, shape: [1, m.width], datatype: 'FP32', parameters: { binary_data_size: m.width * 4 } }],
    parameters: { binary_data_output: true },
  }))
  const bodies = examplesOf(m, EXAMPLES).map(x => Buffer.concat([header, Buffer.from(Float32Array.from(x).buffer)]).toString('base64'))
  return { bodies, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) } }
}


interface Row { target: string, model: string, c: number | string, r: LoadResult, spread?: number[] }

async function main () {
  const dir = mkdtempSync(join(tmpdir(), 'onnx-serve-bench-'))
  writeModels(dir)
  const framework = await compiledFramework()
  const everyModel = benchModels()
  // The flood's model is served (bench/app.ts mounts every model) but kept out
  // of the throughput groups and baselines: it is there to be flooded.
  const models = FLOOD_ONLY ? [] : everyModel.filter(m => m.name !== FLOOD_MODEL)
  const heavy = everyModel.find(m => m.name === FLOOD_MODEL)!
  const rows: Row[] = []
  const raw: RawRow[] = []
  /** The NLP routes measured (BENCH_ONLY may leave them out), with their model's config.json. */
  const nlp = FLOOD_ONLY ? [] : ['ner', 'pos'].filter(route => !ONLY || ONLY.has(route)).map(route => ({ route, config: JSON.parse(readFileSync(join(dir, route, 'config.json'), 'utf8')) as TaggerConfig }))
  const rss: Record<string, number> = {}
  const notes: string[] = []

  // (c) The ceiling: session.run in a loop.
  for (const m of [...models, ...(ONLY ? [] : [heavy])]) {
    if (ONLY && !ONLY.has(m.name)) continue
    log(`raw ${m.name}`)
    const out = await run('taskset', pinned(SERVER_CORE, 'bench/raw.ts', [join(dir, `${m.name}.onnx`), m.input, m.type, String(m.width), String(Math.min(3, SECONDS))]))
    for (const line of out.trim().split('\n')) raw.push({ model: m.name, ...JSON.parse(line) })
  }
  // The taggers, with examples of the bench sentences' mean length in tokens.
  const meanTokens = Math.round(SENTENCES.reduce((n, s) => n + tokenize(s).length, 0) / SENTENCES.length)
  for (const { route, config } of nlp) {
    log(`raw ${route}`)
    const out = await run('taskset', pinned(SERVER_CORE, 'bench/raw.ts', [join(dir, route, 'model.onnx'), config.input, 'int64', String(config.featuresPerToken), String(Math.min(3, SECONDS)), String(meanTokens)]))
    for (const line of out.trim().split('\n')) raw.push({ model: `${route} (${meanTokens} tokens)`, ...JSON.parse(line) })
  }

  // (a) This framework and (b) the hand-written baselines run side by side
  // (all pinned to the server core; an idle server costs nothing), and each
  // configuration is measured in turn against its baseline, ROUNDS times in
  // alternating order: a load change on this shared machine then hits both
  // sides alike instead of whichever happened to run later. Medians are kept.
  const port = PORT
  const threads = process.env.BENCH_THREADS ? ['--threads', process.env.BENCH_THREADS] : []
  // Extra framework server flags, for development runs (e.g. BENCH_SERVER_ARGS='--inline-below 0').
  if (process.env.BENCH_SERVER_ARGS) threads.push(...process.env.BENCH_SERVER_ARGS.split(' ').filter(Boolean))
  const fw = await startServer([...framework.app, '--models-dir', dir, '--port', String(port), '--log-level', 'error', ...threads], `http://127.0.0.1:${port}/health/ready`, 200, ...framework.command)
  const base = `http://127.0.0.1:${port}`
  let hasOip = false
  try { hasOip = (await fetch(`${base}/v2/models/mlp/ready`)).status === 200 } catch {}
  if (!hasOip) notes.push('OIP routes were not served (framework/oip.ts missing or mlp not ready): no OIP rows.')
  /** The other servers on the server core, by the name their peak RSS is reported under. */
  const baselines = new Map<string, Server>()
  for (const [i, m] of models.entries()) {
    const bport = PORT + 100 + i
    baselines.set(`baseline ${m.name}`, await startServer(['bench/baseline-server.ts', join(dir, `${m.name}.onnx`), m.input, m.output, m.type, String(m.width), String(bport)], `http://127.0.0.1:${bport}/`, 404))
  }
  // The floor is measured with tiny's requests, in tiny's group.
  const floorPort = PORT + 150
  if (models.some(m => m.name === 'tiny')) baselines.set(FLOOR, await startServer(['bench/floor-server.ts', String(floorPort)], `http://127.0.0.1:${floorPort}/`))
  // The fastify floor, with mlp's OIP binary requests, in mlp's group.
  const fastifyFloorPort = PORT + 151
  if (models.some(m => m.name === 'mlp')) baselines.set(FASTIFY_FLOOR, await startServer(['bench/fastify-floor-server.ts', String(fastifyFloorPort)], `http://127.0.0.1:${fastifyFloorPort}/`, 404))
  /** The NLP baselines' ports: PORT + 160, + 161. */
  const nlpPort = (j: number) => PORT + 160 + j
  for (const [j, { route }] of nlp.entries()) {
    baselines.set(`baseline /${route}`, await startServer(['bench/baseline-nlp-server.ts', join(dir, route), String(nlpPort(j))], `http://127.0.0.1:${nlpPort(j)}/`, 404))
  }

  interface Target { target: string, model: string, url: string, bodies: string[], extra?: { base64?: boolean, headers?: Record<string, string> } }
  const targetsFor = (m: BenchModel, i: number): Target[] => {
    const list: Target[] = [
      { target: 'baseline (hand-written)', model: m.name, url: `http://127.0.0.1:${PORT + 100 + i}/infer`, bodies: jsonBodies(m) },
      { target: 'framework: resource route', model: m.name, url: `${base}/bench/${m.name}`, bodies: jsonBodies(m) },
    ]
    // With tiny's requests: what node:http alone costs (the floor).
    if (m.name === 'tiny') list.push({ target: FLOOR, model: m.name, url: `http://127.0.0.1:${floorPort}/`, bodies: jsonBodies(m) })
    if (hasOip) {
      list.push({ target: 'framework: OIP JSON', model: m.name, url: `${base}/v2/models/${m.name}/infer`, bodies: oipBodies(m) })
      if (m.name === 'mlp') {
        const b = oipBinary(m)
        list.push({ target: 'framework: OIP binary', model: m.name, url: `${base}/v2/models/${m.name}/infer`, bodies: b.bodies, extra: { base64: true, headers: b.headers } })
        list.push({ target: FASTIFY_FLOOR, model: m.name, url: `http://127.0.0.1:${fastifyFloorPort}/v2/models/${m.name}/infer`, bodies: b.bodies, extra: { base64: true, headers: b.headers } })
      }
    }
    return list
  }
  const taggerBodies = sentenceBodies()
  /** /ner and /pos against their baseline, and their model through OIP: the sentences' feature ids in, the scores out (no tokenizing, no decoding). */
  const nlpTargets = ({ route, config }: typeof nlp[number], j: number): Target[] => [
    { target: 'baseline (hand-written)', model: `/${route}`, url: `http://127.0.0.1:${nlpPort(j)}/infer`, bodies: taggerBodies },
    { target: 'framework: resource route', model: `/${route}`, url: `${base}/${route}`, bodies: taggerBodies },
    ...(hasOip
      ? [{
          target: 'framework: OIP JSON', model: `/${route}`, url: `${base}/v2/models/${route}/infer`,
          bodies: featureBodies(config),
        }]
      : []),
  ]
  const groups: Target[][] = [
    ...models.map((m, i) => targetsFor(m, i)),
    ...nlp.map(nlpTargets),
  ].filter(group => !FLOOD_ONLY && (!ONLY || ONLY.has(group[0].model.replace(/^\//, ''))))
  // Warm up every target (JIT, sessions' first batch sizes); not measured.
  for (const group of groups) for (const tgt of group) await warm(tgt.url, tgt.bodies, tgt.extra)
  notes.push(await answersAgree(groups))
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
  /** Stops the framework server and the others, noting their peak RSS. */
  const stopServers = async () => {
    rss.framework = await fw.stop()
    for (const [name, b] of baselines) rss[name] = await b.stop()
  }
  if (ONLY) {
    await stopServers()
    rmSync(dir, { recursive: true, force: true })
    writeFileSync(join(root, 'bench', 'RESULTS.partial.md'), report({ rows, raw, rss, starts: [], notes: [...notes, `Partial run: BENCH_ONLY=${process.env.BENCH_ONLY}.`] }))
    log('wrote bench/RESULTS.partial.md')
    return
  }

  // Flood: the heavy model through the resource route, measured in this run
  // (measureFlood); the goals use the floods' medians.
  const hurl = `${base}/bench/${heavy.name}`
  // One example: heavy's answer is 16 floats, and the flood's open loop sends one body.
  const hbody = JSON.stringify({ inputs: [heavy.example] })
  const flood = await measureFlood(heavy.name, hurl, hbody, fw, base, [...threads])
  // A server set for latency rather than throughput (nothing queues), flooded
  // the same way at 10x its own capacity (measured with one client per
  // thread, so that none is refused: a second client's requests would mostly
  // be refused, and its 503 loop would take the core from the model), then
  // at the first flood's rate. The defaults suit throughput (batches of 64);
  // this shows what the settings trade.
  const lport = PORT + 300
  const lurl = `http://127.0.0.1:${lport}/bench/${heavy.name}`
  const lfw = await startServer([...framework.app, '--models-dir', dir, '--port', String(lport), '--log-level', 'error', ...threads, ...LATENCY_FIRST], `http://127.0.0.1:${lport}/health/ready`, 200, ...framework.command)
  flood.latencyFirst = await measureFlood(heavy.name, lurl, hbody, lfw, `http://127.0.0.1:${lport}`, [...threads, ...LATENCY_FIRST], undefined, Number(process.env.BENCH_THREADS ?? 1))
  const alsoAt = await floods(lurl, flood.rate, hbody, `${heavy.name}: latency first at the first flood's ${flood.rate} req/s`)
  flood.latencyFirst.alsoAt = { rate: flood.rate, results: alsoAt }
  flood.latencyFirst.alive &&= await alive(lfw, `http://127.0.0.1:${lport}`)
  await lfw.stop()
  if (FLOOD_ONLY) {
    await stopServers()
    rmSync(dir, { recursive: true, force: true })
    writeFileSync(join(root, 'bench', 'RESULTS.partial.md'), report({ rows, raw, rss, flood, starts: [], notes: ['Partial run: BENCH_FLOOD_ONLY=1.'] }))
    log('wrote bench/RESULTS.partial.md')
    return
  }
  await stopServers()

  // The default server (app.ts, the bundled models, default threads) as
  // `npm start` runs it: compiled by its prestart step (scripts/build.mjs),
  // started by scripts/start.sh (whose exec chain keeps the process id, for
  // VmHWM). Start-up and peak RSS under load.
  const dport = PORT + 200
  const starts: number[] = []
  const buildStarted = performance.now()
  await run(node, ['scripts/build.mjs'])
  notes.push(`The default server's build (\`npm start\`'s prestart, scripts/build.mjs) took ${f0(performance.now() - buildStarted)} ms, not counted in its start-up times.`)
  // Each start is loaded, and the peak RSS is the median of the three: one
  // start's peak varies by 10-20 MB from run to run on this host (ONNX
  // Runtime's arenas, a tagger measured cheap enough to run inline or not).
  const peaks: number[] = []
  for (let i = 0; i < 3; i++) {
    const d = await startServer(['--port', String(dport), '--log-level', 'error'], `http://127.0.0.1:${dport}/health/ready`, 200, ['sh', 'scripts/start.sh'])
    starts.push(d.readyMs)
    log(`default server under load, ${i + 1}/3`)
    // Its three routes in turn: peak RSS is the most any of them needed.
    // (The throughput rows are the last start's.)
    const scaler = JSON.stringify({ rows: [[5.1, 3.5, 1.4, 0.2]] })
    const loaded: Row[] = [{ target: 'default server', model: '/scale', c: 64, r: await load(`http://127.0.0.1:${dport}/scale`, 64, [scaler]) }]
    for (const route of ['ner', 'pos']) {
      loaded.push({ target: 'default server', model: `/${route}`, c: 64, r: await load(`http://127.0.0.1:${dport}/${route}`, 64, taggerBodies) })
    }
    if (i === 2) rows.push(...loaded)
    peaks.push(await d.stop())
  }
  rss['default server'] = [...peaks].sort((a, b) => a - b)[1]
  notes.push(`The default server's peak RSS over its 3 starts, each loaded the same way: ${peaks.map(p => p.toFixed(1)).join(', ')} MB (the median is in the goals and the memory table).`)
  rmSync(dir, { recursive: true, force: true })
  writeFileSync(join(root, 'bench', 'RESULTS.md'), report({ rows, raw, rss, flood, starts, notes }))
  log('wrote bench/RESULTS.md')
}

const f0 = (n: number) => Math.round(n).toLocaleString('en-US')
const f1 = (n: number) => n === undefined || Number.isNaN(n) ? '-' : n.toFixed(n < 10 ? 2 : 1)

/**
 * Checks that every target of a group answers its first two examples as the
 * baseline does: the same numbers as float32 (the framework writes float32's
 * shortest digits, the baseline JSON.stringify's doubles), or for /ner and
 * /pos the same answer. OIP binary and the NLP routes' OIP rows (scores, not
 * tags) are not compared. Throws on a difference: a faster wrong answer is
 * no result.
 */
async function answersAgree (groups: Array<Array<{ target: string, model: string, url: string, bodies: string[], extra?: { base64?: boolean } }>>): Promise<string> {
  const numbers = (v: unknown): number[] => {
    const o = v as { outputs: unknown }
    const flat = Array.isArray(o.outputs) && (o.outputs[0] as { data?: unknown })?.data !== undefined
      ? (o.outputs[0] as { data: number[] }).data // OIP JSON
      : (o.outputs as number[][]).flat()
    return flat.map(Math.fround)
  }
  let compared = 0
  for (const group of groups) {
    const nlp = group[0].model.startsWith('/')
    for (const example of [0, 1]) {
      let want: string | undefined
      for (const tgt of group) {
        if (tgt.extra?.base64 || tgt.target === FLOOR || (nlp && tgt.target.includes('OIP'))) continue
        // Every target's bodies are the same examples in the same order (OIP JSON's in OIP's shape).
        const res = await fetch(tgt.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: tgt.bodies[example] })
        const answer = await res.json()
        const got = JSON.stringify(nlp ? answer : numbers(answer))
        if (!res.ok || (want !== undefined && got !== want)) throw new Error(`${tgt.target} on ${tgt.model} answered ${res.status} ${got.slice(0, 200)}; the baseline ${want?.slice(0, 200)}`)
        want ??= got
        compared++
      }
    }
  }
  return `Answers checked before measuring: ${compared} answers (each group's first two examples, from the baseline, the resource route and OIP JSON; /ner and /pos from the baseline and the resource route) carry the baseline's values, as float32.`
}

function report ({ rows, raw, rss, flood, starts, notes }: {
  rows: Row[], raw: RawRow[],
  rss: Record<string, number>, flood?: FloodReport, starts: number[], notes: string[]
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
  const ff = flood && floodFigures(flood)
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  const lines = [
    '# Benchmark results',
    '',
    `Made by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
    `Machine: ${cpus().length} x ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GB RAM, Node ${process.version}, Linux; shared with other jobs, so compare within this run.`,
    `Framework servers: compiled as \`npm start\` runs them (\`node scripts/build.mjs --out bench/dist bench/app.ts\`: bench/app.ts adds the bench routes to app.ts), with the settings \`npm start\` gives node (scripts/start.sh: malloc arenas and mmap threshold, \`${startV8Flags()}\`, \`--single-threaded-gc\` on 2 cores or fewer); the default server: \`npm start\` itself.`,
    `Every server pinned to core ${SERVER_CORE}, every load generator (autocannon ${'\u2265'}8, bench/load.ts; the flood's open loop, bench/flood.ts) to core ${LOAD_CORE}, loopback, ${SECONDS} s per configuration, one example per request (each load cycles through ${EXAMPLES} different examples, so that answers differ: with one example, V8's number-to-string cache wrote the same answer again and again for free), keep-alive.`,
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
    flood && ff
      ? aliveRow('flood at 10x capacity', flood, ff.other)
      : '| flood at 10x capacity: server alive, every request answered 200 or 503 | - | alive, 0 other | not measured |',
    below('flood: refusal (503) p99', ff?.refusedP99 ?? NaN, 10, 'ms'),
    below(`flood: admitted (200) p99 / ${FLOOD_MODEL} loaded p99 (closed loop c=64)`, ff ? ff.admittedP99 / ff.loadedP99 : NaN, 2, 'x'),
    below(`flood: admitted (200) p99 / ${FLOOD_MODEL} unloaded p99 (open loop, 5% of capacity)`, ff ? ff.admittedP99 / ff.unloadedP99 : NaN, 2, 'x'),
    ...(flood?.latencyFirst ? latencyFirstGoals(flood.latencyFirst, below) : []),
    below('default server ready after start (median of 3)', [...starts].sort((a, b) => a - b)[1], 1500, 'ms'),
    below('default server peak RSS (/scale, /ner, /pos in turn at c=64; median of 3 starts)', rss['default server'], 200, 'MB'),
    '',
    ...budget(find, raw),
    ...nlpRatios(rows, ratio),
    '## Throughput and latency',
    '',
    '| Target | Model | Concurrency | req/s | p50 ms | p99 ms | errors | non-2xx | req/s range |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...[...rows].sort((a, b) => a.model.localeCompare(b.model) || Number(a.c) - Number(b.c) || a.target.localeCompare(b.target))
      .map(({ target, model, c, r, spread }) => `| ${target} | ${model} | ${c} | ${f0(r.rps)} | ${f1(r.p50)} | ${f1(r.p99)} | ${r.errors} | ${r.non2xx} | ${spread ? `${f0(Math.min(...spread))}-${f0(Math.max(...spread))}` : ''} |`),
    '',
    '## session.run in a loop (the ceiling, one thread)',
    '',
    '| Model | Batch | examples/s | p50 ms per call | p99 ms per call | us to write one example\'s answer: JSON.stringify (the baseline) | float32 digits (the framework) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...raw.map(r => `| ${r.model} | ${r.batch} | ${f0(r.examplesPerSec)} | ${f1(r.p50)} | ${f1(r.p99)} | ${r.answerUs === undefined ? '' : f1(r.answerUs)} | ${r.answerF32Us === undefined ? '' : f1(r.answerF32Us)} |`),
    '',
    ...(flood ? floodSection(flood) : []),
    ...(flood?.latencyFirst ? floodSection(flood.latencyFirst, true) : []),
    '## Memory and start-up',
    '',
    '| Process | peak RSS (VmHWM) MB |',
    '| --- | ---: |',
    ...Object.entries(rss).map(([k, v]) => `| ${k} | ${v} |`),
    '',
    `Default server (\`npm start\`: dist/server.js under scripts/start.sh; app.ts, bundled models, default threads) ready after: ${starts.map(s => f0(s) + ' ms').join(', ')}.`,
    '',
    ...(notes.length ? ['## Notes', '', ...notes.map(n => `- ${n}`), ''] : []),
    'Command: `npm run bench` (BENCH_SECONDS sets the seconds per configuration).',
    '',
  ]
  return lines.join('\n')
}

/**
 * What a throughput goal leaves per request, from this run's figures: at
 * c=64 the server core is saturated, so a request costs it 1 / (req/s). Of a
 * ratio's budget, the node:http floor and the model's compute at batch 64 are
 * spent whatever the framework does.
 */
function budget (
  find: (target: string, model: string, c: number) => LoadResult | undefined,
  raw: RawRow[],
): string[] {
  const us = (r: LoadResult | undefined) => r ? 1e6 / r.rps : NaN
  const floor = us(find(FLOOR, 'tiny', 64))
  const one = (model: string, want: number, target: string, label: string, json: boolean) => {
    const base = us(find('baseline (hand-written)', model, 64))
    const at64 = raw.find(r => r.model === model && r.batch === 64)
    const computed = 1e6 / (at64?.examplesPerSec ?? NaN)
    // OIP binary answers are raw bytes: no numbers to write. JSON ones are
    // written in float32's digits (the resource's schema says format 'float').
    const answer = json ? at64?.answerF32Us ?? NaN : 0
    const fixed = floor + computed + answer
    const left = base / want - fixed
    if (Number.isNaN(left)) return [] // not measured in this run (BENCH_ONLY)
    const line = `- ${model}, ${label} ${want}x: the baseline costs ${f1(base)} us per request, so ${want}x leaves ${f1(base / want)} us; the floor takes ${f1(floor)}, ${model}'s compute at batch 64 ${f1(computed)}${json ? ` and writing its answer's numbers (float32 digits) ${f1(answer)}` : ''}, which leaves ${f1(left)} us for reading the request, batching and the rest of the answer (the framework's ${target.replace('framework: ', '')} takes ${f1(us(find(target, model, 64)) - fixed)} us of that kind now).`
    // The binary route's requests also went to fastify alone: what of that is fastify's.
    const fastify = target === 'framework: OIP binary' ? us(find(FASTIFY_FLOOR, model, 64)) : NaN
    if (Number.isNaN(fastify)) return [line]
    return [`${line} Of that, fastify alone (the fastify floor row: routing, reading the body, sending a fixed answer) takes ${f1(fastify - floor)} us more than node:http, which leaves ${f1(left - (fastify - floor))} us for decoding the tensors, batching and writing the answer's header (the framework takes ${f1(us(find(target, model, 64)) - fixed - (fastify - floor))}).`]
  }
  if (Number.isNaN(floor)) return []
  return [
    `What the ratios leave per request, at c=64 (the server core saturated, a request costs it 1 / (req/s)); the floor is the node:http row below, ${f1(floor)} us per request:`,
    '',
    ...one('mlp', 3, 'framework: OIP binary', 'OIP binary', false),
    ...one('mlp', 1.8, 'framework: resource route', 'resource route (JSON)', true),
    ...one('tagger', 2, 'framework: resource route', 'resource route', true),
    '',
  ]
}

/**
 * /ner and /pos against their hand-written baseline (no goal in the issue):
 * the ratios at each concurrency. Their OIP rows do less than the others (the
 * client sends the feature ids and gets the scores back: no tokenizing, no
 * decoding), so their ratio is not like for like.
 */
function nlpRatios (rows: Row[], ratio: (target: string, model: string, c: number) => number): string[] {
  const routes = [...new Set(rows.filter(r => r.target === 'baseline (hand-written)' && r.model.startsWith('/')).map(r => r.model))]
  if (routes.length === 0) return []
  const cs = [...new Set(rows.filter(r => routes.includes(r.model)).map(r => Number(r.c)))].sort((a, b) => a - b)
  const x = (n: number) => Number.isNaN(n) ? '-' : `${n.toFixed(2)}x`
  return [
    `/ner and /pos against a hand-written baseline on this project's NLP library (bench/baseline-nlp-server.ts: one session, each request tokenized, run alone and decoded, answered in the resource's shape); no goal. Their OIP rows send the sentence's feature ids and get its scores (no tokenizing, no decoding), so that ratio is not like for like.`,
    '',
    `| Route | ${cs.map(c => `c=${c}`).join(' | ')} |`,
    `| --- | ${cs.map(() => '---:').join(' | ')} |`,
    ...routes.flatMap(route => [
      `| ${route}: resource route / baseline | ${cs.map(c => x(ratio('framework: resource route', route, c))).join(' | ')} |`,
      `| ${route}: OIP JSON (features in, scores out) / baseline | ${cs.map(c => x(ratio('framework: OIP JSON', route, c))).join(' | ')} |`,
    ]),
    '',
  ]
}

/** The goal row for a flood server: still alive, and every answer 200 or 503. */
function aliveRow (label: string, flood: FloodReport, other: number): string {
  return `| ${label}: server alive, every request answered 200 or 503 | ${flood.alive ? 'alive' : 'DEAD'}, ${other} other | alive, 0 other | ${flood.alive && other === 0 ? 'met' : 'MISSED'} |`
}

/** Goal rows for the latency-first flood (the same goals, that server's figures). */
function latencyFirstGoals (flood: FloodReport, below: (label: string, value: number, limit: number, unit: string) => string): string[] {
  const ff = floodFigures(flood)
  const tag = `latency first (\`${LATENCY_FIRST.join(' ')}\`)`
  const at = flood.alsoAt
  const atP99 = (status: string) => mid((at?.results ?? []).map(r => r.statuses[status]?.p99 ?? NaN))
  return [
    aliveRow(`flood, ${tag}, 10x its capacity${at ? ' and at the first flood\'s rate' : ''}`, flood, ff.other),
    below(`flood, ${tag}, 10x its capacity: refusal (503) p99`, ff.refusedP99, 10, 'ms'),
    below(`flood, ${tag}, 10x its capacity: admitted (200) p99 / its unloaded p99`, ff.admittedP99 / ff.unloadedP99, 2, 'x'),
    ...(at
      ? [
          below(`flood, ${tag}, at the first flood's rate (${f0(at.rate / ff.capacity)}x its capacity): refusal (503) p99`, atP99('503'), 10, 'ms'),
          below(`flood, ${tag}, at the first flood's rate: admitted (200) p99 / its unloaded p99`, atP99('200') / ff.unloadedP99, 2, 'x'),
        ]
      : []),
  ]
}

function floodSection (flood: FloodReport, latencyFirst = false): string[] {
  const ff = floodFigures(flood)
  const range = (xs: number[], f: (n: number) => string) => xs.length > 1 ? ` (${f(Math.min(...xs))}-${f(Math.max(...xs))})` : ''
  const cell = (xs: number[], f: (n: number) => string) => `${f(mid(xs))}${range(xs, f)}`
  const statusTable = (results: FloodResult[]) => {
    const statuses = [...new Set(results.flatMap(r => Object.keys(r.statuses)))].sort()
    const field = (status: string, f: 'count' | 'rps' | 'p50' | 'p99' | 'max') => results.map(r => r.statuses[status]?.[f] ?? (f === 'count' || f === 'rps' ? 0 : NaN))
    return [
      `| Flood: status | count | req/s | p50 ms | p99 ms | max ms |`,
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...statuses.map(k => `| ${k} | ${cell(field(k, 'count'), f0)} | ${cell(field(k, 'rps'), f0)} | ${cell(field(k, 'p50'), f1)} | ${cell(field(k, 'p99'), f1)} | ${cell(field(k, 'max'), f1)} |`),
    ]
  }
  const sent = (results: FloodResult[], rate: number, of: string) => {
    const lag = results.map(r => r.sendLag.p99)
    return `Offered: ${cell(results.map(r => r.offeredRps), f0)} req/s (target ${f0(rate)}${of}); sent ${cell(results.map(r => r.sentRps), f0)} req/s, ${results.map(r => r.unsent).join(' / ')} not sent (no idle socket at the cap); sockets at most ${results.map(r => r.sockets.peak).join(' / ')}; generator lag (send - scheduled) p99 ${cell(lag, f1)} ms.`
  }
  const at = flood.alsoAt
  const u200 = (f: 'rps' | 'p50' | 'p99' | 'max') => flood.unloaded.map(r => r.statuses['200']?.[f] ?? NaN)
  return [
    ...(latencyFirst
      ? [
          `## Flood, latency first: a server with \`${flood.serverArgs.join(' ')}\``,
          '',
          `A second server, set for latency rather than throughput: nothing queues, so a request is admitted only when an inference thread is free to start it (it never waits behind another request or a batch), and every other request is refused at once. It gives up batching: its capacity is ${FLOOD_MODEL}'s unbatched speed. Measured the same way as the first flood, against its own capacity (closed loop at c=${flood.capacityConnections}, one client per inference thread, so that none is refused; with more, most answers would be 503s, and their closed loop would take the core from the model): unloaded at 5% of it, flooded at 10x it; then flooded ${at ? `at the first flood's rate (${f0(at.rate)} req/s)` : 'no further'}.`,
          '',
        ]
      : [
          `## Flood: ${flood.model} through the resource route, open loop at 10x its capacity`,
          '',
          `\`${flood.model}\` (bench/models.ts) is compute-bound, so that the model, not HTTP, is what a flood overloads: 10x the capacity of mlp (~16k req/s, bounded by HTTP and JSON) is more than one core can even receive. It computes 68 M multiply-adds a row (since 2026-12-07 evening; 35 M before, when 10x its capacity, 8,400-9,400 req/s, neared what one core receives at all on a slow host).`,
          `Its capacity was measured in this run, closed loop at c=64, ${flood.capacity.length} times; the floods then offer 10x the best, open loop (bench/flood.ts): requests sent on a fixed schedule whatever the answers, one per keep-alive socket, a new socket when none is idle (up to 1,024; 512 opened beforehand), latency counted from each request's scheduled time, so a stall is charged to every request it delayed. A 1 s flood before them warms the refusal path and is not counted.`,
          `Goals: the floods' medians against the references at their best (other jobs on this machine only ever lower a throughput and raise a latency).`,
          `Server: ${flood.serverArgs.length ? `\`${flood.serverArgs.join(' ')}\` over ` : ''}the defaults: batches of up to ${SETTINGS.maxBatchSize.default} rows, at most ${SETTINGS.maxQueueItems.default} rows queued per model (past it, 503), inference threads at nice +${SETTINGS.threadNice.default}; an admitted request waits for the batch computing and the rows queued ahead of it.`,
          '',
        ]),
    `Server alive after the floods: ${flood.alive ? 'yes' : 'NO'}. ${sent(flood.results, flood.rate, `: 10x ${f0(ff.capacity)}`)}`,
    '',
    '| Reference (no flood) | runs | req/s | p50 ms | p99 ms | max ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    `| capacity: closed loop, c=${flood.capacityConnections} (autocannon, whole ms) | ${flood.capacity.length} | best ${f0(ff.capacity)}${range(flood.capacity.map(r => r.rps), f0)} | ${cell(flood.capacity.map(r => r.p50), f1)} | best ${f1(ff.loadedP99)}${range(flood.capacity.map(r => r.p99), f1)} | - |`,
    `| closed loop, c=1 (autocannon, whole ms) | 1 | ${f0(flood.c1.rps)} | ${f1(flood.c1.p50)} | ${f1(flood.c1.p99)} | - |`,
    `| unloaded: open loop at ${f0(flood.unloaded[0]?.targetRps ?? NaN)} req/s (bench/flood.ts) | ${flood.unloaded.length} | ${cell(u200('rps'), f0)} | ${cell(u200('p50'), f1)} | best ${f1(ff.unloadedP99)}${range(u200('p99'), f1)} | ${cell(u200('max'), f1)} |`,
    '',
    ...statusTable(flood.results),
    '',
    `Medians over the ${flood.results.length} floods, with their range in brackets.`,
    '',
    ...(at
      ? [
          `The same server at the first flood's rate, ${f0(at.rate / ff.capacity)}x its capacity. ${sent(at.results, at.rate, '')}`,
          '',
          ...statusTable(at.results),
          '',
          `Medians over the ${at.results.length} floods, with their range in brackets.`,
          '',
        ]
      : []),
  ]
}

await main()
