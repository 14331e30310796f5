// Feature extraction: tokens -> hashed feature ids, a fixed number per token.
//
// Every template below yields exactly one feature string per token, hashed with
// FNV-1a into [1, buckets). Id 0 is reserved for padding: its row in the
// weight table stays zero, so padded positions of a batch score nothing. The
// template is versioned (FEATURE_TEMPLATE_VERSION, recorded in each model's
// config.json): any change to the strings below, to the hash or to the bucket
// mapping needs a new version and retrained models.
import { fnv1a32 } from './hash.ts'

export const FEATURE_TEMPLATE_VERSION = 'v3'

/** Names of the templates, in the order of the ids of one token. */
export const TEMPLATES = [
  'bias', 'word', 'norm', 'suf1', 'suf2', 'suf3', 'suf4', 'pre1', 'pre2', 'pre3',
  'shape', 'longshape', 'norm-1', 'norm-2', 'norm+1', 'norm+2', 'suf3-1', 'suf3+1',
  'shape-1', 'shape+1', 'shape-2', 'shape+2', 'norm-1|norm', 'norm|norm+1', 'norm-1|norm+1',
  'shape-1|shape|shape+1', 'flags', 'first|shape', 'length', 'suf2-1|suf2',
  'class', 'class-1', 'class+1', 'class-2', 'class+2', 'class-1|class|class+1', 'class|shape', 'class-1|norm', 'norm|class+1',
  'ent', 'ent-1', 'ent+1', 'ent|shape', 'gaz', 'gaz|shape', 'gaz-1|gaz|gaz+1',
] as const

export const FEATURES_PER_TOKEN = TEMPLATES.length

const PREFIX_HASHES = TEMPLATES.map((_, k) => fnv1a32(`${k}\u001f`))

export interface FeatureSpec {
  featureTemplate: string
  buckets: number
  featuresPerToken: number
  /**
   * Word classes: normalized word -> the UPOS tags it takes in UD EWT train
   * (its ambiguity class, e.g. "NOUN|VERB"), for frequent words. Words not in
   * the lexicon get the class "?".
   */
  lexicon?: Readonly<Record<string, string>>
  /**
   * Entity classes: normalized word -> the entity types (or O) it takes in
   * the NER training data, e.g. "LOC" or "O|PER"; unknown words get "?".
   */
  entities?: Readonly<Record<string, string>>
  /** Gazetteer: normalized entity token sequence joined by spaces -> entity type. */
  gazetteer?: Readonly<Record<string, string>>
}

/** Longest gazetteer entry an entity may have, in tokens. */
export const GAZETTEER_MAX_TOKENS = 6

// The first word of every gazetteer entry, with the most tokens an entry
// starting with it has: computed once per gazetteer object.
const FIRST_WORDS = new WeakMap<object, Map<string, number>>()

function firstWords (gazetteer: Readonly<Record<string, string>>): Map<string, number> {
  let firsts = FIRST_WORDS.get(gazetteer)
  if (firsts === undefined) {
    firsts = new Map()
    for (const key of Object.keys(gazetteer)) {
      const words = key.split(' ')
      firsts.set(words[0], Math.max(firsts.get(words[0]) ?? 0, words.length))
    }
    FIRST_WORDS.set(gazetteer, firsts)
  }
  return firsts
}

/**
 * Marks gazetteer matches: greedy longest match from left to right, "B-LOC",
 * "I-LOC" on matched tokens, "-" elsewhere.
 */
export function gazetteerTags (norm: readonly string[], gazetteer: Readonly<Record<string, string>>): string[] {
  const out = norm.map(() => '-')
  const firsts = firstWords(gazetteer)
  let i = 0
  while (i < norm.length) {
    let matched = 0
    const longest = firsts.get(norm[i])
    if (longest === undefined) { i++; continue }
    for (let k = Math.min(GAZETTEER_MAX_TOKENS, longest, norm.length - i); k >= 1; k--) {
      const key = norm.slice(i, i + k).join(' ')
      if (Object.hasOwn(gazetteer, key)) {
        const label = gazetteer[key]
        for (let j = 0; j < k; j++) out[i + j] = `${j === 0 ? 'B' : 'I'}-${label}`
        matched = k
        break
      }
    }
    i += Math.max(1, matched)
  }
  return out
}

