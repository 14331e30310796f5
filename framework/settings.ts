// The server's settings, gunicorn-style: one declarative table (name, flag,
// environment variable, default, validator, help) that drives parsing,
// `--help` and error messages. Precedence: defaults < environment < flags.
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { availableParallelism } from 'node:os'

// This module runs from the sources (framework/settings.ts, under tsx) or
// compiled by `npm start` (dist/framework/settings.js, scripts/build.mjs): the
// default app is the one compiled beside it, the models stay in the project.
const CODE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const COMPILED = import.meta.url.endsWith('.js')
const PROJECT_ROOT = COMPILED ? join(CODE_ROOT, '..') : CODE_ROOT

type Parser<T> = (raw: string) => T

interface Setting<T> {
  flag: string
  env: string
  default: T
  parse: Parser<T>
  help: string
  /** How the default is shown in --help when it is computed. */
  shownDefault?: string
}

class SettingError extends Error {}

const int = (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> => raw => {
  if (!/^-?[0-9]+$/.test(raw.trim())) throw new SettingError(`expected an integer, got '${raw}'`)
  const n = Number(raw)
  if (n < min || n > max) throw new SettingError(`expected an integer from ${min} to ${max}, got ${n}`)
  return n
}

/** The most seconds a duration setting takes: about 23 days, under the longest timer Node can set (2^31 - 1 ms, 24.8 days). */
const MAX_SECONDS = 2_000_000

const seconds = (min: number): Parser<number> => raw => {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(raw.trim())) throw new SettingError(`expected a number of seconds, got '${raw}'`)
  const n = Number(raw)
  if (n < min || n > MAX_SECONDS) throw new SettingError(`expected from ${min} to ${MAX_SECONDS} seconds, got ${n}`)
  return n
}

const oneOf = <T extends string>(...choices: T[]): Parser<T> => raw => {
  if (!(choices as string[]).includes(raw)) throw new SettingError(`expected one of ${choices.join(', ')}, got '${raw}'`)
  return raw as T
}

const text: Parser<string> = raw => {
  if (raw.trim() === '') throw new SettingError('expected a non-empty value')
  return raw
}

const host: Parser<string> = raw => {
  // An IPv6 address may be written in brackets, as in a URL ([::1]); listen() takes it bare.
  const bracketed = /^\[([0-9a-fA-F:.]+)\]$/.exec(raw)
  if (bracketed) return bracketed[1]
  if (!/^[A-Za-z0-9.:_-]+$/.test(raw)) throw new SettingError(`expected a host name or IP address, got '${raw}'`)
  return raw
}

const bool: Parser<boolean> = raw => {
  const v = raw.trim().toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  throw new SettingError(`expected true or false, got '${raw}'`)
}

/** Default inference threads: one per core, minus the one the HTTP thread uses. */
export const DEFAULT_THREADS = Math.max(1, availableParallelism() - 1)

