// Runs a tagger over gold-tokenized sentences through a `RunScores` function
// (the served path: features -> model -> Viterbi) and scores the output.
import type { TaggedSentence } from './corpus.ts'
import { entityScores, tokenAccuracy, type Prf } from './metrics.ts'
import { tagBatch, tokensFromWords, type RunScores, type TaggerConfig } from './tagger.ts'

export async function predictAll (sentences: readonly TaggedSentence[], config: TaggerConfig, run: RunScores, batchSize = 64): Promise<string[][]> {
  const out: string[][] = []
  for (let i = 0; i < sentences.length; i += batchSize) {
    const batch = sentences.slice(i, i + batchSize).map(s => tokensFromWords(s.words))
    for (const tagged of await tagBatch(batch, config, run)) out.push(tagged.map(t => t.tag))
  }
  return out
}

export async function evaluatePos (sentences: readonly TaggedSentence[], config: TaggerConfig, run: RunScores): Promise<number> {
  return tokenAccuracy(sentences.map(s => s.tags), await predictAll(sentences, config, run))
}

export async function evaluateNer (sentences: readonly TaggedSentence[], config: TaggerConfig, run: RunScores): Promise<{ overall: Prf, byLabel: Record<string, Prf> }> {
  return entityScores(sentences.map(s => s.tags), await predictAll(sentences, config, run))
}
