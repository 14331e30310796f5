import t, { type Test } from 'tap'
import { tokenize, type Token } from '../../nlp/tokenize.ts'

const texts = (s: string): string[] => tokenize(s).map(x => x.text)

// Every token must be the exact slice of the input at its offsets.
function checkOffsets (t: Test, s: string, tokens: Token[]): void {
  for (const tok of tokens) t.equal(s.slice(tok.start, tok.end), tok.text, `offsets of ${JSON.stringify(tok.text)}`)
}

t.test('punctuation and whitespace runs', async t => {
  t.same(texts('Hello,   world!\t\n How are you?'), ['Hello', ',', 'world', '!', 'How', 'are', 'you', '?'])
  t.same(texts('Wait...!!! --ok?! **'), ['Wait', '...!!!', '--', 'ok', '?!', '**'])
  t.same(texts(''), [])
  t.same(texts(' \t\n\u00a0\u2003 '), [])
  t.same(tokenize('  a  b '), [{ text: 'a', start: 2, end: 3 }, { text: 'b', start: 5, end: 6 }])
})

t.test('contractions split as in UD EWT', async t => {
  t.same(texts("I don't know, can't you? It's Bush's."),
    ['I', 'do', "n't", 'know', ',', 'ca', "n't", 'you', '?', 'It', "'s", 'Bush', "'s", '.'])
  t.same(texts("won't I'm we're they've you'll he'd"), ['wo', "n't", 'I', "'m", 'we', "'re", 'they', "'ve", 'you', "'ll", 'he', "'d"])
  t.same(texts('I\u2019m fine'), ['I', '\u2019m', 'fine'], 'curly apostrophe')
  t.same(texts('gonna wanna Cannot dont wont'), ['gon', 'na', 'wan', 'na', 'Can', 'not', 'do', 'nt', 'wo', 'nt'])
  t.same(texts("O'Neill rock'n'roll n't"), ["O'Neill", "rock'n'roll", "n't"], 'other apostrophes stay inside the word')
  const s = "Don't"
  checkOffsets(t, s, tokenize(s))
})

t.test('words named like Object.prototype members are words', async t => {
  const s = 'The Constructor of __proto__ and toString hasOwnProperty'
  t.same(texts(s), ['The', 'Constructor', 'of', '__proto__', 'and', 'toString', 'hasOwnProperty'])
  checkOffsets(t, s, tokenize(s))
})

t.test('URLs and e-mail addresses', async t => {
  t.same(texts('see https://example.com/a_(b)?x=1&y=2. ok'), ['see', 'https://example.com/a_(b)?x=1&y=2', '.', 'ok'])
  t.same(texts('(www.example.org)'), ['(', 'www.example.org', ')'], 'unbalanced closing parenthesis is not part of the URL')
  t.same(texts('mail bob.smith+tag@mail.example.co.uk!'), ['mail', 'bob.smith+tag@mail.example.co.uk', '!'])
  t.same(texts('@user #tag #1'), ['@user', '#tag', '#', '1'])
  t.same(texts('<mailto:ann@x.io>'), ['<', 'mailto:ann@x.io', '>'])
})

t.test('numbers, hyphens and abbreviations', async t => {
  t.same(texts('3.14 1,000 10:30 12/25/2008 $5 10% -3'), ['3.14', '1,000', '10:30', '12/25/2008', '$', '5', '10', '%', '-', '3'])
  t.same(texts('long-term well-known'), ['long', '-', 'term', 'well', '-', 'known'])
  t.same(texts('e-mail non-stop Anti-war co-'), ['e-mail', 'non-stop', 'Anti-war', 'co', '-'], 'prefixes keep their hyphen')
  t.same(texts('call 713-853-3989 or 555-1234'), ['call', '713-853-3989', 'or', '555-1234'])
  t.same(texts('the U.S. e.g. 10am'), ['the', 'U.S.', 'e.g.', '10am'])
  t.same(texts('Dr. Smith met J. R. Ewing on Sat. etc.'), ['Dr.', 'Smith', 'met', 'J.', 'R.', 'Ewing', 'on', 'Sat.', 'etc', '.'])
  t.same(texts('plan B.'), ['plan', 'B', '.'], 'a final capital is not an initial')
  t.same(texts('open notes.doc on Space.com. Done.Then'), ['open', 'notes.doc', 'on', 'Space.com', '.', 'Done', '.', 'Then'])
})

