// First-order Viterbi decoding over emission and transition scores.

export interface Transitions {
  /** Row-major [L][L]: score of moving from label i to label j at index i * L + j. */
  transitions: ArrayLike<number>
  /** Score of starting a sequence with each label, length L. */
  start: ArrayLike<number>
  /** Score of ending a sequence with each label, length L. */
  end: ArrayLike<number>
}

/**
 * Best label sequence for emission scores `emissions` (row-major [T][L], read
 * from `offset`) under the given transitions. Ties go to the lower label index,
 * so results are deterministic. Returns T label indices.
 */
export function viterbi (emissions: ArrayLike<number>, T: number, L: number, tr: Transitions, offset = 0): Int32Array {
  const path = new Int32Array(T)
  if (T === 0) return path
  const { transitions, start, end } = tr
  let prev = new Float64Array(L)
  let cur = new Float64Array(L)
  const back = new Int32Array(T * L)
  for (let j = 0; j < L; j++) prev[j] = start[j] + emissions[offset + j]
  for (let t = 1; t < T; t++) {
    const row = offset + t * L
    for (let j = 0; j < L; j++) {
      let best = -Infinity
      let arg = 0
      for (let i = 0; i < L; i++) {
        const s = prev[i] + transitions[i * L + j]
        if (s > best) { best = s; arg = i }
      }
      cur[j] = best + emissions[row + j]
      back[t * L + j] = arg
    }
    const tmp = prev; prev = cur; cur = tmp
  }
  let best = -Infinity
  let arg = 0
  for (let j = 0; j < L; j++) {
    const s = prev[j] + end[j]
    if (s > best) { best = s; arg = j }
  }
  path[T - 1] = arg
  for (let t = T - 1; t > 0; t--) path[t - 1] = back[t * L + path[t]]
  return path
}