/** Lowercase with every decimal digit mapped to 0 ("Q3" -> "q0"). */
export function normalize (word: string): string {
  return word.toLowerCase().replace(/\p{Nd}/gu, '0')
}

function charClass (c: string): string {
  const code = c.charCodeAt(0)
  if (code < 128) {
    if (code >= 65 && code <= 90) return 'X'
    if (code >= 97 && code <= 122) return 'x'
    if (code >= 48 && code <= 57) return 'd'
    return c
  }
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
  if (ASCII.test(word)) return asciiFlags(word)
  let f = ''
  if (/\p{N}/u.test(word)) f += 'd'
  if (word.includes('-')) f += 'h'
  if (/\p{Lu}/u.test(word)) f += /\p{Ll}/u.test(word) ? (/^\p{Lu}/u.test(word) ? 'T' : 'M') : 'U'
  if (/[\p{P}\p{S}]/u.test(word)) f += 'p'
  if (/[^\p{Script=Latin}\p{Script=Common}\p{Script=Inherited}]/u.test(word)) f += 'n'
  return f
}

const ASCII = /^[\x21-\x7e]*$/

/**
 * flags() for a word of printable ASCII, most words, without its five Unicode
 * regular expressions: there, \p{N} is 0-9, \p{Lu} A-Z, \p{Ll} a-z, every
 * other character is punctuation or a symbol, and every one is Latin or
 * Common.
 */
function asciiFlags (word: string): string {
  let digit = false
  let upper = false
  let lower = false
  let other = false
  for (let i = 0; i < word.length; i++) {
    const c = word.charCodeAt(i)
    if (c >= 48 && c <= 57) digit = true
    else if (c >= 65 && c <= 90) upper = true
    else if (c >= 97 && c <= 122) lower = true
    else other = true
  }
  let f = digit ? 'd' : ''
  if (word.includes('-')) f += 'h'
  if (upper) {
    const first = word.charCodeAt(0)
    f += lower ? (first >= 65 && first <= 90 ? 'T' : 'M') : 'U'
  }
  return other ? f + 'p' : f
}

const SURROGATE = /[\uD800-\uDFFF]/

/**
 * A word's code points, which affixes and lengths count: the string itself
 * when it has no surrogate pairs (its UTF-16 units are then its code points,
 * and slicing it needs no array of one-character strings), else an array.
 */
function codePoints (s: string): string | string[] {
  return SURROGATE.test(s) ? Array.from(s) : s
}

const text = (cps: string | string[]): string => (typeof cps === 'string' ? cps : cps.join(''))

function suffix (cps: string | string[], n: number): string {
  return text(cps.slice(Math.max(0, cps.length - n)))
}

function prefix (cps: string | string[], n: number): string {
  return text(cps.slice(0, n))
}

/** Maps a feature string to a bucket id in [1, buckets); 0 is padding. */
export function bucketOf (feature: string, buckets: number): number {
  return 1 + (fnv1a32(feature) % (buckets - 1))
}

/** The feature strings of every token, FEATURES_PER_TOKEN of them per token. */
interface WordInfo {
  norm: string
  suf1: string
  suf2: string
  suf3: string
  suf4: string
  pre1: string
  pre2: string
  pre3: string
  shape: string
  longShape: string
  flags: string
  length: string
}

function wordInfo (w: string): WordInfo {
  const norm = normalize(w)
  const cps = codePoints(norm)
  return {
    norm,
    suf1: suffix(cps, 1),
    suf2: suffix(cps, 2),
    suf3: suffix(cps, 3),
    suf4: suffix(cps, 4),
    pre1: prefix(cps, 1),
    pre2: prefix(cps, 2),
    pre3: prefix(cps, 3),
    shape: shape(w, false),
    longShape: shape(w, true),
    flags: flags(w),
    length: String(Math.min(codePoints(w).length, 12)),
  }
}

type Lexicons = Omit<FeatureSpec, 'featureTemplate' | 'buckets' | 'featuresPerToken'>

/**
 * Takes the features of a text, token after token, each token's in template
 * order: one value, or two or three joined by "|". The template below is
 * written once, and each sink makes what it needs of it: the feature strings
 * (featureStrings), or their hashed ids straight from the parts
 * (extractFeatures), with no string built for a joined feature.
 */
