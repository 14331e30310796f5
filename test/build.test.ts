// scripts/build.mjs with --out and more entries: what the benchmark does to
// serve its own app (bench/app.ts) compiled, as `npm start` serves app.ts.
// The output goes to a directory of its own (inside the project, where the
// packages left out of the bundle resolve), not to the project's dist/.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { benchModels } from '../bench/models.ts'
import { post, ROOT, startReady } from './fixtures/server.ts'

const build = (...args: string[]) => spawnSync(process.execPath, ['scripts/build.mjs', ...args], { cwd: ROOT, encoding: 'utf8' })

t.test('--out DIR bench/app.ts: the server and the bench app compiled there, served without tsx; nothing of it in dist/', async t => {
  // Inside the project, where the packages left out of the bundle resolve.
  mkdirSync(join(ROOT, '.tap'), { recursive: true })
  const out = mkdtempSync(join(ROOT, '.tap', 'build-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const built = build('--out', out, 'bench/app.ts')
  t.equal(built.status, 0, `built: ${built.stderr}`)
  for (const file of ['server.js', 'app.js', 'bench/app.js', 'framework/inference-worker.js']) t.ok(existsSync(join(out, file)), `${file} written`)
  t.notMatch(readFileSync(join(out, 'bench', 'app.js'), 'utf8'), /from ['"][^'"]*\.ts['"]/, 'the bench app imports no TypeScript')
  // (Not dist/'s timestamps: other test files build dist/ meanwhile.)
  t.notOk(existsSync(join(ROOT, 'dist', 'bench')), 'the extra entry is not written to dist/')

  // Every model the bench app mounts, as the benchmark writes them, but
  // heavy: mlp's bytes in its place (the same input and output; building and
  // loading heavy's 140 MB would load the machine other test files share).
  const models = mkdtempSync(join(tmpdir(), 'onnx-serve-build-'))
  t.teardown(() => rmSync(models, { recursive: true, force: true }))
  const bench = benchModels().filter(m => m.name !== 'heavy')
  for (const m of bench) writeFileSync(join(models, `${m.name}.onnx`), m.bytes)
  writeFileSync(join(models, 'heavy.onnx'), bench.find(m => m.name === 'mlp')!.bytes)
  for (const name of ['scaler.onnx', 'ner', 'pos']) cpSync(join(ROOT, 'models', name), join(models, name), { recursive: true })
  // No tsx anywhere: node runs the compiled files alone.
  const server = await startReady(t, ['--app', join(out, 'bench', 'app.js'), '--models-dir', models], { command: [process.execPath, join(out, 'server.js')] })
  const answer = await post(server.port, '/bench/tiny', { inputs: [[1, 2, 3, 4]] })
  t.equal(answer.status, 200, 'the bench route answers')
  t.same(answer.body.outputs, [[2, 4, 6, 8]], 'with tiny\'s answer (x + [1, 2, 3, 4])')
  server.proc.kill('SIGTERM')
  await server.exited
})

t.test('--out refuses the project, a folder above it, a source folder or none at all: the build deletes the .js files there that it did not write', async t => {
  for (const out of ['.', '..', 'framework', 'node_modules/x']) {
    const refused = build('--out', out)
    t.not(refused.status, 0, `--out ${out} refused`)
    t.match(refused.stderr, /--out .*: not the project, a folder above it, one of its source folders or node_modules/, `--out ${out}: says why`)
  }
  t.match(build('--out').stderr, /--out needs a directory/, '--out with no directory')
  t.ok(existsSync(join(ROOT, 'framework', 'inference-worker.js')), 'the sources\' .js files are still there')
})
