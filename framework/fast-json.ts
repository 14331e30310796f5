// A JSON reader for the bodies models are sent: mostly arrays of decimal
// numbers ({"inputs": [[0.2022, 0.3173, ...]]}, an OIP tensor's "data").
//
// Why: JSON.parse reads a number with a decimal point by handing its digits
// to a general string-to-double conversion, about 40 ns each. A model's input
// of 256 such numbers took 14 us to parse, for a request the framework serves
// in under 200 us of CPU. Here a number with no exponent is read in the same
// pass as the bytes: its digits as an integer m, divided by 10^k for k digits
// after the point. While m <= 2^53 - 1 and k <= 22, both are exact doubles
// and IEEE division rounds the quotient correctly: the double JSON.parse
// gives, bit for bit (Clinger's fast path). Model inputs written by people
// and by most encoders (4 to 9 significant digits) are all of this kind.
//
// Only a common subset of JSON is read here. Anything else (an exponent, more
// digits than that, a string with an escape, a __proto__ or constructor key, deep
// nesting, any syntax error) returns NOT_READ, and the caller parses the text
// as before (fastify's JSON parser, with its prototype-poisoning checks), so
// errors and edge cases keep their one path. The bytes are valid UTF-8 (the
// caller checked), so a string without escapes is its bytes decoded.
//
// One function with an explicit stack, so that the loop's state stays in
// local variables: the same reader written as recursive functions sharing
// the position in module variables was slower than JSON.parse.

/** What fastJson returns for a body it leaves to the full parser. */
export const NOT_READ = Symbol('not read')

/** 10^k, exact as doubles up to 10^22. */
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i)
/** Every integer up to this is an exact double, and so is each step of reading it digit by digit. */
const MAX_EXACT = Number.MAX_SAFE_INTEGER
/** Deeper nesting goes to the full parser. */
const MAX_DEPTH = 64

/**
 * `body` (UTF-8 JSON, without a byte order mark) as JSON.parse reads it, or
 * NOT_READ when it is outside the subset read here.
 */
export function fastJson (b: Buffer): unknown {
  const end = b.length
  // Open containers, innermost last, and for each open object its current key.
  const stack: Array<unknown[] | Record<string, unknown>> = []
  const keys: string[] = []
  let wantKey = false
  let pos = 0
  let c = b[pos]
  for (;;) {
    while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
    if (wantKey) {
      // An object's key, then its colon.
      if (c !== 34) return NOT_READ
      const key = readString(b, pos)
      // Prototype poisoning is the full parser's to refuse (or allow).
      if (key === undefined || key === '__proto__' || key === 'constructor') return NOT_READ
      keys[keys.length - 1] = key
      c = b[pos = readEnd]
      while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
      if (c !== 58) return NOT_READ // :
      c = b[++pos]
      while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
      wantKey = false
    }
    // A value.
    let value: unknown
    if (c === 45 || (c >= 48 && c <= 57)) {
      const top = stack[stack.length - 1]
      if (top !== undefined && Array.isArray(top)) {
        // Elements of an array, in a run: the usual body, its numbers.
        pos = readNumbers(b, pos, top)
        if (pos < 0) return NOT_READ
        c = b[pos]
        if (c !== 93) continue // another kind of element comes next
        value = stack.pop()
        c = b[++pos]
      } else {
        value = readNumber(b, pos)
        if (Number.isNaN(value)) return NOT_READ
        c = b[pos = readEnd]
      }
    } else if (c === 34) { // "
      value = readString(b, pos)
      if (value === undefined) return NOT_READ
      c = b[pos = readEnd]
    } else if (c === 91 || c === 123) { // [ {
      if (stack.length === MAX_DEPTH) return NOT_READ
      const array = c === 91
      c = b[++pos]
      while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
      if (c === (array ? 93 : 125)) { // empty: ] }
        value = array ? [] : {}
        c = b[++pos]
      } else {
        stack.push(array ? [] : {})
        if (!array) {
          keys.push('')
          wantKey = true
        }
        continue
      }
    } else if (c === 116 && b[pos + 1] === 114 && b[pos + 2] === 117 && b[pos + 3] === 101) { // true
      value = true
      c = b[pos += 4]
    } else if (c === 102 && b[pos + 1] === 97 && b[pos + 2] === 108 && b[pos + 3] === 115 && b[pos + 4] === 101) { // false
      value = false
      c = b[pos += 5]
    } else if (c === 110 && b[pos + 1] === 117 && b[pos + 2] === 108 && b[pos + 3] === 108) { // null
      value = null
      c = b[pos += 4]
    } else {
      return NOT_READ
    }
    // The value is complete: into its container, closing each container it ends.
    for (;;) {
      while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
      const depth = stack.length
      if (depth === 0) return pos === end ? value : NOT_READ
      const top = stack[depth - 1]
      if (Array.isArray(top)) {
        top.push(value)
        if (c === 44) break // , another element
        if (c !== 93) return NOT_READ
      } else {
        top[keys[keys.length - 1]] = value
        if (c === 44) { // , another member
          wantKey = true
          break
        }
        if (c !== 125) return NOT_READ
        keys.pop()
      }
      value = stack.pop()
      c = b[++pos]
    }
    c = b[++pos]
  }
}