interface FeatureSink {
  one (value: string): void
  two (a: string, b: string): void
  three (a: string, b: string, c: string): void
}

/** Gives the sink the value of every template for every token (without the template prefix). */
function featureValues (words: readonly string[], spec: Lexicons, sink: FeatureSink): void {
  const T = words.length
  // Word-level values are computed once per distinct word of the input.
  const cache = new Map<string, WordInfo>()
  const infos = words.map(w => {
    let info = cache.get(w)
    if (info === undefined) { info = wordInfo(w); cache.set(w, info) }
    return info
  })
  const norm = infos.map(x => x.norm)
  const look = (dict: Readonly<Record<string, string>> | undefined, n: string): string =>
    dict !== undefined && Object.hasOwn(dict, n) ? dict[n] : '?'
  const cls = norm.map(n => look(spec.lexicon, n))
  const ent = norm.map(n => look(spec.entities, n))
  const gaz = gazetteerTags(norm, spec.gazetteer ?? {})
  const sh = infos.map(x => x.shape)
  const iAt = (i: number): WordInfo => (i < 0 ? BOS : i >= T ? EOS : infos[i])
  // Each of these, past either end of the text: "<s>" before it, "</s>" after.
  const at = (values: readonly string[], i: number): string => (i < 0 ? '<s>' : i >= T ? '</s>' : values[i])
  for (let i = 0; i < T; i++) {
    const x = infos[i]
    const n = x.norm
    sink.one('') // bias
    sink.one(words[i])
    sink.one(n)
    sink.one(x.suf1)
    sink.one(x.suf2)
    sink.one(x.suf3)
    sink.one(x.suf4)
    sink.one(x.pre1)
    sink.one(x.pre2)
    sink.one(x.pre3)
    sink.one(sh[i])
    sink.one(x.longShape)
    sink.one(at(norm, i - 1))
    sink.one(at(norm, i - 2))
    sink.one(at(norm, i + 1))
    sink.one(at(norm, i + 2))
    sink.one(iAt(i - 1).suf3)
    sink.one(iAt(i + 1).suf3)
    sink.one(at(sh, i - 1))
    sink.one(at(sh, i + 1))
    sink.one(at(sh, i - 2))
    sink.one(at(sh, i + 2))
    sink.two(at(norm, i - 1), n)
    sink.two(n, at(norm, i + 1))
    sink.two(at(norm, i - 1), at(norm, i + 1))
    sink.three(at(sh, i - 1), sh[i], at(sh, i + 1))
    sink.one(x.flags)
    if (i === 0) sink.two('first', sh[i])
    else sink.one('-')
    sink.one(x.length)
    sink.two(iAt(i - 1).suf2, x.suf2)
    sink.one(cls[i])
    sink.one(at(cls, i - 1))
    sink.one(at(cls, i + 1))
    sink.one(at(cls, i - 2))
    sink.one(at(cls, i + 2))
    sink.three(at(cls, i - 1), cls[i], at(cls, i + 1))
    sink.two(cls[i], sh[i])
    sink.two(at(cls, i - 1), n)
    sink.two(n, at(cls, i + 1))
    sink.one(ent[i])
    sink.one(at(ent, i - 1))
    sink.one(at(ent, i + 1))
    sink.two(ent[i], sh[i])
    sink.one(gaz[i])
    sink.two(gaz[i], sh[i])
    sink.three(at(gaz, i - 1), gaz[i], at(gaz, i + 1))
  }
}

const BOS = wordInfo('<s>')
const EOS = wordInfo('</s>')

/** The feature strings of every token: "<template index>\u001f<value>", FEATURES_PER_TOKEN per token. */
export function featureStrings (words: readonly string[], spec: Lexicons = {}): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  const push = (value: string) => {
    row.push(`${row.length}\u001f${value}`)
    if (row.length === FEATURES_PER_TOKEN) {
      rows.push(row)
      row = []
    }
  }
  featureValues(words, spec, {
    one: push,
    two: (a, b) => push(`${a}|${b}`),
    three: (a, b, c) => push(`${a}|${b}|${c}`),
  })
  return rows
}

