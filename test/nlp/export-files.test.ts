// npm run train writes model.onnx and config.json as a pair (writeTaggerFiles):
// an evaluation that fails or is interrupted between the two leaves the
// previous pair whole, where train once left a new model.onnx beside the old
// config.json, which the server then loaded.
import t from 'tap'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeTaggerFiles } from '../../nlp/export.ts'

/** A model folder holding the old pair. */
function oldPair (): string {
  const dir = mkdtempSync(join(tmpdir(), 'tagger-files-'))
  writeFileSync(join(dir, 'model.onnx'), 'old model')
  writeFileSync(join(dir, 'config.json'), 'old config')
  return dir
}
const read = (dir: string, name: string) => readFileSync(join(dir, name), 'utf8')
const NEW_MODEL = new TextEncoder().encode('new model')

t.test('both files are replaced, the config measured on the new model', async t => {
  const dir = oldPair()
  await writeTaggerFiles(dir, NEW_MODEL, async path => {
    t.equal(readFileSync(path, 'utf8'), 'new model', 'the evaluation reads the new model')
    t.equal(read(dir, 'model.onnx'), 'old model', 'not yet in place while it is evaluated')
    return 'new config'
  })
  t.equal(read(dir, 'model.onnx'), 'new model')
  t.equal(read(dir, 'config.json'), 'new config')
  t.same(readdirSync(dir).sort(), ['config.json', 'model.onnx'], 'no temporary file left')
})

t.test('an evaluation that fails leaves the old pair whole', async t => {
  const dir = oldPair()
  await t.rejects(writeTaggerFiles(dir, NEW_MODEL, async () => { throw new Error('interrupted') }), /interrupted/)
  t.equal(read(dir, 'model.onnx'), 'old model')
  t.equal(read(dir, 'config.json'), 'old config')
  t.same(readdirSync(dir).sort(), ['config.json', 'model.onnx'], 'no temporary file left')
})

t.test('a config.json that cannot be written leaves the old model.onnx', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'tagger-files-'))
  writeFileSync(join(dir, 'model.onnx'), 'old model')
  mkdirSync(join(dir, 'config.json')) // a directory in its place: the rename fails
  await t.rejects(writeTaggerFiles(dir, NEW_MODEL, async () => 'new config'))
  t.equal(read(dir, 'model.onnx'), 'old model')
  t.same(readdirSync(dir).sort(), ['config.json', 'model.onnx'], 'no temporary file left')
})
