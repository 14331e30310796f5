// What the framework's types refuse, checked by compiling the snippets in
// test/fixtures/types with the TypeScript compiler API (see their README):
// a check that only the editor shows would not notice when a change to the
// types lets a mistake through again.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const dir = join(root, 'test', 'fixtures', 'types')
const files = readdirSync(dir).filter(f => f.endsWith('.ts')).sort()

// The project's own options, so the snippets are checked as its code is.
const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, {
  ...ts.sys, onUnRecoverableConfigFileDiagnostic: d => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')) },
})
if (!config) throw new Error('cannot read tsconfig.json')
// One program for every snippet: fastify's and TypeBox's types load once.
const program = ts.createProgram(files.map(f => join(dir, f)), config.options)

/** The errors in one snippet, by line (1-based), with their full message chains. */
function errorsOf (file: string): Map<number, string[]> {
  const source = program.getSourceFile(join(dir, file))
  if (!source) throw new Error(`${file} is not in the program`)
  const found = new Map<number, string[]>()
  for (const d of [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]) {
    const line = d.start === undefined ? 0 : source.getLineAndCharacterOfPosition(d.start).line + 1
    found.set(line, [...(found.get(line) ?? []), ts.flattenDiagnosticMessageText(d.messageText, '\n')])
  }
  return found
}

t.ok(files.some(f => f.endsWith('-good.ts')) && files.some(f => f.endsWith('-bad.ts')), 'there are snippets to check')

for (const file of files.filter(f => f.endsWith('-good.ts'))) {
  t.test(`${file} compiles`, async t => {
    const errors = [...errorsOf(file)].map(([line, messages]) => `${file}:${line}: ${messages.join('\n')}`)
    t.same(errors, [])
  })
}

for (const file of files.filter(f => f.endsWith('-bad.ts'))) {
  t.test(`${file}: every marked line has its error, and no other line has one`, async t => {
    const errors = errorsOf(file)
    const lines = readFileSync(join(dir, file), 'utf8').split('\n')
    const expected = new Map<number, string>()
    lines.forEach((text, i) => {
      const m = /\/\/ expect-error: (.+)$/.exec(text)
      if (m) expected.set(i + 2, m[1].trim())   // the next line, 1-based
    })
    t.ok(expected.size > 0, 'the snippet marks errors')
    for (const [line, text] of expected) {
      const messages = errors.get(line) ?? []
      t.ok(messages.some(m => m.includes(text)), `${file}:${line} has an error with "${text}"`, { found: messages })
    }
    const unexpected = [...errors].filter(([line]) => !expected.has(line)).map(([line, messages]) => `${file}:${line}: ${messages.join('\n')}`)
    t.same(unexpected, [], 'no error on a line not marked')
  })
}
