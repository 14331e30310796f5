import t from 'tap'
import {
  bucketOf, buildEntityLexicons, buildLexicon, extractFeatures, featureStrings, FEATURE_TEMPLATE_VERSION,
  FEATURES_PER_TOKEN, gazetteerTags, normalize, shape, TEMPLATES,
} from '../../nlp/features.ts'
import { fnv1a32 } from '../../nlp/hash.ts'

t.test('FNV-1a 32 matches the reference vectors', async t => {
  t.equal(fnv1a32(''), 0x811c9dc5)
  t.equal(fnv1a32('a'), 0xe40c292c)
  t.equal(fnv1a32('foobar'), 0xbf9cf968)
  t.equal(fnv1a32('😀'), 3409036472, 'hashes UTF-16 code units')
})

t.test('bucket ids avoid the padding id 0', async t => {
  t.equal(bucketOf('1\u001fParis', 1 << 16), 11991)
  for (let i = 0; i < 2000; i++) {
    const id = bucketOf(String(i), 8)
    t.ok(id >= 1 && id < 8, 'in [1, buckets)')
  }
})

t.test('hashed feature ids are stable (changing them needs a new template version)', async t => {
  t.equal(FEATURE_TEMPLATE_VERSION, 'v3')
  t.equal(FEATURES_PER_TOKEN, TEMPLATES.length)
  const spec = {
    featureTemplate: FEATURE_TEMPLATE_VERSION,
    buckets: 1 << 16,
    featuresPerToken: FEATURES_PER_TOKEN,
    lexicon: { the: 'DET' },
    entities: { paris: 'LOC' },
    gazetteer: { 'new york': 'LOC' },
  }
  const ids = extractFeatures(['Hi', 'Paris'], spec)
  t.equal(ids.length, 2 * FEATURES_PER_TOKEN)
  t.same(Array.from(ids), [49150, 6264, 4194, 42023, 23459, 16045, 20953, 18616, 14812, 29654, 7420, 27074, 49371, 39275,
    20593, 53721, 52328, 24515, 19366, 4852, 27920, 53737, 41560, 33577, 61063, 27726, 5949, 39079, 46933, 48397, 22733,
    46986, 40135, 63353, 41291, 6375, 15845, 62031, 58986, 57588, 5391, 41672, 65281, 53567, 52765, 15929, 49150, 11991,
    56330, 45976, 24987, 54562, 26368, 34432, 58838, 2842, 7420, 26607, 19406, 39275, 52286, 53721, 64875, 22079, 62671,
    21378, 27920, 53737, 11490, 25477, 24278, 20755, 5949, 46243, 48910, 52339, 22733, 8063, 19987, 63353, 41291, 48805,
    15845, 15292, 20740, 39609, 31086, 42348, 13121, 53567, 52765, 41397])
  t.same(extractFeatures([], spec), new Int32Array(0))
  t.throws(() => extractFeatures(['x'], { ...spec, featureTemplate: 'v0' }), /feature template v0/)
  t.throws(() => extractFeatures(['x'], { ...spec, featuresPerToken: 3 }), /not supported/)
})

t.test('feature strings', async t => {
  const rows = featureStrings(['New', 'York', 'rocks'], { gazetteer: { 'new york': 'LOC' }, lexicon: { rocks: 'NOUN|VERB' } })
  const named = (row: string[]): Record<string, string> =>
    Object.fromEntries(row.map((f, k) => [TEMPLATES[k], f.slice(f.indexOf('\u001f') + 1)]))
  const first = named(rows[0])
  t.equal(first.word, 'New')
  t.equal(first.norm, 'new')
  t.equal(first['norm-1'], '<s>')
  t.equal(first['norm+2'], 'rocks')
  t.equal(first.gaz, 'B-LOC')
  t.equal(first['first|shape'], 'first|Xx')
  t.equal(first['class+2'], 'NOUN|VERB')
  t.equal(first.ent, '?')
  const last = named(rows[2])
  t.equal(last.gaz, '-')
  t.equal(last['norm+1'], '</s>')
  t.equal(last['gaz-1|gaz|gaz+1'], 'I-LOC|-|</s>')
  t.equal(last['first|shape'], '-')
  t.equal(named(featureStrings(['Q3-4!', 'ÀB'])[0]).flags, 'dhUp')
  t.equal(named(featureStrings(['abc'])[0]).flags, '')
  t.equal(named(featureStrings(['ÀB'])[0]).flags, 'U')
  t.equal(named(featureStrings(['aB'])[0]).flags, 'M')
  t.equal(named(featureStrings(['Москва'])[0]).flags, 'Tn')
  t.equal(named(featureStrings(['😀'])[0]).suf1, '😀', 'suffixes count code points')
  const astral = named(featureStrings(['a😀bc'])[0])
  t.same([astral.suf2, astral.suf3, astral.suf4, astral.pre2, astral.pre3, astral.length], ['bc', '😀bc', 'a😀bc', 'a😀', 'a😀b', '4'],
    'affixes and length in code points around a surrogate pair')
  const plain = named(featureStrings(['Paris'])[0])
  t.same([plain.suf1, plain.suf4, plain.pre3, plain.length], ['s', 'aris', 'par', '5'])
})

