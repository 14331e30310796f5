import t from 'tap'
import { toyConfig } from '../fixtures/toy-tagger.ts'
import { extractFeatures, FEATURES_PER_TOKEN } from '../../nlp/features.ts'
import {
  bioSpans, decode, entitiesFromBio, prepare, prepareBatch, tagBatch, tagText, tokensFromWords,
  type FeatureTensor,
} from '../../nlp/tagger.ts'

const config = toyConfig
const F = FEATURES_PER_TOKEN

t.test('prepare and prepareBatch pad with feature id 0', async t => {
  const one = prepare(['Ann', 'ran'], config)
  t.same(one.dims, [1, 2, F])
  t.same(one.lengths, [2])
  t.same(Array.from(one.data, Number), Array.from(extractFeatures(['Ann', 'ran'], config)))
  const batch = prepareBatch([['a'], tokensFromWords(['b', 'c', 'd']), []], config)
  t.same(batch.dims, [3, 3, F])
  t.same(batch.lengths, [1, 3, 0])
  t.ok(batch.data.slice(F, 3 * F).every(x => x === 0n), 'padding after the first sequence')
  t.ok(batch.data.slice(6 * F).every(x => x === 0n), 'the empty sequence is all padding')
  t.ok(batch.data.slice(3 * F, 6 * F).every(x => x > 0n), 'real tokens have no id 0')
  t.same(prepareBatch([], config).dims, [0, 1, F], 'an empty batch still has Tmax 1')
})

// Scores that make token i of sequence b take label (b + i) % 3, with BIO
// transitions forbidding O -> I-PER.
function scoresFor (dims: [number, number, number], favour: (b: number, i: number) => number): Float32Array {
  const [B, T] = dims
  const out = new Float32Array(B * T * 3)
  for (let b = 0; b < B; b++) for (let i = 0; i < T; i++) out[(b * T + i) * 3 + favour(b, i)] = 10
  return out
}

t.test('decode splits a batch and applies transitions', async t => {
  const dims: [number, number, number] = [2, 3, 3]
  const scores = scoresFor(dims, (b, i) => [[1, 2, 0], [0, 2, 2]][b][i])
  scores[(1 * 3 + 1) * 3 + 1] = 5 // second sequence, token 1: B-PER is the runner-up
  t.same(decode(scores, dims, [3, 2], config), [['B-PER', 'I-PER', 'O'], ['O', 'B-PER']],
    'O -> I-PER is forbidden, so the second sequence starts an entity instead')
  t.throws(() => decode(scores, [2, 3, 4], [3, 2], config), /4 scores per token/)
  t.throws(() => decode(scores.subarray(1), dims, [3, 2], config), /expected 2x3x3/)
})

t.test('BIO spans and entities with offsets', async t => {
  t.same(bioSpans(['B-PER', 'I-PER', 'O', 'I-LOC', 'B-ORG', 'B-ORG', 'I-LOC']), [
    { label: 'PER', first: 0, last: 2 },
    { label: 'LOC', first: 3, last: 4 },
    { label: 'ORG', first: 4, last: 5 },
    { label: 'ORG', first: 5, last: 6 },
    { label: 'LOC', first: 6, last: 7 },
  ])
  const text = 'Ann  Lee met 😀 Bob'
  const tokens = [
    { text: 'Ann', start: 0, end: 3 }, { text: 'Lee', start: 5, end: 8 }, { text: 'met', start: 9, end: 12 },
    { text: '😀', start: 13, end: 15 }, { text: 'Bob', start: 16, end: 19 },
  ]
  const tags = ['B-PER', 'I-PER', 'O', 'O', 'B-PER']
  t.same(entitiesFromBio(tokens, tags, text), [
    { text: 'Ann  Lee', label: 'PER', start: 0, end: 8 },
    { text: 'Bob', label: 'PER', start: 16, end: 19 },
  ], 'offsets in UTF-16 units, text is the exact slice')
  t.same(entitiesFromBio(tokens, tags)[0].text, 'Ann Lee', 'without the text, tokens are joined by spaces')
  const words = tokensFromWords(['New', 'York', 'x'])
  t.same(words, [{ text: 'New', start: 0, end: 3 }, { text: 'York', start: 4, end: 8 }, { text: 'x', start: 9, end: 10 }])
  t.same(entitiesFromBio(words, ['B-LOC', 'I-LOC', 'O']), [{ text: 'New York', label: 'LOC', start: 0, end: 8 }])
})

t.test('tagText and tagBatch call run once per batch', async t => {
  const calls: FeatureTensor[] = []
  const run = async (f: FeatureTensor): Promise<{ data: Float32Array, dims: number[] }> => {
    calls.push(f)
    const dims: [number, number, number] = [f.dims[0], f.dims[1], 3]
    return { data: scoresFor(dims, (_b, i) => (i === 0 ? 1 : 2)), dims }
  }
  const tagged = await tagText('Ann  Lee', config, run)
  t.same(tagged, [{ text: 'Ann', start: 0, end: 3, tag: 'B-PER' }, { text: 'Lee', start: 5, end: 8, tag: 'I-PER' }])
  t.same(await tagText('', config, run), [])
  t.same(await tagBatch([], config, run), [], 'an empty batch does not call the model')
  const both = await tagBatch([tokensFromWords(['a']), tokensFromWords(['b', 'c'])], config, run)
  t.same(both.map(s => s.map(x => x.tag)), [['B-PER'], ['B-PER', 'I-PER']])
  t.equal(calls.length, 3)
})
