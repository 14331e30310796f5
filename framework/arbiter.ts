// The cluster primary, like gunicorn's arbiter: it forks the workers (each
// loads its models after the fork), keeps their number up, and turns signals
// into worker management. It never serves HTTP itself.
//
// - A worker that fails to boot (a model does not load; or any worker dies
//   before the first one was ready) stops the whole server with exit code 3
//   and the error: retrying would fail the same way. Once the server has
//   been up (a TTIN's worker, a respawn), the workers serving drain first.
//   The first failure is reported (stderr and the log); the other workers
//   that fail with the same cause as the server stops are logged at info
//   level only (another cause is reported).
// - Once the server has been up, a worker that dies is replaced, with a
//   back-off that grows while workers keep dying, so a crash loop does not
//   spin the CPU. A replacement for HUP (or --max-requests) that dies or
//   fails to load its models while booting leaves the old worker serving
//   (at --max-requests, it asks again that many requests later: serve.ts;
//   asks within a back-off after the failure, 1 s doubling up to 10 s, are
//   ignored).
// - Before forking, the arbiter checks that it can listen on the host and
//   port (exit 1 with the error if not). With --port 0, it picks a free port
//   then, and every worker listens on it (Node's cluster keeps a port-0
//   listener's port only while a worker holds it: after all workers died,
//   they would come back on another).
// - TERM: workers drain, each stopping itself at the graceful timeout; exit 0
//   once all are gone (1 if one had to cut requests; any worker left 2 s
//   past the timeout is killed).
// - INT, QUIT: workers stop at once, also while they drain after a TERM.
// - HUP: workers are replaced one by one, each new one ready before the old
//   one drains, so no request is dropped (a ready worker replaced or
//   removed is told with a 'retire' message, not a TERM: it drains with
//   readiness 200, the server going on). Only the workers that will
//   remain: once as many live workers as the target were forked after the
//   HUP, it stops; a worker beyond the target (a TTOU still waiting to
//   remove one) is removed, not replaced. A HUP stops the replacements
//   still booting (an earlier HUP's, --max-requests'): the workers they were
//   to replace serve on, and this HUP replaces them (`supersede`).
// - Once stopping, TTIN, TTOU and HUP are logged as ignored: every worker
//   drains already.
// - TTIN / TTOU: one worker more / less. TTOU removes at once a worker
//   still booting that is no replacement (HUP, --max-requests), also while
//   none is ready (right after start): it serves nobody yet, where the
//   first one ready would go and leave nobody serving while the others
//   boot. Else a ready one goes (first one a HUP has yet to replace), never
//   the only one serving; never a replacement still booting: when every
//   live worker booting is one (a HUP during the boot), beside none ready
//   or the only one serving, a worker goes once another is ready. While a
//   dead worker's respawn is pending, that respawn is dropped instead. A
//   worker that reached --max-requests is replaced the same way as on HUP.
// - Before the first workers are forked (from the process's start: the hold
//   of signal-hold.ts until runArbiter takes over, then while it checks the
//   port), TERM, INT and QUIT exit 0 at once (nothing to stop); TTIN and
//   TTOU set how many workers are forked; a HUP has nothing to replace (the
//   workers load the models as they are on disk then), it is logged and
//   dropped; USR1 and USR2 are ignored as ever.
// - 'all workers ready' is logged once, the first time as many live workers
//   as the target are all ready (workers removed on purpose do not count).
//   A worker told to stop as it finished booting does not listen (serve.ts);
//   if the TERM came as it started to listen, its 'ready' is not logged
//   'worker ready', nor counted as serving.
// - --worker-timeout: a ready worker not heard from (heartbeats) for that
//   long, its event loop blocked, is killed and replaced; a booting one,
//   after --load-timeout (watchHeartbeats).
// - /metrics: the arbiter sums every ready worker's metrics
//   (cluster-metrics.ts), and counts those still booting in the lifecycle
//   state gauge ('loading'; 'failed' once one said its load failed;
//   'draining' once told to stop: TTOU, a later HUP, the server stopping); a
//   draining worker that sent its final metrics is 'draining' until it exits.
import cluster, { type Worker } from 'node:cluster'
import { createServer, type AddressInfo } from 'node:net'
import pino from 'pino'
import type { Settings } from './settings.ts'
import { heartbeatIntervalMs, USER_SIGNALS_IGNORED, type RetireMessage, type WorkerMessage } from './serve.ts'
import { holdSignals, type ReleaseSignals } from './signal-hold.ts'
import type { ArbiterMetricsMessage } from './metrics.ts'
import { ClusterMetrics } from './cluster-metrics.ts'

