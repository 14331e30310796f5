// Writes a trained linear-chain tagger as ONNX + config.json.
//
// Graph: features int64 [batch, tokens, F] -> Gather over the weight table
// float16 [buckets, L] -> [batch, tokens, F, L] -> Cast to float32 ->
// ReduceSum over axis 2 -> scores float32 [batch, tokens, L]. Row 0 of the
// table (the padding feature) is zero.
//
// The table is stored in float16: it is nearly all of the model, and each
// session holding it (one per inference thread, and a main-thread copy when
// the model runs inline) holds a copy. Half the bytes: ner 14.7 -> 7.3 MB,
// pos 8.9 -> 4.5 MB. A run on the bench sentences took 0.91-1.06x the
// float32 model's time (batches of 1, 8 and 64; the Cast costs about what
// the smaller reads save). The scores sum the rounded weights in float32
// (Cast before ReduceSum). UPOS accuracy and NER precision, recall and F1 on
// the test sets were unchanged to the last digit `npm run eval` prints.
//
// Transitions, labels and the feature template live in config.json, and the
// labels and template version are also in the model's metadata.
import { renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildModel } from '../framework/onnx-builder.ts'
import { toFloat16 } from './float16.ts'
import type { FeatureSpec } from './features.ts'
import type { LinearChainModel } from './perceptron.ts'
import type { TaggerConfig } from './tagger.ts'

export const INPUT_NAME = 'features'
export const OUTPUT_NAME = 'scores'

export interface ExportInfo extends FeatureSpec {
  name: string
  task: 'pos' | 'ner'
  labels: string[]
  /** Extra config.json fields (accuracy, training settings...). */
  extra?: Record<string, unknown>
}

const BY_SA = 'CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)'
const EWT = 'UD English EWT (Silveira et al. 2014, LREC; CC BY-SA 4.0)'

/**
 * Each model's licence with the attributions its training data requires, as
 * its model card gives them: written into config.json, beside the model, and
 * answered by GET /pos, GET /ner and the OIP model metadata.
 */
export const LICENCES: Record<'pos' | 'ner', string> = {
  pos: `${BY_SA}. Derived from ${EWT}. See models/pos/README.md.`,
  ner: `${BY_SA}. Derived from UNER English-EWT (Mayhew et al. 2024, NAACL; CC BY-SA 4.0), ${EWT}, ` +
    'the Broad Twitter Corpus (Derczynski, Bontcheva and Roberts 2016, COLING; CC BY 4.0) and WNUT17 ' +
    '(Derczynski, Nichols, van Erp and Limsopatham 2017, W-NUT; CC BY 4.0). See models/ner/README.md.',
}

/** Config for a trained model; key order is fixed so the JSON is byte-stable. */
export function taggerConfig (model: LinearChainModel, info: ExportInfo): TaggerConfig {
  const L = model.labels
  const rows: number[][] = []
  for (let i = 0; i < L; i++) rows.push(Array.from(model.transitions.subarray(i * L, (i + 1) * L)))
  return {
    name: info.name,
    task: info.task,
    licence: LICENCES[info.task],
    labels: info.labels,
    featureTemplate: info.featureTemplate,
    buckets: info.buckets,
    featuresPerToken: info.featuresPerToken,
    input: INPUT_NAME,
    output: OUTPUT_NAME,
    // Feature id 0 is padding (row 0 of the table is zero), so the server may
    // pad sentences of different lengths into one batch (framework/batcher.ts).
    padValue: 0,
    // At most 64 sentences of 64 tokens' worth of feature ids padded into one
    // batch ([rows, tokens, features] elements): a long text runs in a smaller
    // batch rather than have short ones padded to its length.
    maxBatchTokens: 64 * 64 * info.featuresPerToken,
    transitions: rows,
    start: Array.from(model.start),
    end: Array.from(model.end),
    ...info.extra,
    lexicon: info.lexicon ?? {},
    ...(info.entities !== undefined ? { entities: info.entities } : {}),
    ...(info.gazetteer !== undefined ? { gazetteer: info.gazetteer } : {}),
  }
}

