// Where the corpora live and how each is read, for `npm run train` and
// `npm run eval`. The data directory is --data DIR, else $DATA_DIR, else
// ../shared/data relative to the repository root.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readConllu, readIob, type TaggedSentence } from '../nlp/corpus.ts'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

export function argValue (argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name)
  if (i >= 0) return argv[i + 1]
  const eq = argv.find(a => a.startsWith(`${name}=`))
  return eq?.slice(name.length + 1)
}

export function dataDir (argv: readonly string[]): string {
  const dir = resolve(argValue(argv, '--data') ?? process.env.DATA_DIR ?? join(REPO_ROOT, '..', 'shared', 'data'))
  if (!existsSync(join(dir, 'ud_english_ewt'))) {
    console.error(`corpora not found in ${dir} (expected ud_english_ewt/, uner_english_ewt/, broad_twitter_corpus/, wnut17/): pass --data DIR or set DATA_DIR`)
    process.exit(2)
  }
  return dir
}

const read = (dir: string, ...p: string[]): string => readFileSync(join(dir, ...p), 'utf8')

export function posData (dir: string): Record<'train' | 'dev' | 'test', TaggedSentence[]> {
  const f = (split: string): TaggedSentence[] => readConllu(read(dir, 'ud_english_ewt', `en_ewt-ud-${split}.conllu`))
  return { train: f('train'), dev: f('dev'), test: f('test') }
}

/** NER documents of UNER dev whose index is a multiple of 5 are held out as the dev set. */
export function nerData (dir: string, inDomainRepeat = 1, corpora = ['uner', 'btc', 'wnut']): Record<'train' | 'dev' | 'test', TaggedSentence[]> & { sources: Record<string, number> } {
  const unerDev = readIob(read(dir, 'uner_english_ewt', 'en_ewt-ud-dev.iob2'), 1, 2)
  const unerTest = readIob(read(dir, 'uner_english_ewt', 'en_ewt-ud-test.iob2'), 1, 2)
  const docs = [...new Set(unerDev.map(s => s.doc))]
  const heldOut = new Set(docs.filter((_, i) => i % 5 === 0))
  const unerTrain = unerDev.filter(s => !heldOut.has(s.doc))
  const dev = unerDev.filter(s => heldOut.has(s.doc))
  const btc = corpora.includes('btc')
    ? ['btc.train', 'btc.dev', 'btc.test'].flatMap(f => readIob(read(dir, 'broad_twitter_corpus', f), 0, 1))
    : []
  const wnut = corpora.includes('wnut')
    ? ['wnut17train.conll', 'emerging.dev.conll', 'emerging.test.annotated'].flatMap(f => readIob(read(dir, 'wnut17', f), 0, 1))
    : []
  return {
    train: [...Array.from({ length: inDomainRepeat }, () => unerTrain).flat(), ...btc, ...wnut],
    dev,
    test: unerTest,
    sources: { 'UNER English-EWT dev (4/5 of documents)': unerTrain.length, 'Broad Twitter Corpus (all splits)': btc.length, 'WNUT17 (all splits)': wnut.length },
  }
}
