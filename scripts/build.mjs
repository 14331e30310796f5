// Compiles the server to plain JavaScript in dist/ (git-ignored): `npm start`
// runs it first (the prestart script), then starts dist/server.js with no
// loader. `node --import tsx server.ts` still runs the sources, for development
// and the tests.
//
// Why: under `--import tsx`, Node 20 runs tsx's module hooks on a loader thread
// with a V8 isolate of its own, and keeps the compiler loaded: about 40 MB of
// the default server's resident memory (214-219 -> 173-175 MB once ready) and
// 0.4 s of its start-up. scripts/start.sh then runs dist/server.js.
//
// The entries (below) are bundled with the packages they import, and the code
// they share is split into chunks beside them (dist/chunk-*.js), so the
// server, the app it loads and the signal hold share one copy of each module.
// The entries keep their places (dist/server.js, dist/app.js,
// dist/framework/inference-worker.js...), and each module that reads
// import.meta.url gets the URL its file by file output had (ownUrl below): the
// inference thread's script beside pool.js, the project root one level above
// dist/ (framework/settings.ts).
// esbuild is the compiler tsx itself uses, with the same tsconfig.json.
// Plain JavaScript so that it runs without a loader; takes about 0.3 s, and
// only rewrites the files whose output changed (two starts at once are safe).
import { build } from 'esbuild'
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
// `node scripts/build.mjs [--out DIR] [more entries]`: the benchmark builds the
// server with its own app (bench/app.ts) into a directory of its own, so that
// it measures the framework compiled, as `npm start` runs it.
const args = process.argv.slice(2)
const outAt = args.indexOf('--out')
if (outAt >= 0 && (args[outAt + 1] === undefined || args[outAt + 1].startsWith('--'))) throw new Error('--out needs a directory')
const OUT = outAt >= 0 ? resolve(args[outAt + 1]) : join(ROOT, 'dist')
// The build removes the .js files under OUT that it did not write (below): OUT
// must be a directory of the build's own, not one holding the sources or the packages.
const inside = (dir, parent) => !relative(parent, dir).startsWith('..') && !/^[/\\]/.test(relative(parent, dir))
if (inside(ROOT, OUT) || relative(ROOT, OUT).split(/[/\\]/).includes('node_modules') || [...['framework', 'nlp', 'resources', 'scripts', 'test', 'bench', 'models'].map(d => join(ROOT, d))].includes(OUT)) {
  throw new Error(`--out ${OUT}: not the project, a folder above it, one of its source folders or node_modules (the build deletes the .js files there that it did not write)`)
}
// The inference thread's script is started by URL (framework/pool.ts), not
// imported; the hold on the signals is also passed to node by scripts/start.sh
// (--import), whatever server.ts imports.
const ENTRIES = ['server.ts', 'app.ts', 'framework/inference-worker.js', 'framework/hold-signals-at-start.ts',
  ...args.filter((_, i) => outAt < 0 || (i !== outAt && i !== outAt + 1))]

// The packages stay in node_modules when they must: a native addon
// (onnxruntime-node), files read beside the package's own code at run time
// (@fastify/swagger-ui's static assets), and tsx and esbuild, loaded only for
// an app given as TypeScript.
const EXTERNAL = ['onnxruntime-node', '@fastify/swagger-ui', 'tsx', 'tsx/*', 'esbuild']

// Each module of the sources that reads import.meta.url (settings.ts: the
// project root; pool.ts: the inference thread's script; server.ts) gets the URL
// it would have compiled file by file, dist/<its path>.js: every file the
// bundle writes that can hold one (the entries server.js and app.js, the shared
// chunks) is in dist/ itself, so the URL is made relative to its own.
/** The sources (paths from the project root) whose import.meta.url ownUrl rewrote. */
const urlModules = new Set()
const ownUrl = {
  name: 'own-url',
  setup (b) {
    b.onLoad({ filter: /\.[cm]?[jt]s$/ }, args => {
      if (args.path.split('/').includes('node_modules')) return undefined
      const text = readFileSync(args.path, 'utf8')
      if (!text.includes('import.meta.url')) return undefined
      const rel = relative(ROOT, args.path).replace(/\.ts$/, '.js')
      urlModules.add(relative(ROOT, args.path))
      return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify('./' + rel)}, import.meta.url).href`), loader: args.path.endsWith('.ts') ? 'ts' : 'js', resolveDir: dirname(args.path) }
    })
  },
}

// One build of the entries with the packages bundled in (but EXTERNAL), the
// code they share split into chunks beside them: one copy of each module for
// the server, the app it loads and the signal hold. Loading the packages as
// hundreds of files (resolving, stat-ing and parsing each; the CommonJS ones
// scanned for their exports) took 0.54-0.66 s of the server's start, against
// 0.15-0.27 s bundled.
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: ENTRIES,
  outbase: ROOT,
  outdir: OUT,
  bundle: true,
  splitting: true,
  chunkNames: 'chunk-[hash]',
  external: EXTERNAL,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'error',
  write: false,
  metafile: true,
  plugins: [ownUrl],
  // The CommonJS packages require Node's own modules: an ES module has no require.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
})
// A module that reads import.meta.url must be in a file in dist/ itself (see ownUrl).
for (const [out, { inputs }] of Object.entries(result.metafile.outputs)) {
  if (dirname(join(ROOT, out)) === OUT) continue
  const misplaced = Object.keys(inputs).filter(p => urlModules.has(p))
  if (misplaced.length > 0) throw new Error(`${out} holds ${misplaced.join(', ')}, which read import.meta.url: they must be in a file in dist/ itself`)
}

const written = new Set()
let changed = 0
for (const file of result.outputFiles) {
  written.add(file.path)
  let old
  try { old = readFileSync(file.path) } catch {}
  if (old && Buffer.compare(old, file.contents) === 0) continue
  mkdirSync(dirname(file.path), { recursive: true })
  // Written aside and renamed, so a server starting meanwhile never reads half a file.
  const tmp = `${file.path}.${process.pid}.tmp`
  writeFileSync(tmp, file.contents)
  renameSync(tmp, file.path)
  changed++
}
// Output of sources that no longer exist.
const walk = dir => readdirSync(dir, { withFileTypes: true }).flatMap(e => e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)])
for (const path of walk(OUT)) {
  if (path.endsWith('.js') && !written.has(path)) rmSync(path)
}
if (process.env.npm_lifecycle_event !== 'prestart') {
  process.stdout.write(`${relative(ROOT, OUT)}/: ${written.size} modules, ${changed} rewritten\n`)
}
