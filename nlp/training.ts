// Training of a tagger from tagged sentences: features, perceptron, export.
// Used by `npm run train` and by the determinism test.
import { buildEntityLexicons, extractFeatures, FEATURE_TEMPLATE_VERSION, FEATURES_PER_TOKEN, type FeatureSpec } from './features.ts'
import { configJson, taggerConfig, taggerOnnx } from './export.ts'
import { train, type LinearChainModel, type Sequence } from './perceptron.ts'
import type { TaggedSentence } from './corpus.ts'
import type { TaggerConfig } from './tagger.ts'

export const UPOS_LABELS = [
  'ADJ', 'ADP', 'ADV', 'AUX', 'CCONJ', 'DET', 'INTJ', 'NOUN', 'NUM',
  'PART', 'PRON', 'PROPN', 'PUNCT', 'SCONJ', 'SYM', 'VERB', 'X',
]
export const NER_LABELS = ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC']

/** Score added to forbidden BIO moves (O -> I-X, B-X -> I-Y, starting with I-X). */
export const FORBIDDEN = -1e6

/** Hard BIO constraints as fixed transition / start scores. */
export function bioConstraints (labels: readonly string[]): { transitions: Float64Array, start: Float64Array, end: Float64Array } {
  const L = labels.length
  const transitions = new Float64Array(L * L)
  const start = new Float64Array(L)
  labels.forEach((to, j) => {
    if (!to.startsWith('I-')) return
    start[j] = FORBIDDEN
    labels.forEach((from, i) => {
      if (from.slice(2) !== to.slice(2) || from === 'O') transitions[i * L + j] = FORBIDDEN
    })
  })
  return { transitions, start, end: new Float64Array(L) }
}

export interface TrainTaggerOptions {
  name: string
  task: 'pos' | 'ner'
  labels: string[]
  train: readonly TaggedSentence[]
  buckets: number
  /** Word classes for the features (see buildLexicon); stored in config.json. */
  lexicon?: Record<string, string>
  epochs: number
  seed: number
  /** Independent runs with seeds seed, seed + 1, ... whose weights are averaged (default 1). */
  runs?: number
  onEpoch?: (epoch: number, model: LinearChainModel, trainAccuracy: number, run: number) => void
}

/** The mean of several models of the same shape (a single linear model again). */
export function averageModels (models: readonly LinearChainModel[]): LinearChainModel {
  if (models.length === 1) return models[0]
  const n = models.length
  const mean = <A extends Float32Array | Float64Array>(pick: (m: LinearChainModel) => A, make: (k: number) => A): A => {
    const first = pick(models[0])
    const sum = new Float64Array(first.length)
    for (const m of models) { const a = pick(m); for (let i = 0; i < a.length; i++) sum[i] += a[i] }
    const out = make(first.length)
    for (let i = 0; i < sum.length; i++) out[i] = sum[i] / n
    return out
  }
  return {
    labels: models[0].labels,
    featuresPerToken: models[0].featuresPerToken,
    weights: mean(m => m.weights, k => new Float32Array(k)),
    transitions: mean(m => m.transitions, k => new Float64Array(k)),
    start: mean(m => m.start, k => new Float64Array(k)),
    end: mean(m => m.end, k => new Float64Array(k)),
  }
}

export function toSequences (sentences: readonly TaggedSentence[], labels: readonly string[], spec: FeatureSpec): Sequence[] {
  const index = new Map(labels.map((l, i) => [l, i]))
  return sentences.map(s => ({
    features: extractFeatures(s.words, spec),
    labels: Int32Array.from(s.tags, tag => {
      const i = index.get(tag)
      if (i === undefined) throw new Error(`unknown label ${tag}`)
      return i
    }),
  }))
}

export function featureSpec (buckets: number, lexicon?: Record<string, string>): FeatureSpec {
  return { featureTemplate: FEATURE_TEMPLATE_VERSION, buckets, featuresPerToken: FEATURES_PER_TOKEN, lexicon }
}

/** Number of folds for the jackknifed entity lexicons. */
export const FOLDS = 5

/**
 * The feature spec a model is trained and served with: for NER it adds the
 * entity lexicons built from all the training data.
 */
export function modelSpec (opts: Pick<TrainTaggerOptions, 'task' | 'buckets' | 'lexicon' | 'train'>): FeatureSpec {
  const spec = featureSpec(opts.buckets, opts.lexicon)
  return opts.task === 'ner' ? { ...spec, ...buildEntityLexicons(opts.train) } : spec
}

/**
 * Training features. The entity lexicons of sentence i come from the folds
 * that do not hold it (i % FOLDS), so that during training they are as
 * reliable as they will be on unseen text (otherwise every training entity is
 * in the gazetteer and the model learns to trust it blindly).
 */
function trainingSequences (opts: TrainTaggerOptions): Sequence[] {
  const base = featureSpec(opts.buckets, opts.lexicon)
  if (opts.task !== 'ner') return toSequences(opts.train, opts.labels, base)
  const out: Sequence[] = new Array(opts.train.length)
  for (let k = 0; k < FOLDS; k++) {
    const idx = opts.train.map((_, i) => i).filter(i => i % FOLDS === k)
    const spec = { ...base, ...buildEntityLexicons(opts.train.filter((_, i) => i % FOLDS !== k)) }
    const seqs = toSequences(idx.map(i => opts.train[i]), opts.labels, spec)
    idx.forEach((i, j) => { out[i] = seqs[j] })
  }
  return out
}

/** Trains a model; returns it with its ONNX bytes and config (without accuracy figures). */
export function trainTagger (opts: TrainTaggerOptions): { model: LinearChainModel, onnx: Uint8Array, config: TaggerConfig } {
  const spec = modelSpec(opts)
  const data = trainingSequences(opts)
  const runs = opts.runs ?? 1
  const models: LinearChainModel[] = []
  for (let r = 0; r < runs; r++) {
    models.push(train(data, {
      labels: opts.labels.length,
      buckets: opts.buckets,
      featuresPerToken: spec.featuresPerToken,
      epochs: opts.epochs,
      seed: opts.seed + r,
      constraints: opts.task === 'ner' ? bioConstraints(opts.labels) : undefined,
      onEpoch: (epoch, model, acc) => opts.onEpoch?.(epoch, model, acc, r),
    }))
  }
  const model = averageModels(models)
  const info = { name: opts.name, task: opts.task, labels: opts.labels, ...spec }
  const training = {
    algorithm: runs > 1 ? `averaged structured perceptron, mean of ${runs} runs (seeds ${opts.seed}..${opts.seed + runs - 1})` : 'averaged structured perceptron',
    epochs: opts.epochs,
    seed: opts.seed,
    runs,
    sentences: opts.train.length,
  }
  return { model, onnx: taggerOnnx(model, info), config: taggerConfig(model, { ...info, extra: { training } }) }
}

export { configJson }
