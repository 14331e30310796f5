// The committed models: their config, ONNX scores equal to the TypeScript
// scorer's, and a few known sentences. Needs only models/, not ../shared/data.
import t from 'tap'
import { readFileSync } from 'node:fs'
import onnxProto from 'onnx-proto'
import { readConllu, readIob } from '../../nlp/corpus.ts'
import { evaluateNer, evaluatePos } from '../../nlp/evaluation.ts'
import { FEATURE_TEMPLATE_VERSION, FEATURES_PER_TOKEN } from '../../nlp/features.ts'
import { fromFloat16 } from '../../nlp/float16.ts'
import { loadScorer } from '../../nlp/ort.ts'
import { emissionScores } from '../../nlp/perceptron.ts'
import { entitiesFromBio, prepareBatch, tagText, type TaggerConfig } from '../../nlp/tagger.ts'
import { tokenize } from '../../nlp/tokenize.ts'

const root = new URL('../../models/', import.meta.url)
const fixture = (name: string): string => readFileSync(new URL(`../fixtures/nlp/${name}`, import.meta.url), 'utf8')

function load (task: string): { config: TaggerConfig, path: string, weights: Float32Array } {
  const config = JSON.parse(readFileSync(new URL(`${task}/config.json`, root), 'utf8')) as TaggerConfig
  const path = new URL(`${task}/model.onnx`, root).pathname
  const model = onnxProto.onnx.ModelProto.decode(readFileSync(path))
  const init = model.graph?.initializer?.find(i => i.name === 'weights')
  const raw = init?.rawData as Uint8Array
  // The table is stored in float16 (nlp/export.ts).
  if (init?.dataType !== onnxProto.onnx.TensorProto.DataType.FLOAT16) throw new Error(`${task}: weight table is not float16`)
  const weights = fromFloat16(new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)))
  return { config, path, weights }
}

const SAMPLE = [
  'Barack Obama visited Paris with Microsoft engineers.',
  "I don't think Apple's CEO Tim Cook lives in New York City.",
  'the quick brown fox 🦊 jumps over http://lazy.dog',
  '',
]

for (const task of ['pos', 'ner']) {
  t.test(`${task}: config and ONNX scores match the TypeScript scorer`, async t => {
    const { config, path, weights } = load(task)
    t.equal(config.task, task)
    t.match(config.licence, /^CC BY-SA 4\.0/, 'config.json, beside the model, states its licence')
    t.equal(config.featureTemplate, FEATURE_TEMPLATE_VERSION)
    t.equal(config.featuresPerToken, FEATURES_PER_TOKEN)
    const L = config.labels.length
    t.equal(L, task === 'pos' ? 17 : 7)
    t.equal(weights.length, config.buckets * L)
    t.ok(weights.subarray(0, L).every(x => x === 0), 'padding row is zero')
    t.equal(config.transitions.length, L)
    t.ok(config.transitions.every(r => r.length === L))
    t.equal(config.start.length, L)
    t.equal(config.end.length, L)
    t.ok(typeof config.accuracy === 'object')

    const run = await loadScorer(path, config.input, config.output)
    const batch = SAMPLE.map(tokenize)
    const features = prepareBatch(batch, config)
    const { data, dims } = await run(features)
    const [B, T, F] = features.dims
    t.same(Array.from(dims), [B, T, L])
    let maxDiff = 0
    for (let b = 0; b < B; b++) {
      const ids = Int32Array.from(features.data.subarray(b * T * F, (b + 1) * T * F), Number)
      const expected = emissionScores(ids, F, weights, L)
      for (let k = 0; k < expected.length; k++) maxDiff = Math.max(maxDiff, Math.abs(expected[k] - data[b * T * L + k]))
    }
    t.ok(maxDiff < 1e-3, `max |ONNX - TypeScript| = ${maxDiff} (padded positions included)`)
  })
}

t.test('known sentences', async t => {
  const ner = load('ner')
  const runNer = await loadScorer(ner.path)
  const text = 'Barack Obama visited Paris with Microsoft engineers.'
  const tagged = await tagText(text, ner.config, runNer)
  t.same(entitiesFromBio(tagged, tagged.map(x => x.tag), text), [
    { text: 'Barack Obama', label: 'PER', start: 0, end: 12 },
    { text: 'Paris', label: 'LOC', start: 21, end: 26 },
    { text: 'Microsoft', label: 'ORG', start: 32, end: 41 },
  ])
  const pos = load('pos')
  const runPos = await loadScorer(pos.path)
  const tags = (await tagText("I don't like green eggs.", pos.config, runPos)).map(x => `${x.text}/${x.tag}`)
  t.same(tags, ['I/PRON', 'do/AUX', "n't/PART", 'like/VERB', 'green/ADJ', 'eggs/NOUN', './PUNCT'])
})

t.test('evaluation through ONNX on the fixture slices', async t => {
  const pos = load('pos')
  const acc = await evaluatePos(readConllu(fixture('ewt-train-slice.conllu')), pos.config, await loadScorer(pos.path))
  t.ok(acc > 0.95, `POS accuracy on a training slice ${acc}`)
  const ner = load('ner')
  const { overall } = await evaluateNer(readIob(fixture('uner-dev-slice.iob2'), 1, 2), ner.config, await loadScorer(ner.path))
  t.ok(overall.f1 > 0.5, `NER F1 on a UNER dev slice ${overall.f1}`)
})

t.test('the README and the model cards quote the accuracy in config.json (what GET /pos and GET /ner answer)', async t => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8').replace(/\s+/g, ' ')
  const card = (task: string) => readFileSync(new URL(`${task}/README.md`, root), 'utf8')
  const pct = (x: unknown) => (Number(x) * 100).toFixed(2)
  const pos = load('pos').config.accuracy!
  t.match(readme, `POS ${pct(pos.test)} % UPOS accuracy`)
  t.match(card('pos'), `**${pct(pos.test)} %** UPOS token accuracy`)
  t.match(card('pos'), `dev ${pct(pos.dev)} %`)
  const ner = load('ner').config.accuracy!
  t.match(readme, `NER P ${pct(ner.precision)} / R ${pct(ner.recall)} / F1 ${pct(ner.f1)}`)
  t.match(card('ner'), `**P ${pct(ner.precision)} %, R ${pct(ner.recall)} %, F1 ${pct(ner.f1)} %**`)
  t.match(card('ner'), `Dev (held-out UNER documents) F1 ${pct(ner.devF1)}`)
})
