// tagInput: several texts are worked through one text per turn of the event
// loop, with the same results as one text at a time.
import t from 'tap'
import { toyConfig } from '../fixtures/toy-tagger.ts'
import { oneTurnEach, resultsJson, tagInput } from '../../nlp/service.ts'
import { tagText, type FeatureTensor } from '../../nlp/tagger.ts'

const config = toyConfig

// Scores from the feature ids, so that tags depend on the text; resolves
// without a turn of the event loop, as an inline model run does.
async function run (f: FeatureTensor): Promise<{ data: Float32Array, dims: number[] }> {
  const [B, T, F] = f.dims
  const data = new Float32Array(B * T * 3)
  for (let k = 0; k < B * T; k++) data[k * 3 + Number(f.data[k * F + 1] % 3n)] = 10
  return { data, dims: [B, T, 3] }
}

/** Counts the turns of the event loop until stopped. */
function turnCounter () {
  let turns = 0
  let stopped = false
  const spin = () => { if (!stopped) { turns++; setImmediate(spin) } }
  setImmediate(spin)
  return () => { stopped = true; return turns }
}

t.test('several texts: one text per turn, results as one text at a time', async t => {
  const texts = ['Ann Lee met Bob in Paris.', '', 'Sundar Pichai runs Google.', 'x']
  const stop = turnCounter()
  const { tagged } = await tagInput({ form: 'texts', texts }, config, run)
  // 4 tokenized, 3 featurized and 3 decoded, each on a turn of its own.
  t.ok(stop() >= 9, 'other work ran between the texts')
  t.same(tagged, await Promise.all(texts.map(text => tagText(text, config, run))))
})

t.test('one text is tagged at once', async t => {
  const stop = turnCounter()
  const { tagged } = await tagInput({ form: 'text', texts: ['Ann Lee met Bob.'] }, config, run)
  t.equal(stop(), 0)
  t.same(tagged, [await tagText('Ann Lee met Bob.', config, run)])
})

t.test('oneTurnEach runs jobs in order, one per turn, past a failing one', async t => {
  const turn = oneTurnEach()
  const order: string[] = []
  const stop = turnCounter()
  const jobs = [
    turn(() => { order.push('a'); return 1 }),
    turn(() => { order.push('b'); throw new Error('boom') }),
    turn(() => { order.push('c'); return 3 }),
  ]
  t.same(await Promise.allSettled(jobs), [
    { status: 'fulfilled', value: 1 },
    { status: 'rejected', reason: new Error('boom') },
    { status: 'fulfilled', value: 3 },
  ])
  t.same(order, ['a', 'b', 'c'])
  t.ok(stop() >= 2)
})

t.test('resultsJson writes JSON.stringify({ results }), one result per turn', async t => {
  const results = [{ tokens: [{ text: '"\\\u0000\ud800', start: 0, end: 4, tag: 'X' }] }, { tokens: [] }, { tokens: [{ text: '😀', start: 0, end: 2, tag: 'Y' }] }]
  const stop = turnCounter()
  t.equal(await resultsJson(results.length, i => results[i], oneTurnEach()), JSON.stringify({ results }))
  t.ok(stop() >= 2)
  t.equal(await resultsJson(0, i => results[i], oneTurnEach()), '{"results":[]}')
})