t.test('emoticons', async t => {
  t.same(texts('ok :) :-D ;P (: <3 :(('), ['ok', ':)', ':-D', ';P', '(:', '<3', ':(', '('])
  t.same(texts('Note:Done'), ['Note', ':', 'Done'], 'not an emoticon before a letter')
})

t.test('emoji stay whole, astral offsets are UTF-16 units', async t => {
  const s = 'family 👨‍👩‍👧‍👦 thumbs 👍🏽 flag 🇫🇷 key 1️⃣ ok😀!'
  const toks = tokenize(s)
  t.same(toks.map(x => x.text), ['family', '👨‍👩‍👧‍👦', 'thumbs', '👍🏽', 'flag', '🇫🇷', 'key', '1️⃣', 'ok', '😀', '!'])
  checkOffsets(t, s, toks)
  t.same(tokenize('😀a'), [{ text: '😀', start: 0, end: 2 }, { text: 'a', start: 2, end: 3 }])
  t.same(texts('𝐀𝐁𝐂 𠀋'), ['𝐀𝐁𝐂', '𠀋'], 'astral letters')
  for (const tok of toks) {
    const first = tok.text.charCodeAt(0)
    t.notOk(first >= 0xdc00 && first <= 0xdfff, 'no token starts with a low surrogate')
  }
})

t.test('combining marks and right-to-left scripts', async t => {
  t.same(texts('cafe\u0301 nai\u0308ve'), ['cafe\u0301', 'nai\u0308ve'], 'combining marks stay on their base letter')
  t.same(texts('\u0301x'), ['\u0301x'], 'a leading combining mark is kept')
  t.same(texts('مرحبا بالعالم، שלום עולם.'), ['مرحبا', 'بالعالم', '،', 'שלום', 'עולם', '.'])
  t.same(texts('\u200fשלום\u200e abc'), ['שלום', 'abc'], 'bidi marks are separators')
  t.same(texts('می\u200cخواهم'), ['می\u200cخواهم'], 'ZWNJ inside a Persian word')
  t.same(texts('हिन्दी'), ['हिन्दी'], 'Devanagari with virama')
})

t.test('NUL, control characters and lone surrogates do not crash', async t => {
  const s = 'a\u0000b \ud800 x\udc00y\u0007z \ud83d'
  const toks = tokenize(s)
  t.same(toks.map(x => x.text), ['a', 'b', '\ud800', 'x', '\udc00', 'y', 'z', '\ud83d'])
  checkOffsets(t, s, toks)
  t.same(texts('\u0000\u0000'), [])
  t.same(texts('\u2603\u0301 \u00a9'), ['\u2603\u0301', '\u00a9'], 'symbol with a mark, symbols')
  t.same(texts('\u0e01'), ['\u0e01'], 'Thai letter')
  t.same(texts('\u3000\u4e2d\u6587'), ['\u4e2d\u6587'], 'ideographs, ideographic space')
  t.same(texts('a\u{E0001}b'), ['a', 'b'], 'an astral format character (LANGUAGE TAG, invisible) separates, its surrogates never split')
})

t.test('offsets hold for a mixed text', async t => {
  const s = "Hi 👋🏾! Email me: ann@x.io or visit http://x.io/a?b=c — it's 100% free :) \u05e9\u05dc\u05d5\u05dd"
  checkOffsets(t, s, tokenize(s))
})

t.test('time stays linear on long runs that almost match URLs or e-mails', async t => {
  // Unbounded patterns rescanned from every position took seconds here.
  for (const unit of ['a-', 'a_.', 'a.b-', 'x@', 'http://x' + ')'.repeat(10)]) {
    const s = unit.repeat(Math.ceil(100_000 / unit.length))
    const t0 = performance.now()
    const n = tokenize(s).length
    const ms = performance.now() - t0
    t.ok(ms < 1000, `${JSON.stringify(unit)} x ${s.length / unit.length}: ${n} tokens in ${ms.toFixed(0)} ms`)
  }
  t.same(texts('see (http://x.org/a)) (http://x.org/b_(c))'), ['see', '(', 'http://x.org/a', '))', '(', 'http://x.org/b_(c)', ')'])
})

