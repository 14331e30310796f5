import t from 'tap'
import { readFileSync } from 'node:fs'
import { NER_LABEL_MAP, readConllu, readIob, repairBio } from '../../nlp/corpus.ts'

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/nlp/${name}`, import.meta.url), 'utf8')

t.test('CoNLL-U: syntactic words and UPOS, multiword tokens skipped', async t => {
  const text = [
    '# newdoc id = d1',
    '# text = I don\'t.',
    '1\tI\tI\tPRON\t_\t_\t_\t_\t_\t_',
    '2-3\tdon\'t\t_\t_\t_\t_\t_\t_\t_\t_',
    '2\tdo\tdo\tAUX\t_\t_\t_\t_\t_\t_',
    '3\tn\'t\tnot\tPART\t_\t_\t_\t_\t_\t_',
    '3.1\tx\tx\tX\t_\t_\t_\t_\t_\t_',
    '4\t.\t.\tPUNCT\t_\t_\t_\t_\t_\t_',
    '',
    '',
    '1\tOk\tok\tINTJ\t_\t_\t_\t_\t_\t_',
  ].join('\n')
  t.same(readConllu(text), [
    { words: ['I', 'do', "n't", '.'], tags: ['PRON', 'AUX', 'PART', 'PUNCT'], doc: 'd1', text: "I don't." },
    { words: ['Ok'], tags: ['INTJ'], doc: 'd1' },
  ])
  const slice = readConllu(fixture('ewt-train-slice.conllu'))
  t.equal(slice.length, 250)
  t.ok(slice.every(s => s.words.length === s.tags.length && s.doc !== undefined))
})

t.test('IOB2 column files with label mapping and BIO repair', async t => {
  const uner = readIob(fixture('uner-dev-slice.iob2'), 1, 2)
  t.equal(uner.length, 150)
  t.ok(uner[0].doc?.startsWith('answers-'))
  const tags = new Set(uner.flatMap(s => s.tags))
  t.ok([...tags].every(x => /^(O|[BI]-(PER|ORG|LOC))$/.test(x)))
  const wnut = readIob(fixture('wnut17-slice.conll'), 0, 1)
  t.equal(wnut.length, 60)
  const wtags = new Set(wnut.flatMap(s => s.tags))
  t.ok(wtags.has('B-PER') && wtags.has('B-LOC') && wtags.has('B-ORG'))
  t.ok([...wtags].every(x => /^(O|[BI]-(PER|ORG|LOC))$/.test(x)), 'product and creative-work dropped')
  t.same(readIob('#tag\tO\r\nx\tB-product\r\ny\tI-product\r\n', 0, 1), [{ words: ['#tag', 'x', 'y'], tags: ['O', 'O', 'O'] }],
    'a token starting with # is not a comment; CRLF accepted')
  t.throws(() => readIob('a\n', 0, 1), /malformed line/)
})

t.test('label map and BIO repair', async t => {
  t.same(['PER', 'person', 'LOC', 'location', 'ORG', 'corporation', 'group', 'product', 'creative-work', 'MISC'].map(NER_LABEL_MAP),
    ['PER', 'PER', 'LOC', 'LOC', 'ORG', 'ORG', 'ORG', null, null, null])
  t.same(repairBio(['I-PER', 'I-PER', 'O', 'I-LOC', 'B-ORG', 'I-LOC']), ['B-PER', 'I-PER', 'O', 'B-LOC', 'B-ORG', 'B-LOC'])
})
