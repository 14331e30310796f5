// The hold on the signals the server handles, from the process's first
// moments until serve() or the arbiter (runArbiter) handles them: Node's
// default actions would end, stop or inspect the process meanwhile.
//
// Kept light (Node's built-ins and settings.ts, itself built-ins only; no
// pino): hold-signals-at-start.ts installs it before pino, fastify or ONNX
// Runtime are even loaded, which takes the compiled server about 0.1 s past
// Node's own boot (more under tsx; scripts/start.sh has the figures). `npm
// start` passes that module to node with --import (scripts/start.sh), which
// runs it before server.js's module graph is loaded, and server.ts imports it
// first. Importing this module installs nothing: serve.ts and arbiter.ts
// import it, and so do tests that import them.
import cluster from 'node:cluster'
import { writeSync } from 'node:fs'
import { parseSettings } from './settings.ts'

/** The signals serve() and the arbiter handle, held from start-up until they do. */
export const HELD_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2'] as const

/** Ends the hold; returns the signals it dropped, in order (the arbiter applies TTIN and TTOU). */
export type ReleaseSignals = () => NodeJS.Signals[]

/** pino's numbers for its levels: the hold writes its line itself, in pino's shape. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

interface Hold { logLevel?: string, release: ReleaseSignals }
/**
 * The hold of this process, if one is in place: there is only ever one. Kept
 * on globalThis, not in this module: run from the sources with the compiled
 * module passed by --import, say, this file is two modules, and a second hold
 * nobody released would stop a serving process at its first TERM.
 */
const HOLD = Symbol.for('onnx-serve.signal-hold')
const holder = globalThis as { [HOLD]?: Hold }

/**
 * Holds the signals serve() and the arbiter handle, from start-up until they
 * handle them; returns the release, for them to call once their own handlers
 * are in place (in the same tick: no signal falls between). Held, TERM, INT
 * and QUIT end the process at once, exit 0, with the line 'stopped while
 * starting: nothing served yet': nothing is served or loaded yet, so there is
 * nothing to drain, and waiting for the imports and the build could outlast a
 * cluster primary's kill timer (2 s after an INT). The others are dropped and
 * returned by the release: a HUP has nothing to reload yet (the models load as
 * they are on disk), TTIN and TTOU mean nothing alone (the arbiter applies
 * them to its number of workers), USR1 and USR2 are ignored anyway.
 *
 * A second call (server.ts, once it knows the log level; serve() without one)
 * keeps the hold in place and returns the same release. Without a log level,
 * the stop's line is logged at the level the settings give (or 'info' when
 * they are invalid: the process would exit 2 on them anyway).
 */
export function holdSignals (logLevel?: string): ReleaseSignals {
  const current = holder[HOLD]
  if (current) {
    if (logLevel !== undefined) current.logLevel = logLevel
    return current.release
  }
  const dropped: NodeJS.Signals[] = []
  const state: Hold = { logLevel, release: () => dropped }
  const hold = (signal: NodeJS.Signals) => {
    if (signal !== 'SIGTERM' && signal !== 'SIGINT' && signal !== 'SIGQUIT') return void dropped.push(signal)
    const level = state.logLevel ?? levelFromSettings()
    if (LEVELS.info >= (LEVELS[level] ?? LEVELS.info)) {
      // What pino would write for the app's logger (serve.ts's logBase), synchronously: the process exits next.
      const line = { level: LEVELS.info, time: Date.now(), pid: process.pid, ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}), signal, msg: 'stopped while starting: nothing served yet' }
      try { writeSync(1, JSON.stringify(line) + '\n') } catch {}
    }
    process.exit(0)
  }
  state.release = () => {
    for (const signal of HELD_SIGNALS) process.off(signal, hold)
    if (holder[HOLD] === state) delete holder[HOLD]
    return dropped.splice(0)
  }
  holder[HOLD] = state
  for (const signal of HELD_SIGNALS) process.on(signal, hold)
  return state.release
}

function levelFromSettings (): string {
  try {
    const settings = parseSettings(process.argv.slice(2), process.env)
    return settings === 'help' ? 'info' : settings.logLevel
  } catch {
    return 'info'
  }
}
