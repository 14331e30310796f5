import t from 'tap'
import { readFileSync } from 'node:fs'
import { helpText, parseSettings, settingsTable, SETTINGS, UsageError, type Settings } from '../../framework/settings.ts'
import { appOptions } from '../../framework/serve.ts'

t.test('defaults', async t => {
  const s = parseSettings([], {})
  if (s === 'help') throw new Error('unexpected help')
  t.equal(s.host, '127.0.0.1')
  t.equal(s.port, 8000)
  t.equal(s.workers, 1)
  t.equal(s.timeout, 30)
  t.match(s.modelsDir, /models$/)
  t.ok(s.threads >= 1)
})

t.test('precedence: defaults < environment < flags', async t => {
  const env = { PORT: '9000', HOST: '0.0.0.0', WEB_CONCURRENCY: '3', REQUEST_TIMEOUT: '2.5', MODELS_DIR: '/tmp/m' }
  const fromEnv = parseSettings([], env)
  if (fromEnv === 'help') throw new Error('unexpected help')
  t.equal(fromEnv.port, 9000)
  t.equal(fromEnv.host, '0.0.0.0')
  t.equal(fromEnv.workers, 3)
  t.equal(fromEnv.timeout, 2.5)
  t.equal(fromEnv.modelsDir, '/tmp/m')
  const fromFlags = parseSettings(['--port', '9100', '--workers=2', '--graceful-timeout', '4'], env)
  if (fromFlags === 'help') throw new Error('unexpected help')
  t.equal(fromFlags.port, 9100)
  t.equal(fromFlags.workers, 2)
  t.equal(fromFlags.gracefulTimeout, 4)
  t.equal(fromFlags.host, '0.0.0.0', 'environment still applies where no flag is given')
  t.equal(parseSettings(['--port', '1'], { PORT: '' }) !== 'help' && (parseSettings(['--port', '1'], { PORT: '' }) as any).port, 1)
  t.equal((parseSettings(['--max-queue-items', '0'], {}) as any).maxQueueItems, 0, 'a queue of 0: nothing waits')
  // The environment's value for a setting a flag gives is not read: it cannot stop the server.
  const over = parseSettings(['--port', '9000', '--workers=2'], { PORT: 'abc', WEB_CONCURRENCY: '0', HOST: '0.0.0.0' })
  if (over === 'help') throw new Error('unexpected help')
  t.equal(over.port, 9000, 'an invalid PORT under --port')
  t.equal(over.workers, 2, 'an invalid WEB_CONCURRENCY under --workers')
  t.equal(over.host, '0.0.0.0')
  t.throws(() => parseSettings(['--workers', '2'], { PORT: 'abc' }), { constructor: UsageError, message: /port \(environment variable PORT\)/ }, 'one no flag overrides is still checked')
})

t.test('an IPv6 host may be written in brackets, as in a URL: listen() gets it bare', async t => {
  const host = (raw: string) => (parseSettings(['--host', raw], {}) as Exclude<ReturnType<typeof parseSettings>, 'help'>).host
  t.equal(host('[::1]'), '::1')
  t.equal(host('[::]'), '::')
  t.equal(host('::1'), '::1')
  t.equal(host('[::ffff:127.0.0.1]'), '::ffff:127.0.0.1')
  t.equal(host('localhost'), 'localhost')
  t.throws(() => parseSettings(['--host', '[localhost]'], {}), { constructor: UsageError, message: /host \(--host\): expected a host name/ })
})

t.test('invalid values name the setting and the source', async t => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--port', 'abc'], {}, /invalid value for port \(--port\): expected an integer, got 'abc'/],
    [['--port', '70000'], {}, /port \(--port\): expected an integer from 0 to 65535, got 70000/],
    [[], { WEB_CONCURRENCY: '0' }, /workers \(environment variable WEB_CONCURRENCY\)/],
    [['--timeout', '-1'], {}, /timeout \(--timeout\): expected a number of seconds/],
    [['--load-timeout', '0'], {}, /loadTimeout \(--load-timeout\): expected from 1 to 2000000 seconds, got 0/],
    // Longer than Node's longest timer (24.8 days), which would fire after 1 ms.
    [['--timeout', '3000000'], {}, /timeout \(--timeout\): expected from 0 to 2000000 seconds, got 3000000/],
    [[], { GRACEFUL_TIMEOUT: '1' + '0'.repeat(400) }, /gracefulTimeout \(environment variable GRACEFUL_TIMEOUT\): expected from 0 to 2000000 seconds, got Infinity/],
    [['--log-level', 'loud'], {}, /logLevel \(--log-level\): expected one of fatal, error/],
    [['--host', 'a b'], {}, /host \(--host\): expected a host name/],
    [['--models-dir', ' '], {}, /modelsDir \(--models-dir\): expected a non-empty value/],
    [['--bogus', '1'], {}, /unknown option '--bogus'/],
    [['--port'], {}, /option --port needs a value/],
    [['--max-queue-items', '-1'], {}, /maxQueueItems \(--max-queue-items\): expected an integer from 0/],
  ]
  for (const [argv, env, message] of cases) {
    t.throws(() => parseSettings(argv, env), { constructor: UsageError, message }, argv.join(' ') || JSON.stringify(env))
  }
})