t.test('normalize and shape', async t => {
  t.equal(normalize('Q3-2024'), 'q0-0000')
  t.equal(shape("McDonald's", false), "XxXx'x")
  t.equal(shape("McDonald's", true), "XxXxxxx'x")
  t.equal(shape('2024', true), 'dddd')
  t.equal(shape('Ça٣٤½', false), 'Xxd', 'non-ASCII letters and digits (Arabic-Indic, fractions)')
  t.equal(shape('😀😀!', false), '😀!', 'other characters are their own class')
})

t.test('word-class lexicon', async t => {
  const sentences = [
    { words: ['The', 'run', 'run'], tags: ['DET', 'NOUN', 'VERB'] },
    { words: ['the', 'Run', 'x'], tags: ['DET', 'VERB', 'X'] },
  ]
  t.same(buildLexicon(sentences, 2), { run: 'NOUN|VERB', the: 'DET' })
  t.same(buildLexicon(sentences, 2, 0.5), { run: 'VERB', the: 'DET' })
})

t.test('entity lexicons and gazetteer', async t => {
  const sentences = [
    { words: ['Paris', 'is', 'in', 'France'], tags: ['B-LOC', 'O', 'O', 'B-LOC'] },
    { words: ['Paris', 'Hilton', 'is', 'here'], tags: ['B-PER', 'I-PER', 'O', 'O'] },
    { words: ['paris', 'and', 'Paris'], tags: ['B-LOC', 'O', 'B-ORG'] },
    { words: ['a', 'b', 'c', 'd', 'e', 'f', 'g'], tags: ['B-ORG', 'I-ORG', 'I-ORG', 'I-ORG', 'I-ORG', 'I-ORG', 'I-ORG'] },
  ]
  const { entities, gazetteer } = buildEntityLexicons(sentences)
  t.same(entities, { paris: 'LOC|ORG|PER' }, 'always-O and rare words are left out')
  t.same(buildEntityLexicons(sentences, 2, 0.3).entities, { paris: 'LOC' }, 'types under the share drop out')
  t.same(gazetteer, { france: 'LOC', paris: 'LOC', 'paris hilton': 'PER' }, 'majority type; entities longer than 6 tokens are skipped')
  t.same(buildEntityLexicons([{ words: ['X', 'X'], tags: ['B-PER', 'B-LOC'] }]).gazetteer, { x: 'LOC' }, 'ties go alphabetically')
  t.same(buildEntityLexicons([{ words: ['X', 'X'], tags: ['B-LOC', 'B-PER'] }]).gazetteer, { x: 'LOC' }, 'whatever the order')
  t.same(gazetteerTags(['in', 'new', 'york', 'city', 'new'], { 'new york': 'LOC', 'new york city': 'LOC', new: 'ORG' }),
    ['-', 'B-LOC', 'I-LOC', 'I-LOC', 'B-ORG'], 'longest match first')
  t.same(gazetteerTags(['new', 'york', 'city'], { 'new york': 'LOC', york: 'LOC' }), ['B-LOC', 'I-LOC', '-'],
    'only the lengths a first word starts are tried')
})
