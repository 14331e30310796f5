// Process concerns, the way gunicorn owns them for a falcon app: settings,
// host and port, workers, timeouts and signals. The app itself (app.ts) never
// reads the environment and never listens.
//
//   npm start                          # 127.0.0.1:8000, one process
//   PORT=9000 npm start -- --workers 2 # cluster of two workers
//   npm start -- --help                # every setting
import cluster from 'node:cluster'
import { existsSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { helpText, parseSettings, UsageError } from './framework/settings.ts'
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
  if (settings.workers > 1 && cluster.isPrimary) {
    runArbiter(settings)
  } else {
    // While the app is imported and built (a second or more), before serve()
    // handles signals, HUP and USR2 would kill the process, TTIN or TTOU stop
    // it, and USR1 open the inspector: their default actions. A HUP then has
    // nothing to reload (the models are loaded as they are on disk), and TTIN
    // and TTOU mean nothing alone.
    const booting = () => {}
    for (const signal of BOOT_SIGNALS) process.on(signal, booting)
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
    await serve(buildApp, settings)
    for (const signal of BOOT_SIGNALS) process.off(signal, booting)
  }
}

const BOOT_SIGNALS = ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2'] as const
/** The codes of an import whose module is missing or is not a module Node can load. */
const APP_NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'ERR_UNKNOWN_FILE_EXTENSION', 'ERR_UNSUPPORTED_DIR_IMPORT'])

void main()
