// IEEE 754 half-precision (float16) bits, for the taggers' weight tables.
// Node 20 has no Float16Array: values are converted through float32's bits.

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** The float16 bits nearest to `x` (ties to even); beyond 65504 it is infinity. */
export function toFloat16Bits (x: number): number {
  f32[0] = x
  const b = u32[0]
  const sign = (b >>> 16) & 0x8000
  const exponent = (b >>> 23) & 0xff
  const mantissa = b & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  const e = exponent - 127 + 15
  if (e >= 31) return sign | 0x7c00
  if (e <= 0) {
    // Subnormal in float16 (or zero): the implicit bit joins the mantissa,
    // shifted to the fixed exponent -14.
    if (e < -10) return sign
    const m = mantissa | 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = m & ((1 << shift) - 1)
    let h = m >>> shift
    if (rest > half || (rest === half && (h & 1) === 1)) h++
    return sign | h
  }
  let h = sign | (e << 10) | (mantissa >>> 13)
  const rest = mantissa & 0x1fff
  // A carry out of the mantissa moves into the exponent, as it should (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++
  return h
}

/** The value of float16 bits. */
export function fromFloat16Bits (h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const e = (h >>> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) return sign * m * 2 ** -24
  if (e === 31) return m === 0 ? sign * Infinity : NaN
  return sign * (1 + m / 1024) * 2 ** (e - 15)
}

/** Float16 bits of each value of `values`. */
export function toFloat16 (values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(values[i])
  return out
}

/** The values of float16 bits, as float32. */
export function fromFloat16 (bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = fromFloat16Bits(bits[i])
  return out
}
