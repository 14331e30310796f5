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
// The output mirrors the sources file by file (dist/server.js,
// dist/framework/pool.js, ...), so what is found from import.meta.url keeps
// its place: the inference thread's script beside pool.js, the project root
// one level above dist/ (framework/settings.ts). Local imports stay imports,
// `./x.ts` becoming `./x.js`; packages are imported from node_modules as usual.
// esbuild is the compiler tsx itself uses, with the same tsconfig.json.
// Plain JavaScript so that it runs without a loader; takes about 0.1 s, and
// only rewrites the files whose output changed (two starts at once are safe).
import { build } from 'esbuild'
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const OUT = join(ROOT, 'dist')
// The inference thread's script is started by URL (framework/pool.ts), not
// imported; the hold on the signals is also passed to node by scripts/start.sh
// (--import), whatever server.ts imports.
const ENTRIES = ['server.ts', 'app.ts', 'framework/inference-worker.js', 'framework/hold-signals-at-start.ts']

const common = { absWorkingDir: ROOT, bundle: true, packages: 'external', platform: 'node', format: 'esm', target: 'node20', logLevel: 'error' }

// 1. The local modules the entries reach.
const scan = await build({ ...common, entryPoints: ENTRIES, write: false, metafile: true, outdir: OUT })
const sources = Object.keys(scan.metafile.inputs).filter(p => !p.split('/').includes('node_modules'))

// 2. Each compiled on its own: local imports are left to Node, renamed to .js.
const localImports = {
  name: 'local-imports',
  setup (b) {
    b.onResolve({ filter: /^\.\.?\// }, args => {
      if (args.kind === 'entry-point') return undefined
      if (!/\.(ts|js)$/.test(args.path)) throw new Error(`${args.importer}: cannot compile the import of '${args.path}' (only .ts and .js modules)`)
      return { path: args.path.replace(/\.ts$/, '.js'), external: true }
    })
  },
}
const result = await build({ ...common, entryPoints: sources, outbase: ROOT, outdir: OUT, write: false, plugins: [localImports] })

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
