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
// one byte buffer: for the bench tagger's 544 logits (around 0.001-0.01),
// about 20 us against JSON.stringify's 52, and 40-45% fewer bytes to send.
// The fast path below 1 is one loop over the array (writeRun), not a call for
// each number: that made the tagger's logits 1.4-1.6x faster to write (paired
// rounds, old and new code in one process, on a loaded host: 34 us against
// 60; probabilities 1.4x, logits with a quarter of them above 1 1.35x).
//
// How: for x in [1e-6, 2^24), the shortest decimal is m / 10^k with m of at
// most 9 digits (float32's 24 bits need 9) and k >= 0 (below 2^24 every
// integer is a float32 of its own, so no shorter integer reads back as x).
// - Below 1 (a model's usual output: scores, probabilities, logits), in one
//   pass with no branch that goes one way or the other at random (writeRun):
//   x scaled to 8 or 9 digits, its 1, 2 and 3 digits shorter roundings each
//   tested against half of x's float32 spacing, also scaled; the count of
//   those that read back is how many digits to drop. Then 9 digits,
//   zero-padded, are written at once. A branch the CPU guesses wrong costs
//   about as much as a digit, and which way these go (sign, digit count,
//   exponent) is random from one model output to the next.
// - Otherwise, for each digit count p, m is x scaled by 10^k and rounded, and
//   it is kept when Math.fround(m / 10^k) === x: m and 10^k are exact doubles
//   (k <= 22, m < 2^53), so the division is correctly rounded, exactly as a
//   client's parser reads the text m e-k.
// Other magnitudes take toPrecision's slower way; values that are not
// float32 at all (a double the resource computed) are written as doubles.
// Rounding is Math.floor(y + 0.5), not Math.round(y): the same for these
// positive y below 2^52, and V8 compiles Math.round to a call (5 ns).