/** Where the number or string that readNumber or readString read last ends. */
let readEnd = 0

/**
 * The string whose opening quote is b[pos], its end (after the closing
 * quote) in readEnd; undefined when it is not read here (an escape or a
 * control character, both left to the full parser, or no closing quote).
 */
function readString (b: Buffer, pos: number): string | undefined {
  const start = ++pos
  let ascii = true
  for (let c = b[pos]; c !== 34; c = b[++pos]) {
    if (c === 92 || c < 32 || c === undefined) return undefined // \, a control character, the end
    if (c >= 128) ascii = false
  }
  readEnd = pos + 1
  return b.toString(ascii ? 'latin1' : 'utf8', start, pos)
}

/**
 * The number whose first byte is b[pos] (a digit or '-'), its end in
 * readEnd; NaN when it is not read here (an exponent, digits that make
 * an integer above MAX_EXACT, more than 22 after the point, or not JSON).
 */
function readNumber (b: Buffer, pos: number): number {
  let c = b[pos]
  const negative = c === 45
  if (negative) c = b[++pos]
  const first = pos
  let m = 0
  while (c >= 48 && c <= 57) {
    m = m * 10 + (c - 48)
    c = b[++pos]
  }
  const digits = pos - first
  // JSON: at least one digit, and no leading zero before another digit.
  if (digits === 0 || (digits > 1 && b[first] === 48)) return NaN
  let scale = 0
  if (c === 46) { // .
    const point = ++pos
    c = b[pos]
    while (c >= 48 && c <= 57) {
      m = m * 10 + (c - 48)
      c = b[++pos]
    }
    scale = pos - point
    if (scale === 0) return NaN
  }
  if (c === 101 || c === 69 || m > MAX_EXACT || scale >= POW10.length) return NaN // e, E
  readEnd = pos
  const v = scale === 0 ? m : m / POW10[scale]
  return negative ? -v : v
}

/**
 * An array's elements from b[pos] (a number's first byte) into `out`, as long
 * as they are numbers: returns the position of the array's ] or of the first
 * element that is not a number; -1 when one is not read here.
 */
function readNumbers (b: Buffer, pos: number, out: unknown[]): number {
  for (;;) {
    const v = readNumber(b, pos)
    if (Number.isNaN(v)) return -1
    out.push(v)
    pos = readEnd
    let c = b[pos]
    while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
    if (c === 93) return pos // ]
    if (c !== 44) return -1 // ,
    c = b[++pos]
    while (c === 32 || c === 10 || c === 13 || c === 9) c = b[++pos]
    if (c === 93) return -1 // [1,]
    if (!(c === 45 || (c >= 48 && c <= 57))) return pos
  }
}