t.test('a URL ends at a separator the tokenizer splits on elsewhere (zero-width space, NUL, NEL, bidi marks)', async t => {
  for (const sep of ['\u200b', '\u0000', '\u0085', '\u202e', '\u2066', '\u2060', '\u200e', '\u0007']) {
    const s = `see https://example.com/a${sep}next`
    const tokens = tokenize(s)
    t.same(tokens.map(x => x.text), ['see', 'https://example.com/a', 'next'], JSON.stringify(sep))
    checkOffsets(t, s, tokens)
  }
})

t.test('a soft hyphen inside a word keeps it whole, as in UD EWT ("basic\u00adally" is one token)', async t => {
  const s = 'Angela Mer\u00adkel visited Aus\u00adtra\u00adlia, basic\u00adally. Mer\u00ad end'
  const tokens = tokenize(s)
  t.same(tokens.map(x => x.text), ['Angela', 'Mer\u00adkel', 'visited', 'Aus\u00adtra\u00adlia', ',', 'basic\u00adally', '.', 'Mer', 'end'], 'at the end of a word it separates')
  checkOffsets(t, s, tokens)
  t.same(texts("Mer\u00adkel's"), ['Mer\u00adkel', "'s"])
  // After an internal apostrophe too.
  t.same(texts("O'Con\u00adnor said"), ["O'Con\u00adnor", 'said'])
  t.same(texts("O'Con\u2060nor said"), ["O'Con\u2060nor", 'said'])
})

t.test('a word joiner inside a word does not split it (between words it separates)', async t => {
  const s = 'Barack Obama visited Par\u2060is \u2060 today\u2060.'
  const tokens = tokenize(s)
  t.same(tokens.map(x => x.text), ['Barack', 'Obama', 'visited', 'Par\u2060is', 'today', '.'])
  checkOffsets(t, s, tokens)
})

t.test('subdivision flags (emoji tag sequences: England, Scotland, Wales) stay whole', async t => {
  const england = '\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}'
  const scotland = '\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}'
  const s = `Go ${england}! ${scotland}${scotland} Wales`
  const toks = tokenize(s)
  t.same(toks.map(x => x.text), ['Go', england, '!', scotland, scotland, 'Wales'])
  checkOffsets(t, s, toks)
  t.same(texts('\u{1F3F4} flag'), ['\u{1F3F4}', 'flag'], 'the black flag alone')
})

t.test('invisible (default-ignorable) characters outside a word or emoji are separators, not tokens', async t => {
  const cases: Array<[string, string[]]> = [
    ['Mer\u00ad kel', ['Mer', 'kel']], // a soft hyphen at the end of a word
    ['a \u00ad b', ['a', 'b']],
    ['\u0633\u0644\u0627\u0645\u061c Paris\u061c', ['\u0633\u0644\u0627\u0645', 'Paris']], // Arabic letter mark, a bidi mark
    ['x \u200d y \u200c z', ['x', 'y', 'z']], // joiners between words
    ['ok!\ufe0f', ['ok', '!']], // a variation selector after punctuation
    ['a \u034f b \u180e c \u2065 d \u3164 e', ['a', 'b', 'c', 'd', 'e']],
    ['a \u{E0001}\u{E0065}\u{E006E} b', ['a', 'b']], // tag characters outside an emoji
  ]
  for (const [s, expected] of cases) {
    const toks = tokenize(s)
    t.same(toks.map(x => x.text), expected, JSON.stringify(s))
    checkOffsets(t, s, toks)
  }
  // Inside a word or an emoji they stay where they are.
  t.same(texts('Mer\u00adkel \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u{1F468}\u200d\u{1F469} \u2764\ufe0f'), ['Mer\u00adkel', '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645', '\u{1F468}\u200d\u{1F469}', '\u2764\ufe0f'])
})
