// One serving process: builds the app, listens, loads the models, and handles
// signals. Used directly when --workers is 1, and by every cluster worker.
//
// Order matters: alone, the process listens first and loads after, so
// /health/live answers at once and /health/ready says "loading" until the
// models are in; a cluster worker loads first and then listens, so that the
// primary never hands it a connection it would answer 503 "loading".
// Signals: TERM drains (readiness 503, no new connections, in-flight requests
// finish, exit 0; killed after the graceful timeout); INT and QUIT stop at once;
// HUP reloads the models (alone); TTIN and TTOU (alone: no workers), USR1 and
// USR2 (gunicorn's log reopening and binary upgrade) are ignored. Until
// serve() handles them (from the process's start, before the server's own
// modules load, through the app's import and build) they are held
// (signal-hold.ts): a stop exits 0 at once, the others are dropped.
import cluster from 'node:cluster'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { App, AppOptions } from './create-app.ts'
import type { Settings } from './settings.ts'
import type { MetricsPart } from './metrics.ts'
import { holdSignals, type ReleaseSignals } from './signal-hold.ts'

export type BuildApp = (options: AppOptions) => Promise<App>

/** Messages a cluster worker sends the primary. */
export type WorkerMessage =
  | { type: 'ready', port: number }
  | { type: 'failed', error: string }
  | { type: 'retire' }
  /** Sent by a worker from the start of serve(), every heartbeatIntervalMs: its event loop turns (--worker-timeout). */
  | { type: 'heartbeat' }
  /** A scrape of /metrics: the arbiter answers with every worker's metrics (metrics.ts). */
  | { type: 'metrics', id: number }
  /** A worker's own metrics, for the arbiter's gathering `id`. */
  | { type: 'metrics-part', id: number, metrics?: MetricsPart, error?: string }
  /** A worker's metrics as its app closes: final, kept by the arbiter once the worker is gone. */
  | { type: 'metrics-final', metrics: MetricsPart }

/**
 * What the arbiter sends a ready worker it replaces (HUP, --max-requests) or
 * removes (TTOU), instead of a TERM: it drains as on TERM, but the server
 * goes on, so its readiness stays 200 (create-app.ts's drain).
 */
export interface RetireMessage { type: 'retire' }

/** What the server logs when it ignores USR1 or USR2 (gunicorn's log reopening and binary upgrade). */
export const USER_SIGNALS_IGNORED = {
  SIGUSR1: 'SIGUSR1 ignored: the logs go to stdout, there is no log file to reopen',
  SIGUSR2: 'SIGUSR2 ignored: there is no binary upgrade in place; restart, or HUP to reload',
} as const

/**
 * How often a ready worker tells the primary it is alive: often enough that
 * a few late beats (a loaded machine) stay well within --worker-timeout.
 */
export const heartbeatIntervalMs = (settings: Settings) => Math.min(1000, Math.min(settings.workerTimeout, settings.loadTimeout) * 250)

/** How long an idle server may still take to close once the graceful timeout has passed (an idle close takes milliseconds). */
const CLOSE_GRACE_MS = 1000
/** How long past the graceful timeout an orphaned worker may still drain before its inference threads kill it (the primary's own backstop: arbiter.ts). */
const ORPHAN_KILL_GRACE_MS = 2000

/**
 * Seconds as whole milliseconds, a positive time never below 1 ms: for the
 * deadline, keep-alive and send timeout, 0 means none, so `--timeout 0.0004` rounded to 0
 * would have turned deadlines off.
 */
const milliseconds = (seconds: number) => seconds > 0 ? Math.max(1, Math.round(seconds * 1000)) : 0

export function appOptions (settings: Settings, logger: AppOptions['logger']): AppOptions {
  return {
    modelsDir: settings.modelsDir,
    threads: settings.threads,
    requestTimeoutMs: milliseconds(settings.timeout),
    bodyTimeoutMs: milliseconds(settings.bodyTimeout),
    keepAliveTimeoutMs: milliseconds(settings.keepAlive),
    sendTimeoutMs: milliseconds(settings.sendTimeout),
    loadTimeoutMs: Math.round(settings.loadTimeout * 1000),
    bodyLimit: settings.bodyLimit,
    repositoryApi: settings.repositoryApi,
    stopOnModelFailure: settings.stopOnModelFailure,
    clusterMetrics: settings.workers > 1 && cluster.isWorker,
    batching: { maxBatchItems: settings.maxBatchSize, maxDelayMs: settings.maxQueueDelay, maxQueueItems: settings.maxQueueItems },
    inlineBelowUs: settings.inlineBelow,
    threadNice: settings.threadNice,
    logger,
  }
}

