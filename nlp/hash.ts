// FNV-1a, 32-bit, over the UTF-16 code units of a string. Used to hash feature
// strings into buckets; it must never change for a given feature template
// version, since the committed models depend on the exact ids it produces.

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * FNV-1a 32-bit hash of the string's UTF-16 code units, as an unsigned
 * integer. `seed` continues a previous hash: fnv1a32(b, fnv1a32(a)) equals
 * fnv1a32(a + b).
 */
export function fnv1a32 (s: string, seed = FNV_OFFSET): number {
  let h = seed
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}
