import t from 'tap'
import { readFileSync } from 'node:fs'
import onnxProto from 'onnx-proto'
import { readConllu, readIob } from '../../nlp/corpus.ts'
import { buildLexicon } from '../../nlp/features.ts'
import { fromFloat16 } from '../../nlp/float16.ts'
import { emissionScores, predict, shuffledOrder, train } from '../../nlp/perceptron.ts'
import { averageModels, bioConstraints, configJson, FORBIDDEN, NER_LABELS, toSequences, trainTagger, UPOS_LABELS, featureSpec } from '../../nlp/training.ts'
import { seededRandom } from '../../framework/onnx-builder.ts'

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/nlp/${name}`, import.meta.url), 'utf8')
const ewt = readConllu(fixture('ewt-train-slice.conllu'))

t.test('retraining gives byte-identical models', async t => {
  const lexicon = buildLexicon(ewt, 3)
  const opts = { name: 'pos-test', task: 'pos' as const, labels: UPOS_LABELS, train: ewt.slice(0, 200), buckets: 1 << 12, lexicon, epochs: 3, seed: 7 }
  const a = trainTagger(opts)
  const b = trainTagger(opts)
  t.ok(Buffer.from(a.onnx).equals(Buffer.from(b.onnx)), 'same ONNX bytes')
  t.equal(configJson(a.config), configJson(b.config), 'same config.json')
  const c = trainTagger({ ...opts, seed: 8 })
  t.notOk(Buffer.from(a.onnx).equals(Buffer.from(c.onnx)), 'another seed gives another model (the test can fail)')
  // The model learned something: held-out sentences of the slice are mostly right.
  const held = ewt.slice(200)
  const seqs = toSequences(held, UPOS_LABELS, featureSpec(1 << 12, lexicon))
  let ok = 0; let n = 0
  seqs.forEach(s => predict(a.model, s.features).forEach((p, i) => { n++; if (p === s.labels[i]) ok++ }))
  t.ok(ok / n > 0.6, `held-out accuracy ${(100 * ok / n).toFixed(1)}% > 60%`)
  t.equal(a.config.featureTemplate, 'v3')
  t.match(a.config.licence, /^CC BY-SA 4\.0 .*UD English EWT/, 'a retrained config.json keeps the licence')
  t.same(a.config.labels, UPOS_LABELS)
  t.equal(a.config.transitions.length, UPOS_LABELS.length)
  // Padding row of the exported table is zero.
  const model = onnxProto.onnx.ModelProto.decode(a.onnx)
  const w = model.graph?.initializer?.find(i => i.name === 'weights')
  const raw = w?.rawData as Uint8Array
  t.equal(w?.dataType, onnxProto.onnx.TensorProto.DataType.FLOAT16, 'the table is stored in float16')
  const table = fromFloat16(new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)))
  t.same(Array.from(w?.dims ?? [], Number), [1 << 12, UPOS_LABELS.length])
  t.ok(table.subarray(0, UPOS_LABELS.length).every(x => x === 0), 'row 0 is zero')
})

t.test('NER training uses BIO constraints and jackknifed lexicons', async t => {
  const uner = readIob(fixture('uner-dev-slice.iob2'), 1, 2)
  const wnut = readIob(fixture('wnut17-slice.conll'), 0, 1)
  const opts = { name: 'ner-test', task: 'ner' as const, labels: NER_LABELS, train: [...uner, ...wnut], buckets: 1 << 12, epochs: 2, seed: 1 }
  let epochs = 0
  const a = trainTagger({ ...opts, onEpoch: () => { epochs++ } })
  t.equal(epochs, 2)
  t.equal(configJson(a.config), configJson(trainTagger(opts).config))
  const O = NER_LABELS.indexOf('O')
  const IPER = NER_LABELS.indexOf('I-PER')
  t.ok(a.config.transitions[O][IPER] < FORBIDDEN / 2, 'O -> I-PER forbidden')
  t.ok(a.config.start[IPER] < FORBIDDEN / 2, 'starting with I-PER forbidden')
  t.ok(Object.keys(a.config.gazetteer as object).length > 10, 'gazetteer in the config')
  t.throws(() => toSequences([{ words: ['x'], tags: ['B-MISC'] }], NER_LABELS, featureSpec(16)), /unknown label B-MISC/)
})

t.test('several runs are averaged into one model', async t => {
  const opts = { name: 'pos-test', task: 'pos' as const, labels: UPOS_LABELS, train: ewt.slice(0, 40), buckets: 1 << 10, epochs: 1, seed: 3 }
  const runs: number[] = []
  const avg = trainTagger({ ...opts, runs: 2, onEpoch: (_e, _m, _a, run) => runs.push(run) })
  t.same(runs, [0, 1])
  const a = trainTagger(opts).model
  const b = trainTagger({ ...opts, seed: 4 }).model
  const mean = averageModels([a, b])
  t.same(avg.model, mean)
  t.equal(mean.weights[100], Math.fround((a.weights[100] + b.weights[100]) / 2))
  t.equal(mean.start[0], (a.start[0] + b.start[0]) / 2)
  t.match(avg.config.training, { runs: 2, algorithm: /mean of 2 runs \(seeds 3\.\.4\)/ })
  t.equal(averageModels([a]), a)
})

t.test('BIO constraints', async t => {
  const c = bioConstraints(['O', 'B-X', 'I-X', 'B-Y', 'I-Y'])
  const L = 5
  const forbidden = (i: number, j: number): boolean => c.transitions[i * L + j] === FORBIDDEN
  t.ok(forbidden(0, 2) && forbidden(3, 2) && forbidden(4, 2) && forbidden(1, 4))
  t.notOk(forbidden(1, 2) || forbidden(2, 2) || forbidden(0, 1) || forbidden(2, 0))
  t.same(Array.from(c.start), [0, 0, FORBIDDEN, 0, FORBIDDEN])
})

t.test('perceptron pieces', async t => {
  t.same(Array.from(shuffledOrder(5, seededRandom(1))).sort(), [0, 1, 2, 3, 4], 'a permutation')
  t.same(shuffledOrder(5, seededRandom(1)), shuffledOrder(5, seededRandom(1)), 'seeded')
  // Feature 0 is padding and never scores.
  const w = Float32Array.from([100, 100, 1, 2, 3, 4])
  t.same(Array.from(emissionScores(Int32Array.from([0, 1, 2, 0]), 2, w, 2)), [1, 2, 3, 4])
  // Two features, two labels: feature 1 means label 0, feature 2 label 1.
  const data = [
    { features: Int32Array.from([1, 2, 1]), labels: Int32Array.from([0, 1, 0]) },
    { features: Int32Array.from([0, 2]), labels: Int32Array.from([1, 1]) },
    { features: Int32Array.from([]), labels: Int32Array.from([]) },
  ]
  const model = train(data, { labels: 2, buckets: 3, featuresPerToken: 1, epochs: 3, seed: 1 })
  t.same(Array.from(predict(model, Int32Array.from([2, 1, 2, 1]))), [1, 0, 1, 0])
  const noData = train([], { labels: 2, buckets: 3, featuresPerToken: 1, epochs: 1, seed: 1, onEpoch: (_e, _m, acc) => t.equal(acc, 0) })
  t.same(Array.from(noData.weights), [0, 0, 0, 0, 0, 0])
})