const BOOT_FAILURE = 3
/** How long past the graceful timeout the primary waits for draining workers (which stop themselves at it) before killing them. */
const WORKER_STOP_GRACE_MS = 2000
const MAX_BACKOFF_MS = 10_000

/** Listens on `host:port` and lets go: the port it got (the system's choice for port 0), or the listen error. */
function tryListen (host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(port, host, () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Sends a worker a message, unless it is gone; whether it was sent. */
function tell (worker: Worker, message: ArbiterMetricsMessage): boolean {
  if (!worker.isConnected()) return false
  // With a callback, a channel that closes meanwhile is reported there, not thrown.
  worker.send(message, undefined, () => {})
  return true
}

/** `releaseSignals`: the hold on the signals since the process started (server.ts); taken over once the handlers are in place. */
export function runArbiter (settings: Settings, releaseSignals: ReleaseSignals = holdSignals(settings.logLevel)): void {
  const log = pino({ level: settings.logLevel, base: { pid: process.pid, role: 'arbiter' } })
  let target = settings.workers
  /** Whether the first workers were forked: until then, TTIN and TTOU only change how many will be. */
  let forked = false
  let stopping = false
  let backoffMs = 0
  let lastDeath = 0
  /** Whether any worker has been ready: before, a death is a boot failure. */
  let wasUp = false
  /** With --port 0, a free port chosen before the first fork, which every worker listens on. */
  let boundPort: number | undefined
  const ready = new Set<Worker>()
  const retiring = new Set<Worker>()
  /**
   * Workers told to stop (TTOU, beyond the target, replaced), until they
   * exit. A TERM that reaches a worker as it finishes booting lets it listen
   * while it drains: its 'ready' then is no worker serving, nor one awaited.
   */
  const removed = new Set<Worker>()
  /** Workers started by `replace`, until ready, each with the old worker it replaces: if one dies, `replace` keeps the old one. */
  const replacements = new Map<Worker, Worker>()
  /** HUPs so far; each worker's count at its fork: one forked before the latest HUP is stale, for that HUP to replace. */
  let generation = 0
  const bornIn = new Map<Worker, number>()
  const isStale = (worker: Worker) => (bornIn.get(worker) ?? 0) < generation
  const waiters = new Map<Worker, (ok: boolean) => void>()
  const metrics = new ClusterMetrics<Worker>({
    ask: (worker, id) => tell(worker, { type: 'metrics-collect', id }),
    nameOf: worker => worker.id,
  })

  // Not a dead worker either: one whose 'exit' comes before its 'disconnect'
  // (see `shutdown`) is still in cluster.workers during its 'exit' and the
  // `replace` that awaited it, and would count towards the target.
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !w.isDead() && !retiring.has(w))

  /**
   * Stops a worker on purpose: it drains (or exits at once while booting),
   * off the count. A ready one is told with a message rather than a TERM: it
   * drains the same way, but as the server goes on, its readiness stays 200
   * (serve.ts); a TERM would have it answer 503 'shutting down' to the probes
   * the primary hands it meanwhile. A worker still booting gets the TERM (its
   * handlers may not be in place: the hold exits it at once).
   */
  const stopWorker = (worker: Worker) => {
    retiring.add(worker)
    removed.add(worker)
    if (!ready.has(worker) || !worker.isConnected()) return void worker.process.kill('SIGTERM')
    const retire: RetireMessage = { type: 'retire' }
    // A channel that closed meanwhile: the TERM, as before.
    worker.send(retire, undefined, err => { if (err) worker.process.kill('SIGTERM') })
  }

  const spawn = (onFork?: (worker: Worker) => void): Promise<boolean> => {
    const worker = cluster.fork(boundPort === undefined ? {} : { ONNX_SERVE_PORT: String(boundPort) })
    bornIn.set(worker, generation)
    onFork?.(worker)
    return new Promise(resolve => waiters.set(worker, resolve))
  }

  /** The signal the workers were stopped with, once stopping. */
  let stoppedWith: NodeJS.Signals | undefined
  /** A worker ended a TERM drain with an error or a signal (it cut requests at the graceful timeout): the primary exits 1. */
  let workerFailed = false
  let killTimer: NodeJS.Timeout | undefined
  const stopWorkers = (code: number, signal: NodeJS.Signals) => {
    stoppedWith = signal
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w)
    log.info({ signal, workers: workers.length }, 'stopping workers')
    if (workers.length === 0) process.exit(code)
    for (const w of workers) w.process.kill(signal)
    // A draining worker stops itself at the graceful timeout (and an idle one
    // still closing a second later: serve.ts); this is the backstop.
    const timeoutMs = signal === 'SIGTERM' ? settings.gracefulTimeout * 1000 + WORKER_STOP_GRACE_MS : 2000
    clearTimeout(killTimer)
    killTimer = setTimeout(() => {
      log.warn('workers still running after the timeout: killing them')
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL')
      process.exit(code || 1)
    }, timeoutMs).unref()
  }

  const shutdown = (code: number, signal: NodeJS.Signals) => {
    if (stopping) {
      // INT or QUIT during a TERM drain stops the workers at once, as it does
      // a lone process (and gunicorn's arbiter): no waiting for the graceful timeout.
      if (stoppedWith === 'SIGTERM' && (signal === 'SIGINT' || signal === 'SIGQUIT')) stopWorkers(Number(process.exitCode ?? 0), signal)
      return
    }
    stopping = true
    // Also the code of a natural end: a worker leaves cluster.workers on its
    // exit and its disconnect, in either order, so the last 'exit' below may
    // still see it listed, and then nothing is left to call process.exit.
    process.exitCode = code
    stopWorkers(code, signal)
    const exitWhenAllGone = () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(workerFailed ? code || 1 : code)
    }
    cluster.on('exit', exitWhenAllGone)
    cluster.on('disconnect', exitWhenAllGone)
  }

  /**
   * --worker-timeout, gunicorn's worker timeout: when each worker was last
   * heard from (its heartbeats from the start of serve(), every message:
   * serve.ts), until it exits. One that listens (said 'ready') and is silent
   * longer (its event loop blocked: the connections handed to it hang) is
   * killed, and replaced as any dead worker is; also one draining (replaced,
   * removed, or on TERM: its own graceful timeout cannot fire either). One
   * still booting may be silent for --load-timeout (a synchronous load), no
   * longer: its own load timeout cannot fire either. Its death is then what
   * a failed boot is (exit 3 at start-up; the old worker serves on for a
   * replacement). The app's import, before serve(), is not watched.
   */
  const lastHeard = new Map<Worker, number>()
  /** Workers that said 'ready' (also one being removed as it did). */
  const listening = new Set<Worker>()
  const watchHeartbeats = () => {
    if (settings.workerTimeout <= 0) return
    const timeoutMs = settings.workerTimeout * 1000
    const bootTimeoutMs = settings.loadTimeout * 1000
    const everyMs = heartbeatIntervalMs(settings)
    let lastCheck = Date.now()
    setInterval(() => {
      const now = Date.now()
      // The primary itself was held (suspended, starved of CPU): the beats
      // sent meanwhile are not read yet (timers run before I/O), so the
      // count starts again rather than kill every worker.
      if (now - lastCheck > everyMs + Math.min(timeoutMs, bootTimeoutMs) / 2) for (const worker of lastHeard.keys()) lastHeard.set(worker, now)
      lastCheck = now
      for (const [worker, heard] of lastHeard) {
        const booting = !listening.has(worker)
        if (now - heard <= (booting ? bootTimeoutMs : timeoutMs)) continue
        lastHeard.delete(worker)
        const silentMs = now - heard
        const [when, flag] = booting ? [' while booting', '--load-timeout'] : ['', '--worker-timeout']
        log.error({ worker: worker.id, workerPid: worker.process.pid, silentMs, workerTimeout: settings.workerTimeout, loadTimeout: settings.loadTimeout }, `worker silent past ${flag}${when} (event loop blocked?): killing it`)
        process.stderr.write(`error: worker ${worker.id} (pid ${worker.process.pid}) silent for ${(silentMs / 1000).toFixed(1)} s${when}, past ${flag}: killed (SIGKILL)\n`)
        worker.process.kill('SIGKILL')
      }
    }, everyMs).unref()
  }

  /** Whether 'all workers ready' was logged. */
  let allReadyLogged = false
  /**
   * Logs 'all workers ready' the first time as many live workers as the
   * target are all ready. Workers removed on purpose (TTOU, HUP) are off
   * `live()`, so a booting one that a TTOU stopped does not hold the line
   * back; a TTIN or TTOU during the boot changes the number awaited.
   */
  const logAllReady = () => {
    if (allReadyLogged || stopping) return
    const workers = live()
    if (workers.length !== target || !workers.every(w => ready.has(w))) return
    allReadyLogged = true
    log.info({ workers: workers.length }, 'all workers ready')
  }

  /**
   * The worker to remove, with more live than the target (a TTOU; or one
   * beyond it), or none for now. `live()` counts the workers left once
   * things settle: a replacement booting stands for the old worker it
   * replaces, which is off the count (retiring) and drains once the
   * replacement is ready, or counts again if it dies. So the removals that
   * lower the count are:
   * - a live worker still booting that is no replacement (one of the start,
   *   a TTIN's, a respawn's, an old worker whose replacement died): it
   *   serves nobody yet, and exits soon (at once while it imports and builds
   *   the app: serve.ts holds the signals; once it has closed the app while
   *   it loads the models). Never a replacement still booting: `replace`
   *   would then keep its old worker, out of reach of later signals.
   * - else a ready live worker, as long as another worker serves on: one
   *   ready, not told to stop, and not `oldOfFresh` (the old worker of
   *   `fresh`, a replacement just ready: it drains now). Removing the only
   *   one serving would leave nobody serving while the others boot; each of
   *   those ends in a 'ready' that calls removeBeyondTarget, or a death (one
   *   fewer, or its old worker back: see `replace`). Among ready workers, a
   *   stale one goes first (a HUP running would replace it: a wasted
   *   replacement), then `fresh` unless it is a replacement (the first one
   *   ready beyond the target), then the newest; `fresh` last if it is a
   *   replacement (just loaded, and its old worker drains now).
   */
  const pickVictim = (fresh?: Worker, oldOfFresh?: Worker): Worker | undefined => {
    const workers = live()
    const booting = workers.find(w => !ready.has(w) && !replacements.has(w))
    if (booting) return booting
    const serving = [...ready].filter(w => !removed.has(w) && w !== oldOfFresh)
    const rank = (w: Worker) => isStale(w) ? 0 : w !== fresh ? 2 : oldOfFresh ? 3 : 1
    const candidates = workers.filter(w => ready.has(w)).sort((a, b) => rank(a) - rank(b) || b.id - a.id)
    return candidates.find(victim => serving.some(w => w !== victim))
  }

  /**
   * Removes workers while more are live than the target and one can go
   * (pickVictim): after a TTOU that found none to remove (every live worker
   * booting a replacement, or the only one serving beside them), a
   * replacement that died and left its old worker counting again, or a HUP
   * that left stale workers beyond the target unreplaced.
   */
  const removeBeyondTarget = (fresh?: Worker, oldOfFresh?: Worker) => {
    while (!stopping && live().length > target) {
      const victim = pickVictim(fresh, oldOfFresh)
      if (!victim) break
      log.info({ target, worker: victim.id }, 'beyond the target (a TTOU while booting): removing a worker')
      stopWorker(victim)
    }
  }

  /** Replacements a later HUP stopped while they booted (`supersede`): the worker each replaced is that HUP's now. */
  const superseded = new WeakSet<Worker>()

  /**
   * Starts a worker in the place of a dead one, with a back-off that grows
   * while deaths repeat, unless the live workers meet the target (then or
   * once the back-off is over).
   */
  const respawn = (dead: Worker, details: Record<string, unknown>) => {
    if (live().length >= target) return
    const now = Date.now()
    backoffMs = now - lastDeath > 30_000 ? 0 : Math.min(MAX_BACKOFF_MS, Math.max(100, backoffMs * 2))
    lastDeath = now
    log.warn({ worker: dead.id, ...details, restartInMs: backoffMs }, 'worker died: replacing it')
    setTimeout(() => {
      if (stopping) return
      // A TTOU during the back-off lowered the target and removed nobody (a
      // worker short already): this respawn would be one beyond it.
      if (live().length >= target) return log.info({ target, worker: dead.id }, 'a dead worker\'s respawn is no longer needed (a TTOU lowered the target): dropped')
      void spawn()
    }, backoffMs)
  }

  /**
   * Starts a replacement, waits for it to be ready, then drains the old
   * worker. False when the replacement died or failed to load (the old
   * worker serves on); undefined when none was started, or it was superseded.
   */
  const replace = async (old: Worker): Promise<boolean | undefined> => {
    // A worker gone meanwhile (TTOU, a crash: already replaced if need be) is not replaced again.
    if (retiring.has(old) || stopping || old.isDead()) return
    retiring.add(old)
    let fresh: Worker | undefined
    const ok = await spawn(worker => { fresh = worker; replacements.set(worker, old) })
    if (fresh && superseded.has(fresh)) return
    // An old worker that died meanwhile (its replacement stood for it) has nothing left to drain.
    if (ok && !stopping && !old.isDead()) stopWorker(old)
    // The replacement died booting: the old worker keeps serving (a later HUP
    // may try again). It counts again, and may be one beyond the target:
    // one goes now if one can (pickVictim), else at the next 'ready'. If it
    // died too meanwhile, nobody stands for it any more: one is started.
    else if (!ok) {
      retiring.delete(old)
      if (old.isDead() && !stopping) respawn(old, { replacementDied: true })
      removeBeyondTarget(old)
      logAllReady()
    }
    return ok
  }

  /**
   * Workers at --max-requests whose replacement failed: they ask again every
   * --max-requests requests (serve.ts), which on a busy server would boot
   * one failing replacement after another (a bad model file on disk, say).
   * Their asks are ignored until `at`; `ms` doubles with each failure, up to
   * MAX_BACKOFF_MS. `logged`: the first ignored ask of a back-off is logged.
   */
  const retireBackoff = new Map<Worker, { at: number, ms: number, logged: boolean }>()
  const retireAsked = async (worker: Worker) => {
    const backoff = retireBackoff.get(worker)
    const now = Date.now()
    if (backoff && now < backoff.at) {
      if (!backoff.logged) log.info({ worker: worker.id, retryInMs: backoff.at - now }, 'a worker at --max-requests asks again soon after its replacement failed: ignored (back-off)')
      backoff.logged = true
      return
    }
    const ok = await replace(worker)
    if (ok === true) retireBackoff.delete(worker)
    if (ok !== false) return
    const ms = Math.min(MAX_BACKOFF_MS, backoff ? backoff.ms * 2 : 1000)
    retireBackoff.set(worker, { at: Date.now() + ms, ms, logged: false })
  }

  /**
   * A HUP stops the replacements still booting (an earlier HUP's, or
   * --max-requests'): they load what was on disk before this HUP, and
   * would be replaced in turn once ready; meanwhile, up to twice the target
   * would boot at once (memory, CPU). Each old worker they were to replace
   * counts again and keeps serving, stale: this HUP replaces it, one at a
   * time as ever. The replacements that are ready stay (their old workers
   * drain): this HUP replaces them too.
   */
  const supersede = () => {
    for (const [fresh, old] of replacements) {
      // One whose old worker died meanwhile stands for it: it goes on (this HUP replaces it once ready).
      if (removed.has(fresh) || old.isDead()) continue
      log.info({ worker: fresh.id, replacing: old.id }, 'SIGHUP: an earlier replacement still booting is stopped; the worker it was to replace serves until this HUP\'s replacement is ready')
      superseded.add(fresh)
      stopWorker(fresh)
      retiring.delete(old)
    }
  }

  /**
   * A HUP's replacements, one by one: live workers forked before it, until
   * as many live workers as the target were forked after it (its
   * replacements, a TTIN's workers). So a HUP replaces the workers that
   * will remain and no more: one beyond the target (a TTOU that came while
   * the workers it could remove were booting replacements) is left to
   * removeBeyondTarget, which takes stale workers first. A later HUP takes
   * over (its stale workers include these). A worker whose replacement died
   * is not tried again by the same HUP.
   */
  const replaceStale = async (hup: number) => {
    const tried = new Set<Worker>()
    while (!stopping && generation === hup) {
      const workers = live()
      const next = workers.find(w => isStale(w) && !tried.has(w))
      if (!next || workers.filter(w => !isStale(w)).length >= target) break
      tried.add(next)
      await replace(next)
    }
    removeBeyondTarget()
  }

  /** Whether the server stops because a worker failed to boot: the first failure reported stands for the others. */
  let stoppedForBootFailure = false
  /** The cause reported for it (a worker's `failed` message): others that repeat it are not reported again. */
  let bootFailure: string | undefined
  /** Workers that said they failed to load (a replacement's: it exits 3 now), until their exit. */
  const failedBoot = new Set<Worker>()
  /**
   * The lifecycle states of the workers a scrape does not ask (`ready` are
   * asked): those booting (a TTIN's, a respawn, a replacement) cannot answer
   * yet, but are in /metrics' state gauge, 'loading', or 'failed' once they
   * said so; one told to stop while booting (a TTOU, a later HUP, or the
   * server stopping) is on its way out: 'draining' until it exits.
   */
  const unaskedStates = () => {
    const states = { loading: 0, failed: 0, draining: 0 }
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w || w.isDead() || ready.has(w)) continue
      states[failedBoot.has(w) ? 'failed' : removed.has(w) || stopping ? 'draining' : 'loading']++
    }
    return states
  }

  // Any message from a worker says its event loop turns.
  cluster.on('message', (worker: Worker, message: WorkerMessage) => {
    lastHeard.set(worker, Date.now())
    if (message.type === 'ready') {
      listening.add(worker)
      if (removed.has(worker)) {
        log.info({ worker: worker.id, workerPid: worker.process.pid, port: message.port }, 'a worker being removed is listening: not counted as ready')
        return
      }
      ready.add(worker)
      const replaced = replacements.get(worker)
      replacements.delete(worker)
      wasUp = true
      waiters.get(worker)?.(true)
      waiters.delete(worker)
      log.info({ worker: worker.id, workerPid: worker.process.pid, port: message.port }, 'worker ready')
      // A TTOU that found none to remove (every live worker booting a
      // replacement, or the only one serving beside them) lowered the
      // target: a worker goes once another serves. Checked on every 'ready',
      // a replacement's too: with a HUP during the boot, the workers ready
      // next may all be replacements, or workers being replaced (removing
      // those would lower nothing: pickVictim).
      removeBeyondTarget(worker, replaced)
      logAllReady()
    } else if (message.type === 'failed') {
      failedBoot.add(worker)
      // A replacement (HUP, --max-requests) that cannot load what is on disk
      // now: the old worker keeps serving what it loaded, as when a
      // replacement dies while booting (the worker exits 3 itself).
      const old = replacements.get(worker)
      if (old) {
        const oldDied = old.isDead()
        log.error({ worker: worker.id, error: message.error }, `a replacement worker failed to boot: ${oldDied ? 'the worker it replaced died meanwhile: another is started' : 'the old worker keeps serving'}`)
        process.stderr.write(`error: a replacement worker failed to boot (${oldDied ? 'the worker it replaced died meanwhile: another is started' : 'the old one keeps serving'}): ${message.error}\n`)
        return
      }
      // Workers booting together fail together (the same model file): the
      // first failure is the report, the others with the same cause are told
      // apart at info level only, not read again by the operator as failures
      // of their own.
      if (stoppedForBootFailure) {
        if (message.error === bootFailure) return log.info({ worker: worker.id, error: message.error }, 'another worker failed to boot too: the server is stopping already')
        // A cause not reported yet (the first report was a worker's exit, or
        // this one failed otherwise): the operator needs it, so it is reported
        // too; the server is stopping already.
        bootFailure ??= message.error
        log.error({ worker: worker.id, error: message.error }, 'another worker failed to boot: the server is stopping already')
        process.stderr.write(`error: worker failed to boot: ${message.error}\n`)
        return
      }
      stoppedForBootFailure = true
      bootFailure = message.error
      log.fatal({ worker: worker.id, error: message.error }, 'worker failed to boot: stopping the server')
      process.stderr.write(`error: worker failed to boot: ${message.error}\n`)
      // Once the server has been up (a TTIN's worker, a respawn), the other
      // workers serve: they drain, as on TERM, rather than cut their
      // requests. At start-up, none serves yet: they stop at once.
      shutdown(BOOT_FAILURE, wasUp ? 'SIGTERM' : 'SIGKILL')
    } else if (message.type === 'retire') {
      void retireAsked(worker)
    } else if (message.type === 'metrics') {
      // A ready worker whose channel closed (it crashed, its exit not yet
      // seen) is counted as of its last answer, not left out of the sum.
      metrics.gather(ready, unaskedStates()).then(
        text => tell(worker, { type: 'metrics', id: message.id, text }),
        (err: Error) => tell(worker, { type: 'metrics', id: message.id, error: err.message }),
      )
    } else if (message.type === 'metrics-part') {
      metrics.part(worker, message.id, message.metrics, message.error)
    } else if (message.type === 'metrics-final') {
      metrics.final(worker, message.metrics)
    }
  })

  cluster.on('exit', (worker, code, signal) => {
    log.info({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker exited')
    const wasReady = ready.delete(worker)
    lastHeard.delete(worker)
    listening.delete(worker)
    metrics.exited(worker)
    const saidFailed = failedBoot.delete(worker)
    retireBackoff.delete(worker)
    const wasRetiring = retiring.delete(worker)
    removed.delete(worker)
    bornIn.delete(worker)
    const replacedOld = replacements.get(worker)
    const wasReplacement = replacements.delete(worker)
    waiters.get(worker)?.(false)
    waiters.delete(worker)
    // A worker the TERM itself ended (one still booting, before its handlers) did not fail.
    if (stoppedWith === 'SIGTERM' && ((code !== null && code !== 0) || (signal !== null && signal !== 'SIGTERM'))) workerFailed = true
    // A retiring worker was stopped on purpose: also one a TTOU removed
    // while booting, before any was ready, which is no boot failure.
    if (stopping || wasRetiring) return
    if (wasReplacement) {
      // One that said it failed to load was logged then: its exit (3) is that failure's end.
      if (saidFailed) return
      // `replace` starts another if the old worker died meanwhile too.
      const outcome = replacedOld?.isDead() ? 'the worker it replaced died meanwhile: another is started' : 'the old worker keeps serving'
      log.error({ worker: worker.id, code, signal }, `a replacement worker died before it was ready: ${outcome}`)
      return
    }
    if (!wasReady && !wasUp) {
      stoppedForBootFailure = true
      log.fatal({ worker: worker.id, code, signal }, 'worker died before it was ready: stopping the server')
      process.stderr.write(`error: worker ${worker.id} exited (code ${code}, signal ${signal}) before it was ready\n`)
      shutdown(BOOT_FAILURE, 'SIGKILL')
      return
    }
    respawn(worker, { code, signal, wasReady })
  })

  process.on('SIGTERM', () => shutdown(0, 'SIGTERM'))
  process.on('SIGINT', () => shutdown(0, 'SIGINT'))
  process.on('SIGQUIT', () => shutdown(0, 'SIGQUIT'))
  process.on('SIGHUP', () => {
    // Stopping, every worker drains: there is nothing left to replace.
    if (stopping) return log.info('SIGHUP: stopping; ignored')
    supersede()
    log.info({ workers: live().length }, 'SIGHUP: replacing workers one by one')
    void replaceStale(++generation)
  })
  // Node's defaults would open the inspector (USR1) or end the primary at once (USR2): serve.ts.
  for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) process.on(signal, () => log.warn({ signal }, USER_SIGNALS_IGNORED[signal]))
  /** TTIN and TTOU before the first fork (also held ones): the fork forks that many more or fewer. */
  const resizeBeforeFork = (signal: 'SIGTTIN' | 'SIGTTOU') => {
    if (signal === 'SIGTTIN') target++
    else if (target > 1) target--
    log.info({ signal, target }, `${signal} before the workers are forked: starting ${target}`)
  }
  process.on('SIGTTIN', () => {
    // Stopping, a new worker would boot, serve, and hold the exit until the kill timer.
    if (stopping) return log.info('SIGTTIN: stopping; ignored')
    // A worker forked now would be one more than the fork to come starts (it forks `target`).
    if (!forked) return resizeBeforeFork('SIGTTIN')
    target++
    log.info({ target }, 'SIGTTIN: adding a worker')
    void spawn()
  })
  process.on('SIGTTOU', () => {
    if (!forked) return resizeBeforeFork('SIGTTOU')
    // Stopping, every worker drains already: telling one to go changes nothing.
    if (stopping) return log.info('SIGTTOU: stopping; ignored')
    if (target <= 1) return log.info({ target }, 'SIGTTOU: already at one worker; ignored')
    target--
    const workers = live()
    // No more live than the new target: a dead worker's respawn waits out
    // its back-off. Removing a ready worker would leave one fewer serving (or
    // none) until the respawn boots, for the same count in the end; nobody
    // goes, and the respawn is dropped when its timer fires (the 'exit' handler).
    if (workers.length <= target) {
      log.info({ target, workers: workers.length }, 'SIGTTOU: no more workers live than the target (a respawn pending): none removed')
      // At start-up, the respawn was the one awaited.
      return logAllReady()
    }
    // A worker still booting that is no replacement goes at once, also
    // while none is ready (all booting, right after start): waiting for the
    // first one ready and removing that could leave nobody serving until
    // the booting one is ready. Its exit is no boot failure (it is retiring:
    // the 'exit' handler). Else a ready one, never the only one serving
    // (pickVictim).
    const victim = pickVictim()
    // Every live worker booting is a replacement (a HUP during the boot),
    // beside none ready or the only one serving: a worker goes once another
    // serves (the 'ready' message: removeBeyondTarget).
    if (!victim) {
      if (!workers.some(w => ready.has(w))) return log.info({ target }, 'SIGTTOU: no worker ready yet: the first one ready beyond the target will be removed')
      return log.info({ target }, 'SIGTTOU: the only worker serving is kept while the others boot: one goes once another is ready')
    }
    log.info({ target, worker: victim.id }, 'SIGTTOU: removing a worker')
    stopWorker(victim)
    // The workers left may all be ready now: a booting one was awaited.
    logAllReady()
  })

  // The handlers above are in place (in the same tick: no signal falls
  // between them and the hold). What the hold dropped came before any worker
  // was forked: see the header.
  for (const signal of releaseSignals()) {
    if (signal === 'SIGTTIN' || signal === 'SIGTTOU') resizeBeforeFork(signal)
    else if (signal === 'SIGHUP') log.info({ signal }, 'SIGHUP before the workers are forked: nothing to replace (they load the models as they are on disk)')
    else if (signal === 'SIGUSR1' || signal === 'SIGUSR2') log.warn({ signal }, USER_SIGNALS_IGNORED[signal])
  }

  void (async () => {
    // Like gunicorn's arbiter, which binds before it forks: a port in use or
    // a host that cannot be listened on stops the server at once (exit 1, as
    // alone), not once every worker has loaded its models.
    try {
      const port = await tryListen(settings.host, settings.port)
      if (settings.port === 0) boundPort = port
    } catch (err) {
      const error = `cannot listen on ${settings.host}:${settings.port}: ${(err as Error).message}`
      // An operator's error (a port in use), not a bug: no stack trace.
      log.fatal({ error, code: (err as NodeJS.ErrnoException).code }, 'cannot listen')
      process.stderr.write(`error: ${error}\n`)
      process.exit(1)
    }
    log.info({ workers: target, host: settings.host, port: boundPort ?? settings.port }, 'starting workers')
    // 'all workers ready' is logged by logAllReady, once they are.
    forked = true
    watchHeartbeats()
    for (let i = 0; i < target; i++) void spawn()
  })()
}