export const SETTINGS = {
  app: { flag: '--app', env: 'APP_MODULE', default: join(CODE_ROOT, COMPILED ? 'app.js' : 'app.ts'), parse: text, shownDefault: './app.ts', help: 'Module whose buildApp(options) builds the app to serve' },
  host: { flag: '--host', env: 'HOST', default: '127.0.0.1', parse: host, help: 'Address to listen on (0.0.0.0 for every interface)' },
  port: { flag: '--port', env: 'PORT', default: 8000, parse: int(0, 65535), help: 'Port to listen on (0 picks a free one)' },
  workers: { flag: '--workers', env: 'WEB_CONCURRENCY', default: 1, parse: int(1, 64), help: 'Worker processes; 1 serves from this process without a cluster' },
  threads: { flag: '--threads', env: 'INFERENCE_THREADS', default: DEFAULT_THREADS, parse: int(1, 64), shownDefault: 'cores - 1, at least 1', help: 'Inference threads per worker (one model session each)' },
  modelsDir: { flag: '--models-dir', env: 'MODELS_DIR', default: join(PROJECT_ROOT, 'models'), parse: text, shownDefault: './models', help: 'Directory holding the ONNX models' },
  timeout: { flag: '--timeout', env: 'REQUEST_TIMEOUT', default: 30, parse: seconds(0), help: 'Request deadline in seconds: 504 after it (0 disables)' },
  bodyTimeout: { flag: '--body-timeout', env: 'BODY_TIMEOUT', default: 30, parse: seconds(1), help: 'Seconds a request body may take to arrive once its headers have: 408 and the connection closed after it, also with --timeout 0 (the body must arrive within the request deadline too)' },
  keepAlive: { flag: '--keep-alive', env: 'KEEP_ALIVE', default: 5, parse: seconds(0), help: 'Seconds an idle keep-alive connection stays open (0: each connection closes after its answer)' },
  sendTimeout: { flag: '--send-timeout', env: 'SEND_TIMEOUT', default: 30, parse: seconds(0), help: 'Seconds a client may read nothing of an answer of 64 kB or more before its connection is closed (0: no limit)' },
  gracefulTimeout: { flag: '--graceful-timeout', env: 'GRACEFUL_TIMEOUT', default: 30, parse: seconds(0), help: 'On SIGTERM, seconds in-flight requests get before the rest is killed' },
  workerTimeout: { flag: '--worker-timeout', env: 'WORKER_TIMEOUT', default: 30, parse: seconds(0), help: 'Seconds a ready cluster worker may go unheard (its event loop blocked) before the primary kills it (SIGKILL) and starts another; while it loads its models, --load-timeout (0 disables both)' },
  loadTimeout: { flag: '--load-timeout', env: 'LOAD_TIMEOUT', default: 120, parse: seconds(1), help: 'Seconds models may take to load and warm up' },
  maxRequests: { flag: '--max-requests', env: 'MAX_REQUESTS', default: 0, parse: int(0), help: 'Recycle a worker after this many requests (0 disables; needs --workers >= 2); asked again every as many more if its replacement fails' },
  maxRequestsJitter: { flag: '--max-requests-jitter', env: 'MAX_REQUESTS_JITTER', default: 0, parse: int(0), help: 'Random extra requests (0..N) added to --max-requests per worker' },
  maxBatchSize: { flag: '--max-batch-size', env: 'MAX_BATCH_SIZE', default: 64, parse: int(1, 65536), help: 'Most examples (rows) merged into one model run; 1 disables batching. A model\'s config.json may set maxBatchSize' },
  maxQueueDelay: { flag: '--max-queue-delay', env: 'MAX_QUEUE_DELAY', default: 0, parse: int(0, 60_000), help: 'Milliseconds a batch that is not full may wait for more requests (0: never wait). config.json: maxQueueDelayMs' },
  maxQueueItems: { flag: '--max-queue-items', env: 'MAX_QUEUE_ITEMS', default: 64, parse: int(0), help: 'Most examples waiting per model (the default: one batch waiting behind the one computing), plus the rows its batches computing left unfilled (a burst on an idle server fits in a batch computing and one waiting); over it, 503 with Retry-After at once. 0: nothing waits, a request is admitted only when an inference thread is free to start it. config.json: maxQueueItems' },
  inlineBelow: { flag: '--inline-below', env: 'INLINE_BELOW_US', default: 100, parse: int(0, 100_000), help: 'Microseconds: a model run predicted to take less runs on the main thread, cheaper than the hop to an inference thread (0: always use the threads)' },
  threadNice: { flag: '--thread-nice', env: 'THREAD_NICE', default: 10, parse: int(0, 19), help: 'Niceness the inference threads add to the process\'s (Linux): the HTTP thread then runs first when they share a core, so refusals, health checks and answers do not wait behind a batch (0: same priority)' },
  bodyLimit: { flag: '--body-limit', env: 'BODY_LIMIT', default: 1024 * 1024, parse: int(1), help: 'Largest request body in bytes (413 above it)' },
  repositoryApi: { flag: '--repository-api', env: 'REPOSITORY_API', default: false as boolean, parse: bool, help: 'Serve the Open Inference Protocol repository API (load/unload models over HTTP: a management action)' },
  stopOnModelFailure: { flag: '--stop-on-model-failure', env: 'STOP_ON_MODEL_FAILURE', default: false as boolean, parse: bool, help: 'A model in the directory that fails to load stops the server (else the others serve, /health/ready stays 200, and it answers 503 MODEL_NOT_READY; resources\' models always stop it)' },
  logLevel: { flag: '--log-level', env: 'LOG_LEVEL', default: 'info' as string, parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), help: 'Log level' },
} satisfies Record<string, Setting<unknown>>