function tell (message: WorkerMessage) {
  // A worker outlives a primary that died (it drains): without a callback, a
  // send on the closed channel would be an 'error' event, thrown.
  if (cluster.isWorker && process.connected && process.send) process.send(message, undefined, {}, () => {})
}

/** What every log line of this process carries: its pid, and in a cluster its worker id. */
const logBase = () => ({ pid: process.pid, ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}) })

/**
 * `releaseSignals`: the hold on the signals (signal-hold.ts), in place since
 * the process started (server.ts); without one, they are held from here,
 * while the app is built. What it dropped stays dropped: a HUP before the
 * app is built has nothing to reload, TTIN and TTOU mean nothing here.
 */
export async function serve (buildApp: BuildApp, settings: Settings, releaseSignals: ReleaseSignals = holdSignals(settings.logLevel)): Promise<void> {
  // The primary kills a worker it has not heard from for --worker-timeout
  // once it listens (a handler stuck in a synchronous loop holds the event
  // loop, and the connections handed to it hang), or for --load-timeout
  // before (a load that holds the loop: the load timeout cannot fire). These
  // beats say the loop turns, from here (the app's import is not watched)
  // until the process exits, its drain included.
  if (cluster.isWorker && settings.workerTimeout > 0) {
    // One now: the watch starts with it, even if the build or the load holds the loop before the interval's first beat.
    tell({ type: 'heartbeat' })
    setInterval(() => tell({ type: 'heartbeat' }), heartbeatIntervalMs(settings)).unref()
  }
  // An orphaned worker (the primary killed: kill -9, the OOM killer) drains
  // and exits, unless its event loop is blocked (a handler in an endless
  // loop): it would spin for ever. Its inference threads, whose loops turn,
  // watch for it (inference-worker.js): once this process's parent is no
  // longer the primary, and the drain's bound is past, they kill it. Set
  // before the app is built: a thread copies the environment as it starts
  // (this pid in it: a process the app starts inherits the variable, and
  // is no worker to watch).
  if (cluster.isWorker) process.env.ONNX_SERVE_ORPHAN_WATCH = `${process.pid}:${process.ppid}:${settings.gracefulTimeout * 1000 + ORPHAN_KILL_GRACE_MS}`
  const app = await buildApp(appOptions(settings, {
    level: settings.logLevel,
    base: logBase(),
  }))
  const log: FastifyBaseLogger = app.log

  let stopping = false
  // Requests in flight: the graceful timeout stops these, if any; an idle
  // server (always, with --graceful-timeout 0) closes and exits 0, given
  // CLOSE_GRACE_MS more to finish closing (a resource's close() that hangs
  // does not keep it for ever). A model still computing is work in flight
  // too, even when its client left (its response closed): close() would wait
  // for the run to end, past the timeout. A request that arrives past the
  // timeout (on a connection opened before the drain) is stopped as it arrives.
  let inFlight = 0
  let late = false
  const stopInFlight = () => {
    if (inFlight > 0 || app.models.pool.computing > 0) {
      log.warn({ requests: inFlight, computing: app.models.pool.computing }, 'graceful timeout reached: stopping with requests still in flight')
      return exit(1)
    }
    if (late) return
    late = true
    // Idle, and still closing (the listener, models, resources' close()):
    // an idle close takes milliseconds, so one that has not finished a
    // moment later is stuck, and the server stops anyway.
    setTimeout(() => {
      log.warn('graceful timeout reached: closing has not finished; stopping')
      exit(1)
    }, CLOSE_GRACE_MS).unref()
  }
  app.server.on('request', (_req, res) => {
    inFlight++
    res.once('close', () => inFlight--)
    if (late) stopInFlight()
  })
  const exit = (code: number) => {
    // Let the logger flush its last lines before the process goes.
    setImmediate(() => {
      // process.exit() cannot interrupt an inference thread inside
      // session.run (native code): Node waits for it, and ONNX Runtime aborts
      // when its globals are torn down under a running kernel. A process
      // that must stop while a model computes is killed outright instead.
      if (app.models.pool.computing > 0) process.kill(process.pid, 'SIGKILL')
      else process.exit(code)
    })
  }

  const drain = async (signal: string, { replaced = false } = {}) => {
    if (stopping) {
      // A TERM to a worker that drains for its replacement: the server stops
      // now too, and readiness says so.
      if (!replaced && app.lifecycle.replaced) app.drain()
      return
    }
    stopping = true
    log.info({ signal, gracefulTimeout: settings.gracefulTimeout, ...(replaced ? { replaced } : {}) }, 'draining: finishing in-flight requests')
    app.drain({ replaced })
    setTimeout(stopInFlight, settings.gracefulTimeout * 1000).unref()
    // For a moment, keep accepting: responses now carry `Connection: close`,
    // so busy keep-alive clients leave on their own rather than have an idle
    // connection closed under a request they are sending.
    await new Promise(resolve => setTimeout(resolve, Math.min(500, settings.gracefulTimeout * 250)))
    log.info('closing the listener: new connections are refused')
    try {
      await app.close()
      log.info('drained, exiting')
      exit(0)
    } catch (err) {
      log.error({ err }, 'error while closing')
      exit(1)
    }
  }

  const stopNow = (signal: string) => {
    log.info({ signal }, 'stopping now')
    exit(0)
  }

  // `on`, not `once`: a second TERM (a process group's, then the arbiter's) must not kill the drain.
  process.on('SIGTERM', () => { void drain('SIGTERM') })
  // The arbiter replaces or removes a ready worker with a message rather than
  // a TERM: the server goes on (its other workers serve), and a readiness
  // probe that reaches this worker while it drains must not say otherwise.
  if (cluster.isWorker) {
    process.on('message', (message: RetireMessage | undefined) => {
      if (message?.type === 'retire') void drain('retire', { replaced: true })
    })
  }
  process.once('SIGINT', () => stopNow('SIGINT'))
  process.once('SIGQUIT', () => stopNow('SIGQUIT'))
  // Signals ignored here, with the warning logged alone (a worker leaves them
  // to the primary). TTIN and TTOU add and remove workers, which only the
  // cluster's primary does, and their default action stops the process (job
  // control): a lone server, or a worker signalled with its process group,
  // would freeze. gunicorn's USR1 (reopen the log files: logrotate's
  // postrotate sends it) and USR2 (upgrade the binary in place) mean nothing
  // here, and Node's default actions would not do: USR1 opens the inspector
  // (a debugger any local user can attach to), USR2 ends the process at once,
  // cutting the requests in flight.
  const ignored: Record<string, string> = {
    SIGTTIN: 'SIGTTIN ignored: adding and removing workers needs --workers >= 2',
    SIGTTOU: 'SIGTTOU ignored: adding and removing workers needs --workers >= 2',
    ...USER_SIGNALS_IGNORED,
  }
  for (const [signal, warning] of Object.entries(ignored)) {
    process.on(signal, () => {
      if (!cluster.isWorker) log.warn({ signal }, warning)
    })
  }
  // In a cluster the primary replaces workers on HUP; alone, HUP reloads in
  // place (the model repository re-scans and hot-swaps what changed).
  process.on('SIGHUP', () => {
    if (cluster.isWorker) return
    log.info('SIGHUP: reloading')
    app.reload().then(() => log.info('reload done'), (err: Error) => log.error({ err }, 'reload failed'))
  })
  // The primary going away (kill -9, the OOM killer) must neither leave an
  // orphaned worker nor cut its requests. Node's cluster code exits a worker
  // at once when the channel to the primary closes unless `exitedAfterDisconnect`
  // is set: its own 'disconnect' listener on `process` emits the worker's
  // 'disconnect' first, then checks that flag. This listener sets it, and the
  // worker drains as on TERM (the graceful timeout bounds it; in round-robin
  // mode no new connection can reach it anyway). A worker still booting exits
  // once its models are loaded, without listening: exiting in the middle of
  // the load would abort ONNX Runtime under a running session (see `exit`).
  let serving = false
  let orphaned = false
  const worker = cluster.worker
  worker?.on('disconnect', () => {
    worker.exitedAfterDisconnect = true
    if (serving) return void drain('primary disconnected')
    orphaned = true
    log.info({ gracefulTimeout: settings.gracefulTimeout }, 'primary disconnected while booting: exiting once loaded')
    setTimeout(() => {
      log.warn('graceful timeout reached while booting: stopping')
      exit(1)
    }, settings.gracefulTimeout * 1000).unref()
  })
  // The handlers above are in place: no signal falls between them and the held ones.
  releaseSignals()

  if (settings.maxRequests > 0) {
    if (!cluster.isWorker) {
      log.warn('--max-requests needs --workers >= 2 (a lone process has nobody to replace it); ignored')
    } else {
      const limit = settings.maxRequests + Math.floor(Math.random() * (settings.maxRequestsJitter + 1))
      let served = 0
      // Asked again every --max-requests requests after: a replacement that
      // died or could not load its models leaves this worker serving, and it
      // must not serve on for ever unrecycled. (While its replacement boots,
      // the arbiter ignores the asks; once replaced, it drains.)
      const answered = () => {
        if (++served >= limit && (served - limit) % settings.maxRequests === 0) {
          log.info({ served }, 'max requests reached: asking to be replaced')
          tell({ type: 'retire' })
        }
      }
      // Every request the worker handled counts, as in gunicorn: on Node's
      // server, not fastify's onResponse, which misses the requests answered
      // before fastify (an early 503, a 400 without Host, a 417: create-app.ts)
      // and those whose client left before the answer (499). Counted as their
      // response closes, answered or abandoned.
      const count = (_req: IncomingMessage, res: ServerResponse) => { res.once('close', answered) }
      app.server.on('request', count)
      app.server.on('checkExpectation', count)
    }
  }

  // Alone, the process listens first and loads after: /health/live answers
  // at once, and /health/ready says "loading" until the models are in. A
  // cluster worker loads first: once it listens, the primary hands it new
  // connections, which must not get 503 "loading" while the other workers
  // (or the one it replaces, on HUP or --max-requests) could serve them.
  const load = async (): Promise<boolean> => {
    try {
      const started = performance.now()
      await app.loadResources()
      log.info({ loadMs: Math.round(performance.now() - started) }, 'ready: models loaded')
      return true
    } catch (err) {
      // A TERM while loading closes the app, and
      // with it the inference threads, under the load: no model failed, and
      // the drain exits.
      if (stopping) {
        log.info({ error: (err as Error).message }, 'stopped while loading the models')
        return false
      }
      const message = (err as Error).message
      // A cluster worker's failure is logged by the primary, once (its
      // stderr line and its JSON line, naming the worker and what follows);
      // the worker keeps the stack at debug level.
      if (cluster.isWorker) {
        log.debug({ err }, 'models failed to load')
      } else {
        log.fatal({ err }, 'models failed to load')
        process.stderr.write(`error: ${message}\n`)
      }
      tell({ type: 'failed', error: message })
      await app.close().catch(() => {})
      exit(3)
      return false
    }
  }
  if (cluster.isWorker && !await load()) return
  // A TERM came as the load ended (a TTOU's, or a HUP's once this worker was
  // replaced): the drain closes the app and exits. Listening now would take
  // the connections the primary hands out while it drains.
  if (cluster.isWorker && stopping) return
  if (orphaned) {
    // Listening would wait for the primary's answer for ever.
    await app.close().catch(() => {})
    log.info('loaded with the primary gone: exiting')
    exit(0)
    return
  }
  // With --port 0 the arbiter hands later workers the port the first one got.
  const wantedPort = cluster.isWorker && process.env.ONNX_SERVE_PORT ? Number(process.env.ONNX_SERVE_PORT) : settings.port
  try {
    await app.listen({ host: settings.host, port: wantedPort })
  } catch (err) {
    const error = `cannot listen on ${settings.host}:${wantedPort}: ${(err as Error).message}`
    // An operator's error (a port in use), not a bug: no stack trace. A
    // cluster worker's error is reported by the primary.
    if (cluster.isWorker) {
      log.debug({ err }, 'cannot listen')
    } else {
      log.error({ error, code: (err as NodeJS.ErrnoException).code }, 'cannot listen')
      process.stderr.write(`error: ${error}\n`)
    }
    tell({ type: 'failed', error })
    process.exitCode = 1
    await app.close().catch(() => {})
    exit(1)
    return
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : wantedPort
  if (!cluster.isWorker && !await load()) return
  serving = true
  tell({ type: 'ready', port })
}
