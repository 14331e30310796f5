// What the benchmark serves and sends, shared by bench/run.ts (the full run)
// and bench/ab.ts (paired A/B runs of one route): the models directory, and
// the request bodies of each target.
import { cpSync, existsSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchModels, examplesOf, type BenchModel } from './models.ts'
import { tokenize } from '../nlp/tokenize.ts'
import { prepare, type TaggerConfig } from '../nlp/tagger.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Sentences for /ner and /pos: news-like English, 5 to 30 tokens. */
export const SENTENCES = [
  'Barack Obama visited Paris on Monday.',
  'The European Central Bank left interest rates unchanged on Thursday, citing slowing growth in Germany and Italy.',
  'Apple opened a new store in Tokyo.',
  'Angela Merkel met Emmanuel Macron in Berlin to discuss the budget of the European Union and the war in Ukraine.',
  'I think the new phone is way too expensive for what it does.',
  'Researchers at Stanford University published the study in Nature last week.',
  'Thanks!',
  'Microsoft said on Tuesday that it would buy the game maker Activision Blizzard for about $69 billion in cash.',
]

/**
 * Writes every model bench/app.ts serves into `dir`: the bench models
 * (heavy's 140 MB included) and the real app's, so that app.ts's resources
 * load as in production.
 */
export function writeModels (dir: string): void {
  for (const m of benchModels()) writeFileSync(join(dir, `${m.name}.onnx`), m.bytes)
  for (const name of ['scaler.onnx', 'ner', 'pos']) {
    if (existsSync(join(root, 'models', name))) cpSync(join(root, 'models', name), join(dir, name), { recursive: true })
  }
}

/** Examples each load cycles through, one per request (see examplesOf). */
export const EXAMPLES = 256
/** A bench model's bodies for the baseline and its resource route. */
export const jsonBodies = (m: BenchModel) => examplesOf(m, EXAMPLES).map(x => JSON.stringify({ inputs: [x] }))
/** The same examples through OIP infer, as JSON. */
export const oipBodies = (m: BenchModel) => examplesOf(m, EXAMPLES).map(x =>
  JSON.stringify({ inputs: [{ name: m.input, shape: [1, m.width], datatype: m.type === 'int64' ? 'INT64' : 'FP32', data: x }] }))
/** /ner's and /pos's bodies, for their baseline and resource routes. */
export const sentenceBodies = () => SENTENCES.map(text => JSON.stringify({ text }))
/** A tagger model's bodies through OIP: each sentence's feature ids (no tokenizing or decoding on the server). */
export const featureBodies = (config: TaggerConfig) => SENTENCES.map(text => {
  const features = prepare(tokenize(text), config)
  return JSON.stringify({ inputs: [{ name: config.input, shape: features.dims, datatype: 'INT64', data: Array.from(features.data, Number) }] })
})
