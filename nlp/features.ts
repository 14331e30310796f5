// Feature extraction: tokens -> hashed feature ids, a fixed number per token.
//
// Every template below yields exactly one feature string per token, hashed with
// FNV-1a into [1, buckets). Id 0 is reserved for padding: its row in the
// weight table stays zero, so padded positions of a batch score nothing. The
// template is versioned (FEATURE_TEMPLATE_VERSION, recorded in each model's
// config.json): any change to the strings below, to the hash or to the bucket
// mapping needs a new version and retrained models.
import { fnv1a32 } from './hash.ts'

export const FEATURE_TEMPLATE_VERSION = 'v1'

/** Names of the templates, in the order of the ids of one token. */
export const TEMPLATES = [
  'bias', 'word', 'norm', 'suf1', 'suf2', 'suf3', 'suf4', 'pre1', 'pre2', 'pre3',
  'shape', 'longshape', 'norm-1', 'norm-2', 'norm+1', 'norm+2', 'suf3-1', 'suf3+1',
  'shape-1', 'shape+1', 'shape-2', 'shape+2', 'norm-1|norm', 'norm|norm+1', 'norm-1|norm+1',
  'shape-1|shape|shape+1', 'flags', 'first|shape', 'length', 'suf2-1|suf2',
] as const

export const FEATURES_PER_TOKEN = TEMPLATES.length

export interface FeatureSpec {
  featureTemplate: string
  buckets: number
  featuresPerToken: number
}

/** Lowercase with every decimal digit mapped to 0 ("Q3" -> "q0"). */
export function normalize (word: string): string {
  return word.toLowerCase().replace(/\p{Nd}/gu, '0')
}

function charClass (c: string): string {
  if (/\p{Lu}/u.test(c)) return 'X'
  if (/\p{L}/u.test(c)) return 'x'
  if (/\p{N}/u.test(c)) return 'd'
  return c
}

/**
 * Word shape over code points: X upper, x other letters, d digits, other
 * characters kept. `long` caps runs of one class at 4 ("Xxxxx"); the short
 * form collapses runs ("Xx"). "McDonald's" -> "XxXxxxx'x" / "XxXx'x".
 */
export function shape (word: string, long: boolean): string {
  let out = ''
  let last = ''
  let run = 0
  for (const c of word) {
    const k = charClass(c)
    run = k === last ? run + 1 : 1
    last = k
    if (run === 1 || (long && run <= 4)) out += k
  }
  return out
}

function flags (word: string): string {
  let f = ''
  if (/\p{N}/u.test(word)) f += 'd'
  if (word.includes('-')) f += 'h'
  if (/\p{Lu}/u.test(word)) f += /\p{Ll}/u.test(word) ? (/^\p{Lu}/u.test(word) ? 'T' : 'M') : 'U'
  if (/[\p{P}\p{S}]/u.test(word)) f += 'p'
  if (/[^\p{Script=Latin}\p{Script=Common}\p{Script=Inherited}]/u.test(word)) f += 'n'
  return f
}

function suffix (s: string, n: number): string {
  const cps = Array.from(s)
  return cps.slice(Math.max(0, cps.length - n)).join('')
}

function prefix (s: string, n: number): string {
  return Array.from(s).slice(0, n).join('')
}

/** Maps a feature string to a bucket id in [1, buckets); 0 is padding. */
export function bucketOf (feature: string, buckets: number): number {
  return 1 + (fnv1a32(feature) % (buckets - 1))
}

/** The feature strings of every token, FEATURES_PER_TOKEN of them per token. */
export function featureStrings (words: readonly string[]): string[][] {
  const T = words.length
  const norm = words.map(normalize)
  const sh = words.map(w => shape(w, false))
  const nAt = (i: number): string => (i < 0 ? '<s>' : i >= T ? '</s>' : norm[i])
  const shAt = (i: number): string => (i < 0 ? '<s>' : i >= T ? '</s>' : sh[i])
  const out: string[][] = []
  for (let i = 0; i < T; i++) {
    const w = words[i]
    const n = norm[i]
    const values = [
      '', w, n, suffix(n, 1), suffix(n, 2), suffix(n, 3), suffix(n, 4), prefix(n, 1), prefix(n, 2), prefix(n, 3),
      sh[i], shape(w, true), nAt(i - 1), nAt(i - 2), nAt(i + 1), nAt(i + 2),
      suffix(nAt(i - 1), 3), suffix(nAt(i + 1), 3),
      shAt(i - 1), shAt(i + 1), shAt(i - 2), shAt(i + 2),
      `${nAt(i - 1)}|${n}`, `${n}|${nAt(i + 1)}`, `${nAt(i - 1)}|${nAt(i + 1)}`,
      `${shAt(i - 1)}|${sh[i]}|${shAt(i + 1)}`, flags(w), i === 0 ? `first|${sh[i]}` : '-',
      String(Math.min(Array.from(w).length, 12)), `${suffix(nAt(i - 1), 2)}|${suffix(n, 2)}`,
    ]
    out.push(values.map((v, k) => `${k}\u001f${v}`))
  }
  return out
}

/**
 * Hashed feature ids, row-major [T][FEATURES_PER_TOKEN], all in [1, buckets).
 * Throws if the spec asks for a template version this code does not implement.
 */
export function extractFeatures (words: readonly string[], spec: FeatureSpec): Int32Array {
  if (spec.featureTemplate !== FEATURE_TEMPLATE_VERSION || spec.featuresPerToken !== FEATURES_PER_TOKEN) {
    throw new Error(`feature template ${spec.featureTemplate} with ${spec.featuresPerToken} features per token ` +
      `is not supported (this code implements ${FEATURE_TEMPLATE_VERSION} with ${FEATURES_PER_TOKEN})`)
  }
  const strings = featureStrings(words)
  const out = new Int32Array(words.length * FEATURES_PER_TOKEN)
  let k = 0
  for (const row of strings) for (const f of row) out[k++] = bucketOf(f, spec.buckets)
  return out
}
