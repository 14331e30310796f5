// Evaluation measures: token accuracy and entity-level precision/recall/F1
// (an entity counts only with the exact span and label).
import { bioSpans } from './tagger.ts'

export function tokenAccuracy (gold: readonly string[][], pred: readonly string[][]): number {
  let correct = 0
  let total = 0
  gold.forEach((g, s) => g.forEach((tag, i) => { total++; if (pred[s][i] === tag) correct++ }))
  return total === 0 ? 0 : correct / total
}

export interface Prf { precision: number, recall: number, f1: number, gold: number, predicted: number, correct: number }

function prf (gold: number, predicted: number, correct: number): Prf {
  const precision = predicted === 0 ? 0 : correct / predicted
  const recall = gold === 0 ? 0 : correct / gold
  const f1 = precision + recall === 0 ? 0 : 2 * precision * recall / (precision + recall)
  return { precision, recall, f1, gold, predicted, correct }
}

/** Micro-averaged entity P/R/F1 overall and per label. */
export function entityScores (gold: readonly string[][], pred: readonly string[][]): { overall: Prf, byLabel: Record<string, Prf> } {
  const counts = new Map<string, [number, number, number]>()
  const bump = (label: string, k: 0 | 1 | 2): void => {
    const c = counts.get(label) ?? [0, 0, 0]
    c[k]++
    counts.set(label, c)
  }
  gold.forEach((g, s) => {
    const key = (x: { label: string, first: number, last: number }): string => `${x.label}:${x.first}:${x.last}`
    const gs = bioSpans(g)
    const ps = bioSpans(pred[s])
    const goldKeys = new Set(gs.map(key))
    for (const x of gs) bump(x.label, 0)
    for (const x of ps) {
      bump(x.label, 1)
      if (goldKeys.has(key(x))) bump(x.label, 2)
    }
  })
  let G = 0; let P = 0; let C = 0
  const byLabel: Record<string, Prf> = {}
  for (const label of [...counts.keys()].sort()) {
    const [g, p, c] = counts.get(label) as [number, number, number]
    G += g; P += p; C += c
    byLabel[label] = prf(g, p, c)
  }
  return { overall: prf(G, P, C), byLabel }
}

/**
 * Segmentation agreement: tokens of `pred` whose character span (counted with
 * white space removed) equals a token span of `gold`. Precision over predicted
 * tokens, recall over gold tokens.
 */
export function segmentationScores (gold: readonly string[][], pred: readonly string[][]): Prf {
  let G = 0; let P = 0; let C = 0
  const spans = (words: readonly string[]): Set<string> => {
    let p = 0
    return new Set(words.map(w => {
      const n = w.replace(/\s+/gu, '').length
      const key = `${p}:${p + n}`
      p += n
      return key
    }))
  }
  gold.forEach((g, s) => {
    const gs = spans(g)
    const ps = spans(pred[s])
    G += g.length
    P += pred[s].length
    for (const k of ps) if (gs.has(k)) C++
  })
  return prf(G, P, C)
}