/** ONNX bytes of the emission scorer. */
export function taggerOnnx (model: LinearChainModel, info: ExportInfo): Uint8Array {
  const L = model.labels
  const weights = model.weights.slice()
  weights.fill(0, 0, L)
  return buildModel({
    name: info.name,
    opset: 17,
    docString: `${info.task} tagger: hashed feature ids -> emission scores; decode with config.json`,
    inputs: [{ name: INPUT_NAME, type: 'int64', shape: ['batch', 'tokens', info.featuresPerToken] }],
    outputs: [{ name: OUTPUT_NAME, type: 'float32', shape: ['batch', 'tokens', L] }],
    initializers: [
      { name: 'weights', type: 'float16', dims: [info.buckets, L], data: toFloat16(weights) },
      { name: 'feature_axis', type: 'int64', dims: [1], data: BigInt64Array.from([2n]) },
    ],
    nodes: [
      { op: 'Gather', inputs: ['weights', INPUT_NAME], outputs: ['gathered_half'], attributes: { axis: 0 } },
      { op: 'Cast', inputs: ['gathered_half'], outputs: ['gathered'], attributes: { to: 1 } },
      { op: 'ReduceSum', inputs: ['gathered', 'feature_axis'], outputs: [OUTPUT_NAME], attributes: { keepdims: 0 } },
    ],
    metadata: {
      task: info.task,
      labels: JSON.stringify(info.labels),
      feature_template: info.featureTemplate,
      buckets: String(info.buckets),
      features_per_token: String(info.featuresPerToken),
    },
  })
}

const LEXICONS = ['lexicon', 'entities', 'gazetteer']

/**
 * config.json text: two-space JSON with a final newline, the (long) lexicons
 * last so that the head of the file stays readable.
 */
export function configJson (config: TaggerConfig): string {
  const keys = Object.keys(config)
  const ordered = [...keys.filter(k => !LEXICONS.includes(k)), ...LEXICONS.filter(k => keys.includes(k))]
  return JSON.stringify(Object.fromEntries(ordered.map(k => [k, config[k]])), null, 2) + '\n'
}

/**
 * Writes a tagger's model.onnx and config.json into `dir` as a pair: each to
 * a temporary file beside its final name (the same directory, so renaming it
 * is atomic), and both renamed into place only once both are written.
 * `configFor` gets the temporary model's path (the accuracy in config.json is
 * measured on the written model) and returns config.json's text. If it
 * throws, or the process is stopped before the renames (the evaluation takes
 * minutes), the previous pair is left whole and the temporaries are removed
 * (on a throw; a killed process leaves them, named `.*.tmp`, which the model
 * repository does not read). Writing model.onnx first and then config.json,
 * as before, left a new model beside the old config.json after an interrupt,
 * and the server loaded that pair.
 *
 * Rename order: config.json, then model.onnx. Only a process killed between
 * the two renames (microseconds) leaves a mismatched pair, either way; but
 * model.onnx is what makes the folder a model for the repository, so a
 * first training never shows a model.onnx without its config.json, and a
 * config.json that cannot be renamed (say, a directory in its place) leaves
 * the old model.onnx untouched.
 */
export async function writeTaggerFiles (dir: string, onnx: Uint8Array, configFor: (modelPath: string) => Promise<string>): Promise<void> {
  const modelTmp = join(dir, `.model.onnx.${process.pid}.tmp`)
  const configTmp = join(dir, `.config.json.${process.pid}.tmp`)
  try {
    writeFileSync(modelTmp, onnx)
    writeFileSync(configTmp, await configFor(modelTmp))
    renameSync(configTmp, join(dir, 'config.json'))
    renameSync(modelTmp, join(dir, 'model.onnx'))
  } finally {
    rmSync(modelTmp, { force: true })
    rmSync(configTmp, { force: true })
  }
}
