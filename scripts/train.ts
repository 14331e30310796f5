// npm run train [-- --data DIR] [--only pos|ner] [--out DIR] [--seed N] [--epochs N] [--buckets N] ...
// (the flags are listed in FLAGS below; one not there, or a value that is no
// valid integer, stops the script with exit status 2 before it reads or writes)
//
// Rebuilds models/pos and models/ner from the corpora: averaged structured
// perceptron, exported to ONNX, then measured through ONNX Runtime on the
// test sets (the figures go into config.json). Deterministic: running it twice
// gives byte-identical files.
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { evaluateNer, evaluatePos } from '../nlp/evaluation.ts'
import { entityScores, tokenAccuracy } from '../nlp/metrics.ts'
import { loadScorer } from '../nlp/ort.ts'
import { predict, type LinearChainModel } from '../nlp/perceptron.ts'
import { writeTaggerFiles } from '../nlp/export.ts'
import { configJson, modelSpec, NER_LABELS, toSequences, trainTagger, UPOS_LABELS } from '../nlp/training.ts'
import type { TaggedSentence } from '../nlp/corpus.ts'
import { buildLexicon } from '../nlp/features.ts'
import { dataDir, NER_CORPORA, nerData, parseFlags, posData, REPO_ROOT, usageError } from './datasets.ts'

const FLAGS = ['data', 'out', 'only', 'seed', 'epochs', 'buckets', 'lexicon-min', 'pos-runs', 'ner-lexicon-min', 'ner-runs', 'in-domain-repeat', 'ner-corpora'] as const
const flags = parseFlags('train', process.argv.slice(2), FLAGS)
const bad = (message: string): never => usageError('train', message, FLAGS)
// --epochs, --buckets, --seed...: integers, checked before anything is read or written.
const num = (name: typeof FLAGS[number], min: number): number | undefined => {
  const v = flags[name]
  if (v === undefined) return undefined
  const n = Number(v)
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < min) bad(`--${name} must be an integer >= ${min}, not '${v}'`)
  return n
}
const only = flags.only
if (only !== undefined && only !== 'pos' && only !== 'ner') bad(`--only must be pos or ner, not '${only}'`)
const nerCorpora = flags['ner-corpora']?.split(',')
const unknownCorpus = nerCorpora?.find(c => !NER_CORPORA.includes(c))
if (unknownCorpus !== undefined) bad(`--ner-corpora: unknown corpus '${unknownCorpus}' (known: ${NER_CORPORA.join(', ')})`)
const seed = num('seed', 0) ?? 1
const buckets = num('buckets', 2)
if (buckets !== undefined && buckets > 2 ** 31) bad(`--buckets must be at most 2^31 (feature ids are int32), not '${flags.buckets}'`)
const epochs = num('epochs', 1)
const lexiconMin = { pos: num('lexicon-min', 1) ?? 5, ner: num('ner-lexicon-min', 1) ?? 5 }
const runs = { pos: num('pos-runs', 1) ?? 5, ner: num('ner-runs', 1) ?? 5 }
const inDomainRepeat = num('in-domain-repeat', 0) ?? 1

const data = dataDir(flags.data)
const outDir = resolve(flags.out ?? join(REPO_ROOT, 'models'))

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
const TASKS: TaskSpec[] = [
  { task: 'pos', labels: UPOS_LABELS, buckets: buckets ?? 1 << 17, epochs: epochs ?? 10, lexiconMin: lexiconMin.pos, runs: runs.pos, load: () => posData(data) },
  { task: 'ner', labels: NER_LABELS, buckets: buckets ?? 1 << 19, epochs: epochs ?? 10, lexiconMin: lexiconMin.ner, runs: runs.ner, load: () => nerData(data, inDomainRepeat, nerCorpora) },
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
    seed,
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
  // The pair is renamed into place only once both are written (writeTaggerFiles).
  await writeTaggerFiles(dir, onnx, async onnxPath => {
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
    return configJson(config)
  })
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
