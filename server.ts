// Process concerns, the way gunicorn owns them for a falcon app: settings,
// host and port, workers, timeouts and signals. The app itself (app.ts) never
// reads the environment and never listens.
//
//   npm start                          # 127.0.0.1:8000, one process
//   PORT=9000 npm start -- --workers 2 # cluster of two workers
//   npm start -- --help                # every setting
//
// First, before the modules below are evaluated: the hold on the signals
// (framework/signal-hold.ts). `npm start` has it in place even earlier, before
// they are loaded (scripts/start.sh passes it to node with --import).
import './framework/hold-signals-at-start.ts'
import cluster from 'node:cluster'
import { existsSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { helpText, parseSettings, UsageError } from './framework/settings.ts'
import { holdSignals } from './framework/signal-hold.ts'
import { serve } from './framework/serve.ts'
import { runArbiter } from './framework/arbiter.ts'

async function main () {
  let settings
  try {
    settings = parseSettings(process.argv.slice(2), process.env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`error: ${err.message}\n`)
    process.exit(2)
  }
  if (settings === 'help') {
    process.stdout.write(helpText() + '\n')
    return
  }
  // Held since the start (hold-signals-at-start.ts), until the arbiter or
  // serve() handles them: their default actions would end, stop or inspect
  // the process. Now the hold logs a stop at the level set.
  const releaseSignals = holdSignals(settings.logLevel)
  if (settings.workers > 1 && cluster.isPrimary) {
    runArbiter(settings, releaseSignals)
  } else {
    // Like gunicorn's `module:app`, the app is loaded after the fork, in the worker.
    // `npm start` runs this file compiled (dist/, no loader): an app given as
    // TypeScript then needs tsx's loader, registered for it alone.
    if (/\.[cm]?ts$/.test(settings.app) && !import.meta.url.endsWith('.ts')) {
      const { register } = await import('tsx/esm/api')
      register()
    }
    let buildApp
    try {
      ({ buildApp } = await import(pathToFileURL(settings.app).href))
    } catch (err) {
      // A module that is not there or not one is a bad --app: one line, as for
      // any invalid setting. An app that throws while it loads keeps its
      // stack, and so does one whose own import is missing (the app is there).
      const code = (err as NodeJS.ErrnoException).code ?? ''
      if (!APP_NOT_FOUND.has(code) || (code === 'ERR_MODULE_NOT_FOUND' && existsSync(settings.app))) throw err
      process.stderr.write(`error: cannot load the app (--app ${settings.app}): ${(err as Error).message}\n`)
      process.exit(2)
    }
    if (typeof buildApp !== 'function') {
      process.stderr.write(`error: ${settings.app} does not export buildApp(options)\n`)
      process.exit(2)
    }
    await serve(buildApp, settings, releaseSignals)
  }
}

/** The codes of an import whose module is missing or is not a module Node can load. */
const APP_NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'ERR_UNKNOWN_FILE_EXTENSION', 'ERR_UNSUPPORTED_DIR_IMPORT'])

void main()
