// Readers for the training corpora: CoNLL-U (UD EWT) and column IOB2 files
// (UNER, Broad Twitter Corpus, WNUT17), plus the NER label mapping.

export interface TaggedSentence {
  words: string[]
  tags: string[]
  /** Document id when the file marks documents (`# newdoc id = ...`). */
  doc?: string
  /** The raw sentence text, when the file gives it (`# text = ...`). */
  text?: string
}

/** UPOS-tagged sentences of a CoNLL-U file: syntactic words, so multiword tokens and empty nodes are skipped. */
export function readConllu (text: string): TaggedSentence[] {
  const out: TaggedSentence[] = []
  let cur: TaggedSentence = { words: [], tags: [] }
  let doc: string | undefined
  for (const line of text.split('\n')) {
    if (line.startsWith('# newdoc id = ')) { doc = line.slice(14).trim(); continue }
    if (line.startsWith('# text = ')) { cur.text = line.slice(9); continue }
    if (line.startsWith('#')) continue
    if (line.trim() === '') {
      if (cur.words.length > 0) out.push(cur)
      cur = { words: [], tags: [], doc }
      continue
    }
    const cols = line.split('\t')
    if (!/^\d+$/.test(cols[0])) continue
    cur.words.push(cols[1])
    cur.tags.push(cols[3])
    cur.doc ??= doc
  }
  if (cur.words.length > 0) out.push(cur)
  return out
}

/** Maps a corpus's entity type to PER/ORG/LOC, or null to drop it (tag O). */
export type LabelMap = (type: string) => string | null

/**
 * The mapping used for all NER corpora. UNER and BTC already use PER/ORG/LOC.
 * WNUT17: person -> PER, location -> LOC, corporation and group -> ORG (UNER's
 * ORG covers companies, institutions, teams and bands); product and
 * creative-work have no UNER counterpart and are dropped.
 */
export const NER_LABEL_MAP: LabelMap = type => {
  switch (type) {
    case 'PER': case 'person': return 'PER'
    case 'LOC': case 'location': return 'LOC'
    case 'ORG': case 'corporation': case 'group': return 'ORG'
    default: return null
  }
}

/**
 * Sentences of a column file with the token in column `tokenCol` and the IOB2
 * tag in `tagCol` (0-based), blank lines between sentences. Lines starting
 * with "# " and without enough columns are comments. Tags are mapped with
 * `map` and repaired to valid BIO (an I- that does not continue an entity of
 * the same type becomes B-).
 */
export function readIob (text: string, tokenCol: number, tagCol: number, map: LabelMap = NER_LABEL_MAP): TaggedSentence[] {
  const out: TaggedSentence[] = []
  let cur: TaggedSentence = { words: [], tags: [] }
  let doc: string | undefined
  const flush = (): void => {
    if (cur.words.length > 0) out.push({ ...cur, tags: repairBio(cur.tags) })
    cur = { words: [], tags: [], doc }
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    const cols = line.split('\t')
    if (line.startsWith('# ') && cols.length <= tagCol) {
      if (line.startsWith('# newdoc id = ')) { doc = line.slice(14).trim(); cur.doc = doc }
      continue
    }
    if (line.trim() === '') { flush(); continue }
    if (cols.length <= tagCol) throw new Error(`malformed line: ${JSON.stringify(line)}`)
    const tag = cols[tagCol].trim()
    let mapped = 'O'
    if (tag !== 'O') {
      const label = map(tag.slice(2))
      if (label !== null) mapped = `${tag.slice(0, 2)}${label}`
    }
    cur.words.push(cols[tokenCol])
    cur.tags.push(mapped)
  }
  flush()
  return out
}

/** Makes a BIO sequence valid: an I-X not preceded by B-X or I-X becomes B-X. */
export function repairBio (tags: readonly string[]): string[] {
  return tags.map((tag, i) => {
    if (!tag.startsWith('I-')) return tag
    const prev = i > 0 ? tags[i - 1] : 'O'
    return prev.slice(2) === tag.slice(2) && prev !== 'O' ? tag : `B-${tag.slice(2)}`
  })
}