export type Settings = { [K in keyof typeof SETTINGS]: typeof SETTINGS[K]['default'] }

export class UsageError extends Error {}

/** Parses flags and environment over the defaults; throws UsageError naming the setting. */
export function parseSettings (argv: string[], env: NodeJS.ProcessEnv = {}): Settings | 'help' {
  const values: Record<string, unknown> = {}
  const entries = Object.entries(SETTINGS) as Array<[string, Setting<unknown>]>
  const apply = (name: string, setting: Setting<unknown>, raw: string, source: string) => {
    try {
      values[name] = setting.parse(raw)
    } catch (err) {
      if (!(err instanceof SettingError)) throw err
      throw new UsageError(`invalid value for ${name} (${source}): ${err.message}`)
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--help' || arg === '-h') return 'help'
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const entry = entries.find(([, s]) => s.flag === flag)
    if (!entry) throw new UsageError(`unknown option '${flag}' (see --help)`)
    const raw = inline ?? argv[++i]
    if (raw === undefined) throw new UsageError(`option ${flag} needs a value`)
    apply(entry[0], entry[1], raw, flag)
  }
  // A flag wins over the environment, whose value for it is then not even
  // read: a stray PORT=abc must not stop `--port 9000`.
  for (const [name, setting] of entries) {
    if (name in values) continue
    values[name] = setting.default
    const raw = env[setting.env]
    if (raw !== undefined && raw !== '') apply(name, setting, raw, `environment variable ${setting.env}`)
  }
  values.modelsDir = resolve(values.modelsDir as string)
  values.app = resolve(values.app as string)
  return values as Settings
}

/** The --help text, generated from the table. */
export function helpText (): string {
  const settings = Object.values(SETTINGS) as Array<Setting<unknown>>
  // The widest option and two spaces (--stop-on-model-failure <value> is 31 characters).
  const width = Math.max(...settings.map(s => `${s.flag} <value>`.length)) + 2
  const rows = settings.map(s => {
    const def = s.shownDefault ?? String(s.default)
    return `  ${`${s.flag} <value>`.padEnd(width)}${s.help}\n  ${''.padEnd(width)}env ${s.env}, default ${def}`
  })
  return [
    'Usage: npm start -- [options]   (or: node --import tsx server.ts [options])',
    '',
    'Serves the app that --app names (app.ts by default) over HTTP.',
    'Precedence: defaults < environment variables < command-line flags.',
    '',
    'Options:',
    ...rows,
    `  ${'-h, --help'.padEnd(width)}Show this help`,
    '',
    'Signals: TERM drains and exits 0; INT and QUIT stop at once (also during a drain); HUP replaces workers one by one',
    '(with one process: re-scans the models directory and hot-swaps what changed); TTIN adds a worker and TTOU removes one',
    '(with one process, both are ignored). USR1 and USR2 are ignored. Send them to this process\'s pid (the "pid" of its',
    'log lines), not to npm\'s: npm relays only INT and TERM.',
  ].join('\n')
}

/** Markdown table of the settings, for the README. */
export function settingsTable (): string {
  const lines = ['| Setting | Flag | Environment | Default | Meaning |', '| --- | --- | --- | --- | --- |']
  for (const [name, s] of Object.entries(SETTINGS) as Array<[string, Setting<unknown>]>) {
    lines.push(`| ${name} | \`${s.flag}\` | \`${s.env}\` | ${s.shownDefault ?? String(s.default)} | ${s.help} |`)
  }
  return lines.join('\n')
}
