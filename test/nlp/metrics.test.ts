import t from 'tap'
import { entityScores, segmentationScores, tokenAccuracy } from '../../nlp/metrics.ts'

t.test('token accuracy', async t => {
  t.equal(tokenAccuracy([['A', 'B'], ['C']], [['A', 'X'], ['C']]), 2 / 3)
  t.equal(tokenAccuracy([], []), 0)
})

t.test('entity P/R/F1 needs exact span and label', async t => {
  const gold = [['B-PER', 'I-PER', 'O', 'B-LOC'], ['B-ORG', 'O']]
  const pred = [['B-PER', 'O', 'O', 'B-LOC'], ['B-LOC', 'O']]
  const { overall, byLabel } = entityScores(gold, pred)
  t.same(overall, { precision: 1 / 3, recall: 1 / 3, f1: 1 / 3, gold: 3, predicted: 3, correct: 1 })
  t.same(Object.keys(byLabel), ['LOC', 'ORG', 'PER'])
  t.same(byLabel.ORG, { precision: 0, recall: 0, f1: 0, gold: 1, predicted: 0, correct: 0 })
  t.equal(byLabel.LOC.precision, 0.5)
  t.equal(entityScores([['O']], [['O']]).overall.f1, 0)
})

t.test('segmentation agreement by character spans', async t => {
  const s = segmentationScores([['do', "n't", 'go', '.'], ['a b']], [["don't", 'go', '.'], ['a', 'b']])
  t.match(s, { precision: 2 / 5, recall: 2 / 5, gold: 5, predicted: 5, correct: 2 })
  t.ok(Math.abs(s.f1 - 0.4) < 1e-12)
})
