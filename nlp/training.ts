// Training of a tagger from tagged sentences: features, perceptron, export.
// Used by `npm run train` and by the determinism test.
import { extractFeatures, FEATURE_TEMPLATE_VERSION, FEATURES_PER_TOKEN, type FeatureSpec } from './features.ts'
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
  epochs: number
  seed: number
  onEpoch?: (epoch: number, model: LinearChainModel, trainAccuracy: number) => void
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

export function featureSpec (buckets: number): FeatureSpec {
  return { featureTemplate: FEATURE_TEMPLATE_VERSION, buckets, featuresPerToken: FEATURES_PER_TOKEN }
}

/** Trains a model; returns it with its ONNX bytes and config (without accuracy figures). */
export function trainTagger (opts: TrainTaggerOptions): { model: LinearChainModel, onnx: Uint8Array, config: TaggerConfig } {
  const spec = featureSpec(opts.buckets)
  const data = toSequences(opts.train, opts.labels, spec)
  const model = train(data, {
    labels: opts.labels.length,
    buckets: opts.buckets,
    featuresPerToken: spec.featuresPerToken,
    epochs: opts.epochs,
    seed: opts.seed,
    constraints: opts.task === 'ner' ? bioConstraints(opts.labels) : undefined,
    onEpoch: opts.onEpoch,
  })
  const info = { name: opts.name, task: opts.task, labels: opts.labels, ...spec }
  const training = { algorithm: 'averaged structured perceptron', epochs: opts.epochs, seed: opts.seed, sentences: opts.train.length }
  return { model, onnx: taggerOnnx(model, info), config: taggerConfig(model, { ...info, extra: { training } }) }
}

export { configJson }
