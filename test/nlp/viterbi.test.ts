import t from 'tap'
import { viterbi } from '../../nlp/viterbi.ts'

// Two labels, A=0 and B=1. Emissions alone prefer A, B, A; a strong A->B
// penalty and B->A bonus change the best path.
const emissions = Float32Array.from([
  2, 0, // t0
  0, 1, // t1
  1, 0, // t2
])

t.test('picks the best path by hand-computed scores', async t => {
  const free = { transitions: [0, 0, 0, 0], start: [0, 0], end: [0, 0] }
  t.same(Array.from(viterbi(emissions, 3, 2, free)), [0, 1, 0], 'no transitions: per-token argmax')
  // A->A 0, A->B -5, B->A 0, B->B 0. Paths: AAA=3, AAB=-3, ABA=-1, ABB=-2, BAA=1, BAB=-5, BBA=2, BBB=1.
  const tr = { transitions: [0, -5, 0, 0], start: [0, 0], end: [0, 0] }
  t.same(Array.from(viterbi(emissions, 3, 2, tr)), [0, 0, 0])
  // Start bonus for B (+3): BBA = 2 + 3 = 5 beats AAA = 3.
  t.same(Array.from(viterbi(emissions, 3, 2, { ...tr, start: [0, 3] })), [1, 1, 0])
  // End bonus for B (+3): BBB = 1 + 3 = 4 beats AAA = 3 (AAB = 0 pays A->B).
  t.same(Array.from(viterbi(emissions, 3, 2, { ...tr, end: [0, 3] })), [1, 1, 1])
})

t.test('edge cases', async t => {
  const tr = { transitions: [0, 0, 0, 0], start: [0, 0], end: [0, 0] }
  t.same(viterbi(emissions, 0, 2, tr), new Int32Array(0), 'empty sequence')
  t.same(Array.from(viterbi([0, 0], 1, 2, tr)), [0], 'ties go to the lower label')
  t.same(Array.from(viterbi(emissions, 1, 2, tr, 2)), [1], 'reads from an offset')
})
