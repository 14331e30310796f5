// Where the corpora live and how each is read, for `npm run train` and
// `npm run eval`. The data directory is --data DIR, else $DATA_DIR, else
// ../shared/data relative to the repository root.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { readConllu, readIob, type TaggedSentence } from '../nlp/corpus.ts'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** Stops the script with exit status 2: for a bad flag, before anything is read or written. */
export function usageError (script: string, message: string, flags: readonly string[]): never {
  console.error(`npm run ${script}: ${message}\n(flags: ${flags.map(f => `--${f}`).join(' ')}, each with a value)`)
  process.exit(2)
}

/**
 * The `--name VALUE` (or `--name=VALUE`) flags of a script, of those it
 * takes. A flag it does not take, or one without its value, stops it: when
 * they were ignored, a mistyped flag ('--epoch 5') had `npm run train`
 * overwrite the committed models with a model trained otherwise than asked.
 */
export function parseFlags<N extends string> (script: string, argv: string[], names: readonly N[]): Partial<Record<N, string>> {
  const options = Object.fromEntries(names.map(n => [n, { type: 'string' as const }]))
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Partial<Record<N, string>>
  } catch (err) {
    return usageError(script, (err as Error).message, names)
  }
}

/** --data DIR, else $DATA_DIR, else ../shared/data beside the repository. */
export function dataDir (flag: string | undefined): string {
  const dir = resolve(flag ?? process.env.DATA_DIR ?? join(REPO_ROOT, '..', 'shared', 'data'))
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
/** The NER corpora `--ner-corpora` names (UNER's train part is always used; --in-domain-repeat 0 leaves it out). */
export const NER_CORPORA = ['uner', 'btc', 'wnut']

export function nerData (dir: string, inDomainRepeat = 1, corpora = NER_CORPORA): Record<'train' | 'dev' | 'test', TaggedSentence[]> & { sources: Record<string, number> } {
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
