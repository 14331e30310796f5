// fastJson against JSON.parse: whatever it reads is what JSON.parse gives (every
// number bit for bit, -0 included, keys in the same order), what it does not
// read is NOT_READ, and text that is not JSON is never read.
import t from 'tap'
import { fastJson, NOT_READ } from '../../framework/fast-json.ts'
import { seededRandom } from '../../framework/onnx-builder.ts'

const read = (text: string) => fastJson(Buffer.from(text))
/** What the server's full parser reads: the text as UTF-8 bytes, decoded (a lone surrogate becomes U+FFFD). */
const parse = (text: string): unknown => JSON.parse(Buffer.from(text).toString('utf8'))

/** The first difference between a and b ('' if none): numbers compared with Object.is, keys in order. */
function difference (a: unknown, b: unknown, at = '$'): string {
  if (typeof a === 'number' || typeof b === 'number') return Object.is(a, b) ? '' : `${at}: ${String(a)} against ${String(b)}`
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b ? '' : `${at}: ${String(a)} against ${String(b)}`
  if (Array.isArray(a) !== Array.isArray(b)) return `${at}: array against object`
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  if (ka.join('\u0000') !== kb.join('\u0000')) return `${at}: keys ${ka.join(',')} against ${kb.join(',')}`
  for (const k of ka) {
    const d = difference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`)
    if (d) return d
  }
  return ''
}

const r = seededRandom(7)
const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]
const space = () => pick(['', '', '', ' ', '\n  ', '\t', '\r\n'])

/** A number's text in the subset read here: at most 15 digits, no exponent. */
function subsetNumber (): string {
  const sign = r() < 0.5 ? '-' : ''
  const whole = r() < 0.3 ? '0' : String(1 + Math.floor(r() * 9)) + Array.from({ length: Math.floor(r() * 6) }, () => Math.floor(r() * 10)).join('')
  const room = 15 - whole.length
  const fraction = r() < 0.2 ? '' : '.' + Array.from({ length: 1 + Math.floor(r() * room) }, () => Math.floor(r() * 10)).join('')
  return sign + whole + fraction
}

/** Any JSON number's text: also exponents and more digits than the subset takes. */
function anyNumber (): string {
  const text = r() < 0.5 ? subsetNumber() : String((r() - 0.5) * 10 ** Math.floor(r() * 40 - 20))
  return r() < 0.2 ? `${text}e${pick(['', '+', '-'])}${Math.floor(r() * 30)}` : text
}

/** A string's JSON text; with `escapes`, also escaped characters (outside the subset). */
function stringText (escapes: boolean): string {
  const chars = ['a', 'Z', '0', ' ', 'é', '中', '😀', 'proto', '__', '\u2028', ...(escapes ? ['"', '\\', '\n', '\u0001'] : [])]
  return JSON.stringify(Array.from({ length: Math.floor(r() * 6) }, () => pick(chars)).join(''))
}

/** A random document's text; `subset`: only what fastJson reads. */
function documentText (depth: number, subset: boolean): string {
  const kind = depth > 4 ? Math.floor(r() * 4) : Math.floor(r() * 7)
  switch (kind) {
    case 0: return subset ? subsetNumber() : anyNumber()
    case 1: return stringText(!subset && r() < 0.3)
    case 2: return pick(['true', 'false', 'null'])
    case 3: return subset ? subsetNumber() : anyNumber()
    case 4: case 5: {
      const items = Array.from({ length: Math.floor(r() * 5) }, () => space() + documentText(depth + 1, subset) + space())
      // Long runs of numbers, as model inputs are.
      if (r() < 0.3) items.push(...Array.from({ length: 50 }, () => subsetNumber()))
      return `[${items.join(',')}${items.length === 0 ? space() : ''}]`
    }
    default: {
      const keys = ['a', 'b', 'inputs', 'data', 'name', 'é', '1', '0', 'a']
      if (!subset) keys.push('__proto__', 'constructor', 'a\\nb')
      const members = Array.from({ length: Math.floor(r() * 5) }, () => `${space()}${JSON.stringify(pick(keys)).replace('\\\\n', '\\n')}${space()}:${space()}${documentText(depth + 1, subset)}${space()}`)
      return `{${members.join(',')}${members.length === 0 ? space() : ''}}`
    }
  }
}

t.test('numbers: read bit for bit as JSON.parse reads them, -0 included', async t => {
  let wrong = 0
  const texts = Array.from({ length: 100_000 }, subsetNumber)
  texts.push('0', '-0', '-0.0', '0.1', '0.3', '123456789012345', '1.00000000000000', '0.0000000000000000000001', '9007199254740991',
    '-9007199254740991', '9007199254.740991', '0.9007199254740991', '0.000009007199254740991', '1.797693134862315')
  for (const text of texts) {
    const got = read(`[${text}]`)
    const d = got === NOT_READ ? 'not read' : difference(got, parse(`[${text}]`))
    if (d && wrong++ < 5) t.fail(`${text}: ${d}`)
  }
  t.equal(wrong, 0, `${texts.length} numbers read as JSON.parse reads them`)
  // A number alone, and in an object.
  t.ok(Object.is(read('-0'), -0))
  t.same(read(' {"x": 0.25 } '), { x: 0.25 })
})

t.test('documents in the subset: read, and equal to what JSON.parse gives', async t => {
  let wrong = 0
  for (let i = 0; i < 5_000; i++) {
    const text = space() + documentText(0, true) + space()
    const got = read(text)
    const d = got === NOT_READ ? 'not read' : difference(got, parse(text))
    if (d && wrong++ < 5) t.fail(`${text}: ${d}`)
  }
  t.equal(wrong, 0)
  t.same(read('{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.5,-2,0.125,3]}],"parameters":{"binary_data_output":true}}'),
    { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1.5, -2, 0.125, 3] }], parameters: { binary_data_output: true } })
  t.same(read('["a", 1, 2, {"b": [3, "c", 4]}, 5, [], {}, [6]]'), ['a', 1, 2, { b: [3, 'c', 4] }, 5, [], {}, [6]])
  t.same(read('{"a": 1, "a": 2}'), { a: 2 }, 'a repeated key: the last one, as JSON.parse')
  t.same(Object.keys(read('{"b": 1, "2": 1, "a": 1, "1": 1}') as object), ['1', '2', 'b', 'a'], 'key order as JSON.parse')
})

t.test('any JSON document: what is read is what JSON.parse gives; what is left is NOT_READ', async t => {
  let wrong = 0
  let left = 0
  for (let i = 0; i < 5_000; i++) {
    const text = space() + documentText(0, false) + space()
    const got = read(text)
    if (got === NOT_READ) { left++; continue }
    const d = difference(got, parse(text))
    if (d && wrong++ < 5) t.fail(`${text}: ${d}`)
  }
  t.equal(wrong, 0)
  t.ok(left > 500 && left < 4_500, `some left to the full parser (${left} of 5000), some read`)
})

t.test('outside the subset: left to the full parser', async t => {
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n)
  t.not(read(nested(64)), NOT_READ, '64 levels are read')
  for (const text of [
    '[1e5]', '[1E5]', '[1.5e-3]', '[9007199254740992]', '[9007199254740993]', '[0.30000000000000004]', '[0.00000000000000000000001]', '[0.000000009007199254740991]', '[1.7976931348623157]',
    '[1' + '0'.repeat(400) + ']', '["a\\nb"]', '["\\u0041"]',
    '{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {"x": 1}}}', '{"constructor": 1}', '{"a\\"b": 1}', nested(65),
  ]) t.equal(read(text), NOT_READ, text)
})

t.test('text that is not JSON is never read', async t => {
  for (const text of [
    '', ' ', '[', ']', '[1,]', '[,1]', '[1 2]', '{"a" 1}', '{"a":}', '{"a":1,}', '{a:1}', "{'a':1}", '[01]', '[-01]', '[1.]', '[.5]', '[-]',
    '[+1]', '[1.5.2]', '[0x10]', '[NaN]', '[Infinity]', '[-Infinity]', '[tru]', '[nul]', '[falsey]', '[true false]', '"abc', '["a\u0001b"]',
    '["tab\there"]', '[1] [2]', '[1]x', '{"a":1}}', '[[1]', '{"a":[1}', '[1}', '{"a":1]', '1 2', '--1', '[-.5]', '["a"b]', '{"a":1 "b":2}',
  ]) {
    t.throws(() => JSON.parse(text), text)
    t.equal(read(text), NOT_READ, JSON.stringify(text))
  }
  // Valid documents broken one byte at a time: whatever JSON.parse refuses is
  // not read; whatever it still reads, fastJson reads the same or leaves.
  let wrong = 0
  for (let i = 0; i < 20_000; i++) {
    const text = documentText(0, true)
    const at = Math.floor(r() * (text.length + 1))
    const mutated = pick([
      () => text.slice(0, at) + text.slice(at + 1),
      () => text.slice(0, at) + pick(['"', ',', ':', '[', ']', '{', '}', '-', '.', 'e', '0', '5', ' ', '\\', 'x', '\u0000']) + text.slice(at),
      () => text.slice(0, at) + pick(['"', ',', ':', '[', ']', '{', '}', '-', '.', 'e', '0']) + text.slice(at + 1),
    ])()
    let parsed: unknown = NOT_READ
    try { parsed = parse(mutated) } catch {}
    const got = read(mutated)
    const d = got === NOT_READ ? '' : parsed === NOT_READ ? 'read, but JSON.parse refuses it' : difference(got, parsed)
    if (d && wrong++ < 5) t.fail(`${JSON.stringify(mutated)}: ${d}`)
  }
  t.equal(wrong, 0, '20,000 broken documents')
})