const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i)
/** 10^-i as doubles (1e-1, 1e-2, ...), down to the fast path's 1e-6. */
const NEG_POW10 = [1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
/** Bytes one number can take: '-0.00000' and 9 digits (the fast path), or a double's text (at most 25). */
const MAX_NUMBER_BYTES = 26
/** The buffer kept between calls grows up to this (answers of about 40,000 numbers); bigger ones allocate their own. */
const MAX_SCRATCH_BYTES = 1024 * 1024
let scratch = Buffer.allocUnsafe(64 * 1024)
let scratchView = viewOf(scratch)

/**
 * `values[start..end)` as a JSON array, each number in the fewest digits that
 * read back as the same float32 (values that are not float32 keep their
 * double text); undefined if one is not a finite number.
 */
export function float32ArrayJson (values: ArrayLike<number>, start = 0, end = values.length): string | undefined {
  const need = 2 + (end - start) * MAX_NUMBER_BYTES
  if (scratch.length < need && need <= MAX_SCRATCH_BYTES) {
    scratch = Buffer.allocUnsafe(Math.max(need, Math.min(scratch.length * 2, MAX_SCRATCH_BYTES)))
    scratchView = viewOf(scratch)
  }
  // A bigger answer gets a buffer of its own, freed with it.
  const out = scratch.length >= need ? scratch : Buffer.allocUnsafe(need)
  const view = out === scratch ? scratchView : viewOf(out)
  out[0] = 91 // [
  // Each number is followed by a comma; the last one's becomes the ].
  let pos = 1
  for (let i = start; i < end; i++) {
    pos = writeRun(out, view, values, i, end, pos)
    i = runEnd
    if (i === end) break
    const v = values[i]
    if (typeof v !== 'number' || !Number.isFinite(v)) return undefined
    pos = writeNumber(out, pos, v)
    out[pos++] = 44 // ,
  }
  if (pos === 1) pos++
  out[pos - 1] = 93 // ]
  return out.toString('latin1', 0, pos)
}

/** A one-number array for float32Json's writeRun (doubles, as the serializer's arrays). */
const ONE = [0.5]

/** One number's JSON text (see float32ArrayJson); undefined if it is not finite. */
export function float32Json (v: number): string | undefined {
  if (!Number.isFinite(v)) return undefined
  ONE[0] = v
  let pos = writeRun(scratch, scratchView, ONE, 0, 1, 0) - 1 // without its comma
  if (runEnd === 0) pos = writeNumber(scratch, 0, v)
  return scratch.toString('latin1', 0, pos)
}

function viewOf (out: Buffer): DataView {
  return new DataView(out.buffer, out.byteOffset, out.byteLength)
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
  let m = Math.floor(v * POW10[k] + 0.5)
  if (Math.fround(m / POW10[k]) === v) {
    while (p > 1 && k > 0) {
      const m2 = Math.floor(v * POW10[k - 1] + 0.5)
      if (Math.fround(m2 / POW10[k - 1]) !== v) break
      p--
      k--
      m = m2
    }
  } else {
    do {
      p++
      k++
      m = Math.floor(v * POW10[k] + 0.5)
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

const F32 = new Float32Array(1)
const U32 = new Uint32Array(F32.buffer)
/**
 * By float32 biased exponent b: for the octaves [2^(b-127), 2^(b-126)) within
 * [1e-6, 1), the K that scales the octave's start into [1e7, 1e8); else -1.
 */
const SCALE = new Int8Array(256).fill(-1)
/** Half the float32 spacing in octave b, times 10^K: exact (a power of 2 times an exact 10^K). */
const HALF_GAP = new Float64Array(256)
for (let b = 0; b < 127; b++) {
  const start = 2 ** (b - 127)
  if (start < 1e-6) continue
  let K = 0
  while (start * 10 ** K < 1e7) K++
  SCALE[b] = K
  HALF_GAP[b] = 2 ** (b - 127 - 24) * 10 ** K
}
/** "0000" to "9999", each as 4 char codes in a little-endian uint32. */
const QUADS = Uint32Array.from({ length: 10000 }, (_, i) =>
  (48 + ((i / 1000) | 0)) | (48 + ((i / 100) | 0) % 10) << 8 | (48 + ((i / 10) | 0) % 10) << 16 | (48 + i % 10) << 24)
const ROUNDED = new Float64Array(3)

/** The index of the first value writeRun did not take (end if it took them all). */
let runEnd = 0

/**
 * The fast path (see the top of the file): writes values[i..end) that are
 * float32s x with 1e-6 <= |x| < 1, each followed by a comma, until one it
 * does not take (another type or magnitude, 3 or more digits fewer than 8, a
 * power of 2, a rounding too near a float32 boundary to tell in doubles, or a
 * text under 9 bytes): returns the end, and that value's index in runEnd, for
 * writeNumber's way. One loop for the run, as the function is too big for V8
 * to inline: a call for each number cost more than its branches.
 */
function writeRun (out: Buffer, view: DataView, values: ArrayLike<number>, i: number, end: number, pos: number): number {
  for (; i < end; i++) {
    const x = values[i]
    if (typeof x !== 'number') break
    F32[0] = x
    const bits = U32[0]
    const b = (bits >>> 23) & 255
    const K = SCALE[b]
    // Not a float32 (NaN and the infinities neither are); a power of 2 (no
    // mantissa bits) has a closer float32 below it than above.
    if (F32[0] !== x || K < 0 || (bits & 0x7fffff) === 0) break
    // X: |x| * 10^K, in [1e7, 2e8), within 1.5e-8 of the exact product.
    // H: half the float32 spacing at that scale, exact and at least 0.59, so
    // X's rounding to an integer reads back as x. A rounding to 10^j, m * 10^j,
    // reads back as x if it is nearer X than H; if it does for j, it does for
    // every j below (a multiple of 10^j+1 is one of 10^j): the count of those
    // that do is the j to use. Too near H to tell: writeNumber's exact way.
    const X = Math.abs(x) * POW10[K]
    const H = HALF_GAP[b]
    const m1 = Math.floor(X / 10 + 0.5)
    const m2 = Math.floor(X / 100 + 0.5)
    const m3 = Math.floor(X / 1000 + 0.5)
    const d1 = Math.abs(m1 * 10 - X)
    const d2 = Math.abs(m2 * 100 - X)
    const d3 = Math.abs(m3 * 1000 - X)
    const j = Number(d1 < H) + Number(d2 < H) + Number(d3 < H)
    const k = K - j // x = n / 10^k, and n < 10^k (x < 1, and 1 is a float32 of its own)
    if (j === 3 || k < 7 || Math.abs(d1 - H) < 1e-6 || Math.abs(d2 - H) < 1e-6 || Math.abs(d3 - H) < 1e-6) break
    ROUNDED[0] = Math.floor(X + 0.5)
    ROUNDED[1] = m1
    ROUNDED[2] = m2
    const n = ROUNDED[j] | 0 // below 2^31: int32 division and remainder from here
    out[pos] = 45 // -, kept only for a negative x
    pos += bits >>> 31
    // "0." then n in k digits, zero-padded: "0." (2) + k >= 9 bytes, so n's 9
    // digits, zero-padded, fit between pos and end. Any zeros before them
    // first: K <= 13 (x >= 1e-6), so at most 4, from pos + 2.
    const stop = pos + 2 + k
    view.setUint32(pos + 2, QUADS[0], true)
    const high = (n / 10000) | 0
    const top = (high / 10000) | 0
    view.setUint32(stop - 4, QUADS[n - high * 10000], true)
    view.setUint32(stop - 8, QUADS[high - top * 10000], true)
    out[stop - 9] = 48 + top
    out[pos] = 48 // 0
    out[pos + 1] = 46 // .
    out[stop] = 44 // ,
    pos = stop + 1
  }
  runEnd = i
  return pos
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
