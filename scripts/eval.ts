// npm run eval [-- --data DIR] [--models DIR]
//
// Measures the committed models through the served pipeline (features ->
// ONNX Runtime -> Viterbi): POS token accuracy on UD English EWT test and NER
// entity-level precision / recall / F1 (exact span and label) on UNER
// English-EWT test. Also how often the tokenizer reproduces the gold
// segmentation of UD EWT test from its raw sentence text.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { evaluateNer, evaluatePos } from '../nlp/evaluation.ts'
import { segmentationScores } from '../nlp/metrics.ts'
import { tokenize } from '../nlp/tokenize.ts'
import { loadScorer } from '../nlp/ort.ts'
import type { TaggerConfig } from '../nlp/tagger.ts'
import { dataDir, nerData, parseFlags, posData, REPO_ROOT } from './datasets.ts'

const flags = parseFlags('eval', process.argv.slice(2), ['data', 'models'])
const data = dataDir(flags.data)
const models = resolve(flags.models ?? join(REPO_ROOT, 'models'))
const pct = (x: number): string => `${(100 * x).toFixed(2)}%`

async function load (task: string): Promise<{ config: TaggerConfig, run: Awaited<ReturnType<typeof loadScorer>> }> {
  const config = JSON.parse(readFileSync(join(models, task, 'config.json'), 'utf8')) as TaggerConfig
  return { config, run: await loadScorer(join(models, task, 'model.onnx'), config.input, config.output) }
}

const pos = await load('pos')
const t0 = Date.now()
const posTest = posData(data).test
const acc = await evaluatePos(posTest, pos.config, pos.run)
const posTokens = posTest.reduce((n, s) => n + s.words.length, 0)
console.log(`POS  UD English EWT test  ${posTest.length} sentences, ${posTokens} tokens  UPOS accuracy ${pct(acc)}  (${Date.now() - t0} ms)`)
const withText = posTest.filter(s => s.text !== undefined)
const seg = segmentationScores(withText.map(s => s.words), withText.map(s => tokenize(s.text as string).map(t => t.text)))
console.log(`TOK  tokenizer vs UD English EWT test segmentation  P ${pct(seg.precision)}  R ${pct(seg.recall)}  F1 ${pct(seg.f1)}`)

const ner = await load('ner')
const t1 = Date.now()
const nerTest = nerData(data).test
const { overall, byLabel } = await evaluateNer(nerTest, ner.config, ner.run)
console.log(`NER  UNER English-EWT test  ${nerTest.length} sentences, ${overall.gold} entities  ` +
  `P ${pct(overall.precision)}  R ${pct(overall.recall)}  F1 ${pct(overall.f1)}  (${Date.now() - t1} ms)`)
for (const [label, s] of Object.entries(byLabel)) {
  console.log(`     ${label.padEnd(4)} P ${pct(s.precision)}  R ${pct(s.recall)}  F1 ${pct(s.f1)}  (gold ${s.gold}, predicted ${s.predicted})`)
}