t.test('--help and the settings table come from the one table', async t => {
  t.equal(parseSettings(['--help'], {}), 'help')
  t.equal(parseSettings(['-h'], {}), 'help')
  const help = helpText()
  // It said "the ONNX models mounted in app.ts", whatever --app named.
  t.match(help, /^Serves the app that --app names \(app\.ts by default\) over HTTP\.$/m)
  // "TTIN adds a worker; TTOU removes one (with one process: ignored)" read as if TTIN were not ignored alone.
  t.match(help, 'TTIN adds a worker and TTOU removes one\n(with one process, both are ignored)')
  t.match(help, /not to npm's: npm relays only INT and TERM/)
  const table = settingsTable()
  for (const s of Object.values(SETTINGS)) {
    t.match(help, s.flag)
    t.match(help, s.env)
    t.match(table, `\`${s.flag}\``)
  }
})

t.test("README's settings table is settings.ts's, word for word", async t => {
  // The two are written by hand in two places; a help text changed in one went
  // stale in the other. Regenerate the README's with settingsTable().
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  t.ok(readme.includes(settingsTable() + '\n'), 'README.md holds settingsTable() as it is')
})

t.test('--help sets every option apart from its help in one column', async t => {
  // --stop-on-model-failure <value> is 31 characters: it ran into its text ("<value>A model...").
  const lines = helpText().split('\n')
  const options = lines.filter(l => /^  (--|-h,)/.test(l))
  t.equal(options.length, Object.keys(SETTINGS).length + 1)
  const column = (line: string) => /^  \S.*?\S  +(?=\S)/.exec(line)?.[0].length
  const first = column(options[0])
  t.ok(first)
  for (const line of options) t.equal(column(line), first, line)
  for (const line of lines.filter(l => /^ +env /.test(l))) t.equal(line.indexOf('env'), first, line)
})

t.test('a positive timeout under half a millisecond is 1 ms, not 0 (which turns deadlines off)', async t => {
  const options = (args: string[]) => appOptions(parseSettings(args, {}) as Settings, false)
  t.equal(options(['--timeout', '0.0004']).requestTimeoutMs, 1)
  t.equal(options(['--keep-alive', '0.0001']).keepAliveTimeoutMs, 1)
  t.equal(options(['--send-timeout', '0.0001']).sendTimeoutMs, 1)
  t.equal(options([]).sendTimeoutMs, 30_000, 'the send timeout: 30 s unless set')
  t.equal(options(['--send-timeout', '0']).sendTimeoutMs, 0, 'no limit')
  t.equal(options(['--timeout', '0']).requestTimeoutMs, 0, '0 still disables')
  t.equal(options(['--timeout', '2.5']).requestTimeoutMs, 2500)
})

t.test('--body-timeout: the body read has a bound of its own, 30 s unless set, never none', async t => {
  const options = (args: string[], env: NodeJS.ProcessEnv = {}) => appOptions(parseSettings(args, env) as Settings, false)
  t.equal(options([]).bodyTimeoutMs, 30_000)
  t.equal(options(['--timeout', '0']).bodyTimeoutMs, 30_000, 'a disabled deadline leaves the body timeout in place')
  t.equal(options(['--body-timeout', '2.5']).bodyTimeoutMs, 2500)
  t.equal(options([], { BODY_TIMEOUT: '120' }).bodyTimeoutMs, 120_000)
  t.throws(() => parseSettings(['--body-timeout', '0'], {}), new UsageError('invalid value for bodyTimeout (--body-timeout): expected from 1 to 2000000 seconds, got 0'))
})
