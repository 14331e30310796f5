// npm run train [-- --data DIR] [--only pos|ner] [--out DIR]
//
// Rebuilds models/pos and models/ner from the corpora: averaged structured
// perceptron, exported to ONNX, then measured through ONNX Runtime on the
// test sets (the figures go into config.json). Deterministic: running it twice
// gives byte-identical files.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { evaluateNer, evaluatePos } from '../nlp/evaluation.ts'
import { entityScores, tokenAccuracy } from '../nlp/metrics.ts'
import { loadScorer } from '../nlp/ort.ts'
import { predict, type LinearChainModel } from '../nlp/perceptron.ts'
import { configJson, modelSpec, NER_LABELS, toSequences, trainTagger, UPOS_LABELS } from '../nlp/training.ts'
import type { TaggedSentence } from '../nlp/corpus.ts'
import { buildLexicon } from '../nlp/features.ts'
import { argValue, dataDir, nerData, posData, REPO_ROOT } from './datasets.ts'

const argv = process.argv.slice(2)
const data = dataDir(argv)
const outDir = resolve(argValue(argv, '--out') ?? join(REPO_ROOT, 'models'))
const only = argValue(argv, '--only')

const round = (x: number): number => Number(x.toFixed(4))
const pct = (x: number): string => `${(100 * x).toFixed(2)}%`

interface TaskSpec {
  task: 'pos' | 'ner'
  labels: string[]
  buckets: number
  epochs: number
  /** Training runs with consecutive seeds, averaged into one model. */
  runs: number
  /** Minimum count in UD EWT train for a word to enter the word-class lexicon. */
  lexiconMin: number
  load: () => { train: TaggedSentence[], dev: TaggedSentence[], test: TaggedSentence[], sources?: Record<string, number> }
}

// --epochs / --buckets override the defaults below (for experiments).
const num = (name: string): number | undefined => {
  const v = argValue(argv, name)
  return v === undefined ? undefined : Number(v)
}
const TASKS: TaskSpec[] = [
  { task: 'pos', labels: UPOS_LABELS, buckets: num('--buckets') ?? 1 << 17, epochs: num('--epochs') ?? 10, lexiconMin: num('--lexicon-min') ?? 5, runs: num('--pos-runs') ?? 5, load: () => posData(data) },
  { task: 'ner', labels: NER_LABELS, buckets: num('--buckets') ?? 1 << 19, epochs: num('--epochs') ?? 10, lexiconMin: num('--ner-lexicon-min') ?? 5, runs: num('--ner-runs') ?? 5, load: () => nerData(data, num('--in-domain-repeat') ?? 1, argValue(argv, '--ner-corpora')?.split(',')) },
]

async function build (spec: TaskSpec, lexicon: Record<string, string>): Promise<void> {
  const t0 = Date.now()
  const { train, dev, test, sources } = spec.load()
  console.log(`[${spec.task}] ${train.length} training sentences, ${dev.length} dev, ${test.length} test (data: ${data})`)
  const devSeqs = toSequences(dev, spec.labels, modelSpec({ task: spec.task, buckets: spec.buckets, lexicon, train }))
  const devScore = (model: LinearChainModel): number => {
    const pred = devSeqs.map(s => Array.from(predict(model, s.features), i => spec.labels[i]))
    const gold = dev.map(s => s.tags)
    return spec.task === 'pos' ? tokenAccuracy(gold, pred) : entityScores(gold, pred).overall.f1
  }
  let tEpochs = Date.now()
  const { onnx, config } = trainTagger({
    name: `${spec.task}-en`,
    task: spec.task,
    labels: spec.labels,
    train,
    buckets: spec.buckets,
    lexicon,
    epochs: spec.epochs,
    seed: num('--seed') ?? 1,
    runs: spec.runs,
    onEpoch: (epoch, model, trainAcc, run) => {
      const elapsed = (Date.now() - tEpochs) / 1000
      const done = run * spec.epochs + epoch
      const left = elapsed / done * (spec.runs * spec.epochs - done)
      const runInfo = spec.runs > 1 ? `run ${run + 1}/${spec.runs} ` : ''
      console.log(`[${spec.task}] ${runInfo}epoch ${epoch}/${spec.epochs}  train acc ${pct(trainAcc)}  ` +
        `dev ${spec.task === 'pos' ? 'acc' : 'F1'} ${pct(devScore(model))}  ${elapsed.toFixed(1)}s elapsed, ~${left.toFixed(0)}s left`)
    },
  })
  tEpochs = Date.now()
  const dir = join(outDir, spec.task)
  mkdirSync(dir, { recursive: true })
  const onnxPath = join(dir, 'model.onnx')
  writeFileSync(onnxPath, onnx)
  const run = await loadScorer(onnxPath)
  if (spec.task === 'pos') {
    const devAcc = await evaluatePos(dev, config, run)
    const testAcc = await evaluatePos(test, config, run)
    config.accuracy = { metric: 'UPOS token accuracy (gold tokenization)', test: round(testAcc), dev: round(devAcc), testSet: 'UD English EWT test' }
    console.log(`[pos] ONNX: dev ${pct(devAcc)}, test ${pct(testAcc)}`)
  } else {
    const d = await evaluateNer(dev, config, run)
    const t = await evaluateNer(test, config, run)
    config.accuracy = {
      metric: 'entity-level exact span+label, micro-averaged (gold tokenization)',
      testSet: 'UNER English-EWT test',
      precision: round(t.overall.precision),
      recall: round(t.overall.recall),
      f1: round(t.overall.f1),
      devF1: round(d.overall.f1),
    }
    console.log(`[ner] ONNX: dev F1 ${pct(d.overall.f1)}, test P ${pct(t.overall.precision)} R ${pct(t.overall.recall)} F1 ${pct(t.overall.f1)}`)
  }
  if (sources !== undefined) (config.training as Record<string, unknown>).sources = sources
  writeFileSync(join(dir, 'config.json'), configJson(config))
  console.log(`[${spec.task}] wrote ${dir} (${(onnx.length / 1048576).toFixed(1)} MiB) in ${((Date.now() - t0) / 1000).toFixed(0)}s`)
}

// Both models use the word classes of UD EWT train (gold UPOS): for NER they
// carry in-domain evidence such as "this word is usually a proper noun".
const ewtTrain = posData(data).train
for (const spec of TASKS) {
  if (only !== undefined && only !== spec.task) continue
  const lexicon = buildLexicon(ewtTrain, spec.lexiconMin)
  console.log(`[${spec.task}] word-class lexicon: ${Object.keys(lexicon).length} words seen at least ${spec.lexiconMin} times in UD EWT train`)
  await build(spec, lexicon)
}
