// JSON text for float32 numbers, each in the fewest digits that read back as
// the same float32: 0.1 rather than 0.10000000149011612, the float32 nearest
// 0.1 written out as a double. A model computes float32; the longer text only
// spells out the float32's binary value in full, which no client needs (a
// client reading 0.1 into a float32 gets back exactly the value the model
// computed, and numpy prints float32 this way too).
//
// Why not JSON.stringify: it writes each number as a double, 17 significant
// digits for most float32 values, and finding those digits is the slow part of
// writing a model's answer. Here the digits come from integer arithmetic into
// one byte buffer: for 544 float32 values, 20 us against 76 (values spread
// over a few powers of ten) or 40 against 52 (the bench tagger's logits,
// around 0.001-0.01), and 40-45% fewer bytes to send.
//
// How: for x in [1e-6, 2^24), the shortest decimal is m / 10^k with m of at
// most 9 digits (float32's 24 bits need 9) and k >= 0 (below 2^24 every
// integer is a float32 of its own, so no shorter integer reads back as x).
// For each digit count p, m is x scaled by 10^k and rounded, and it is kept
// when Math.fround(m / 10^k) === x: m and 10^k are exact doubles (k <= 22,
// m < 2^53), so the division is correctly rounded, exactly as a client's
// parser reads the text m e-k. Other magnitudes take toPrecision's slower
// way; values that are not float32 at all (a double the resource computed)
// are written as doubles.

const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i)
/** 10^-i as doubles (1e-1, 1e-2, ...), down to the fast path's 1e-6. */
const NEG_POW10 = [1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
/** Bytes one number can take: '-0.00000' and 9 digits (the fast path), or a double's text (at most 25). */
const MAX_NUMBER_BYTES = 26
/** The buffer kept between calls grows up to this (answers of about 40,000 numbers); bigger ones allocate their own. */
const MAX_SCRATCH_BYTES = 1024 * 1024
let scratch = Buffer.allocUnsafe(64 * 1024)

/**
 * `values[start..end)` as a JSON array, each number in the fewest digits that
 * read back as the same float32 (values that are not float32 keep their
 * double text); undefined if one is not a finite number.
 */
export function float32ArrayJson (values: ArrayLike<number>, start = 0, end = values.length): string | undefined {
  const need = 2 + (end - start) * MAX_NUMBER_BYTES
  if (scratch.length < need && need <= MAX_SCRATCH_BYTES) scratch = Buffer.allocUnsafe(Math.max(need, Math.min(scratch.length * 2, MAX_SCRATCH_BYTES)))
  // A bigger answer gets a buffer of its own, freed with it.
  const out = scratch.length >= need ? scratch : Buffer.allocUnsafe(need)
  let pos = 0
  out[pos++] = 91 // [
  for (let i = start; i < end; i++) {
    if (i > start) out[pos++] = 44 // ,
    const v = values[i]
    if (typeof v !== 'number' || !Number.isFinite(v)) return undefined
    pos = writeNumber(out, pos, v)
  }
  out[pos++] = 93 // ]
  return out.toString('latin1', 0, pos)
}

/** One number's JSON text (see float32ArrayJson); undefined if it is not finite. */
export function float32Json (v: number): string | undefined {
  if (!Number.isFinite(v)) return undefined
  return scratch.toString('latin1', 0, writeNumber(scratch, 0, v))
}

function writeNumber (out: Buffer, pos: number, v: number): number {
  if (v === 0) { // -0 too, as JSON.stringify writes it
    out[pos++] = 48
    return pos
  }
  if (Math.fround(v) !== v) return writeText(out, pos, '' + v)
  if (v < 0) {
    out[pos++] = 45 // -
    v = -v
  }
  if (!(v >= 1e-6 && v < 16777216)) return writeText(out, pos, slowShortest(v))
  // e: the decimal exponent of v's first digit.
  let e = 0
  if (v >= 1) {
    while (v >= POW10[e + 1]) e++
  } else {
    e = -1
    while (v < NEG_POW10[-e]) e--
  }
  // m / 10^k with p significant digits: start at 8 (the usual count for a
  // model's output; or all of v's integer digits), then fewer while they
  // still read back as v, or more until they do (9 always do).
  let p = Math.max(8, e + 1)
  let k = p - 1 - e
  let m = Math.round(v * POW10[k])
  if (Math.fround(m / POW10[k]) === v) {
    while (p > 1 && k > 0) {
      const m2 = Math.round(v * POW10[k - 1])
      if (Math.fround(m2 / POW10[k - 1]) !== v) break
      p--
      k--
      m = m2
    }
  } else {
    do {
      p++
      k++
      m = Math.round(v * POW10[k])
    } while (p < 9 && Math.fround(m / POW10[k]) !== v)
  }
  // At most 9 digits: an int32 from here on (integer division and remainder
  // instead of floating-point ones, which V8 calls out for). Rounding may
  // have carried into one more digit (9.9999999 -> 10.000000).
  let n = m | 0
  let digits = n >= POW10[p] ? p + 1 : p
  while (k > 0 && n % 10 === 0) {
    n = (n / 10) | 0
    k--
    digits--
  }
  // v = n / 10^k: `digits - k` digits before the point (none: "0.000ddd").
  const before = digits - k
  if (before <= 0) {
    out[pos++] = 48 // 0
    out[pos++] = 46 // .
    for (let z = before; z < 0; z++) out[pos++] = 48
    return writeDigits(out, pos, n, digits)
  }
  if (k === 0) return writeDigits(out, pos, n, digits)
  // k < digits <= 9: 10^k is an int32 too.
  const scale = POW10[k] | 0
  const whole = (n / scale) | 0
  pos = writeDigits(out, pos, whole, before)
  out[pos++] = 46 // .
  return writeDigits(out, pos, n - whole * scale, k)
}

/** "00" to "99" as pairs of char codes. */
const PAIRS = Uint8Array.from({ length: 200 }, (_, i) => 48 + ((i & 1) ? (i >> 1) % 10 : ((i >> 1) / 10) | 0))

/** Writes the int32 n as exactly `width` digits (zero-padded) at pos; returns the end. */
function writeDigits (out: Buffer, pos: number, n: number, width: number): number {
  const end = pos + width
  let i = end
  while (i - pos >= 2) {
    const rest = (n / 100) | 0
    const pair = (n - rest * 100) << 1
    out[--i] = PAIRS[pair + 1]
    out[--i] = PAIRS[pair]
    n = rest
  }
  if (i > pos) out[--i] = 48 + n
  return end
}

function writeText (out: Buffer, pos: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[pos++] = text.charCodeAt(i)
  return pos
}

/** The shortest text for a float32 outside the fast path's range (v > 0). */
function slowShortest (v: number): string {
  for (let p = 1; p < 9; p++) {
    const text = v.toPrecision(p)
    if (Math.fround(Number(text)) === v) return '' + Number(text)
  }
  return '' + Number(v.toPrecision(9))
}