/**
 * Builds the word-class lexicon from UPOS-tagged sentences: every normalized
 * word seen at least `minCount` times maps to the tags that make up at least
 * `minShare` of its occurrences, sorted and joined with "|".
 */
export function buildLexicon (sentences: ReadonlyArray<{ words: readonly string[], tags: readonly string[] }>, minCount = 5, minShare = 0.1): Record<string, string> {
  const counts = new Map<string, Map<string, number>>()
  for (const s of sentences) {
    s.words.forEach((w, i) => {
      const n = normalize(w)
      let c = counts.get(n)
      if (c === undefined) { c = new Map(); counts.set(n, c) }
      c.set(s.tags[i], (c.get(s.tags[i]) ?? 0) + 1)
    })
  }
  const out: Record<string, string> = {}
  for (const n of [...counts.keys()].sort()) {
    const c = counts.get(n) as Map<string, number>
    let total = 0
    for (const v of c.values()) total += v
    if (total < minCount) continue
    out[n] = [...c.entries()].filter(([, v]) => v >= minShare * total).map(([k]) => k).sort().join('|')
  }
  return out
}

/**
 * Builds the entity lexicons from BIO-tagged sentences: `entities` maps each
 * normalized word seen at least `minCount` times and at least once inside an
 * entity to the types (O included) making up at least `minShare` of its
 * occurrences; `gazetteer` maps every entity's normalized token sequence to
 * its most frequent type (ties: alphabetical).
 */
export function buildEntityLexicons (sentences: ReadonlyArray<{ words: readonly string[], tags: readonly string[] }>, minCount = 2, minShare = 0.2): { entities: Record<string, string>, gazetteer: Record<string, string> } {
  const words = new Map<string, Map<string, number>>()
  const spans = new Map<string, Map<string, number>>()
  const bump = (m: Map<string, Map<string, number>>, key: string, label: string): void => {
    let c = m.get(key)
    if (c === undefined) { c = new Map(); m.set(key, c) }
    c.set(label, (c.get(label) ?? 0) + 1)
  }
  for (const s of sentences) {
    const norm = s.words.map(normalize)
    norm.forEach((n, i) => bump(words, n, s.tags[i] === 'O' ? 'O' : s.tags[i].slice(2)))
    let i = 0
    while (i < norm.length) {
      if (s.tags[i] === 'O') { i++; continue }
      const label = s.tags[i].slice(2)
      let j = i + 1
      while (j < norm.length && s.tags[j] === `I-${label}`) j++
      if (j - i <= GAZETTEER_MAX_TOKENS) bump(spans, norm.slice(i, j).join(' '), label)
      i = j
    }
  }
  const entities: Record<string, string> = {}
  for (const n of [...words.keys()].sort()) {
    const c = words.get(n) as Map<string, number>
    let total = 0
    for (const v of c.values()) total += v
    if (total < minCount || c.get('O') === total) continue
    entities[n] = [...c.entries()].filter(([, v]) => v >= minShare * total).map(([k]) => k).sort().join('|')
  }
  const gazetteer: Record<string, string> = {}
  for (const key of [...spans.keys()].sort()) {
    const c = [...(spans.get(key) as Map<string, number>).entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    gazetteer[key] = c[0][0]
  }
  return { entities, gazetteer }
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
  const out = new Int32Array(words.length * FEATURES_PER_TOKEN)
  const ids = spec.buckets - 1
  let i = 0
  // bucketOf(`${k}\u001f${value}`) for the k-th feature of a token, without
  // building the string: FNV-1a goes on from the hash of its prefix, through
  // a joined feature's parts and their "|".
  const put = (h: number) => {
    out[i] = 1 + (h % ids)
    i++
  }
  const seed = () => PREFIX_HASHES[i % FEATURES_PER_TOKEN]
  featureValues(words, spec, {
    one: a => put(fnv1a32(a, seed())),
    two: (a, b) => put(fnv1a32(b, fnv1a32('|', fnv1a32(a, seed())))),
    three: (a, b, c) => put(fnv1a32(c, fnv1a32('|', fnv1a32(b, fnv1a32('|', fnv1a32(a, seed())))))),
  })
  return out
}
