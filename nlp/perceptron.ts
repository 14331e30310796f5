// Averaged structured perceptron (Collins 2002) over hashed features and
// first-order label transitions. Everything is deterministic: the shuffle is
// seeded and all arithmetic happens in a fixed order, so the same data and
// options give bit-identical weights.
import { seededRandom } from '../framework/onnx-builder.ts'
import { viterbi } from './viterbi.ts'

/** A training sequence: feature ids [T][F] row-major, gold label indices [T]. */
export interface Sequence {
  features: Int32Array
  labels: Int32Array
}

export interface TrainOptions {
  labels: number
  buckets: number
  featuresPerToken: number
  epochs: number
  seed: number
  /**
   * Fixed scores added to the learned transitions, start and end scores (e.g.
   * a large negative value forbids O -> I-PER in BIO); -Infinity is not
   * allowed since the scores are stored in JSON.
   */
  constraints?: { transitions: Float64Array, start: Float64Array, end: Float64Array }
  /** Called after each epoch with the averaged model so far. */
  onEpoch?: (epoch: number, model: LinearChainModel, trainAccuracy: number) => void
}

/** Emission weights [buckets][L] and transition scores. */
export interface LinearChainModel {
  labels: number
  featuresPerToken: number
  weights: Float32Array
  /** Row-major [L][L]. */
  transitions: Float64Array
  start: Float64Array
  end: Float64Array
}

/** Emission scores [T][L] of a sequence, summed in float64 in feature order. */
export function emissionScores (features: Int32Array, F: number, weights: ArrayLike<number>, L: number): Float64Array {
  const T = features.length / F
  const out = new Float64Array(T * L)
  for (let t = 0; t < T; t++) {
    const row = t * L
    for (let f = 0; f < F; f++) {
      const id = features[t * F + f]
      if (id === 0) continue
      const base = id * L
      for (let l = 0; l < L; l++) out[row + l] += weights[base + l]
    }
  }
  return out
}

/** Best labels of a sequence under a model. */
export function predict (model: LinearChainModel, features: Int32Array): Int32Array {
  const { labels: L, featuresPerToken: F } = model
  const em = emissionScores(features, F, model.weights, L)
  return viterbi(em, features.length / F, L, model)
}

/** Deterministic Fisher-Yates shuffle of 0..n-1. */
export function shuffledOrder (n: number, rand: () => number): Int32Array {
  const order = new Int32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const tmp = order[i]; order[i] = order[j]; order[j] = tmp
  }
  return order
}

/** Trains an averaged structured perceptron and returns the averaged model. */
export function train (data: readonly Sequence[], opts: TrainOptions): LinearChainModel {
  const L = opts.labels
  const F = opts.featuresPerToken
  const size = opts.buckets * L
  // w: current weights; u: sum of c * update, so that the average over all
  // steps is w - u / c (the usual lazy-averaging trick).
  const w = new Float64Array(size)
  const u = new Float64Array(size)
  const tw = new Float64Array(L * L + 2 * L)
  const tu = new Float64Array(L * L + 2 * L)
  const START = L * L
  const END = L * L + L
  const cons = opts.constraints
  const live = {
    transitions: new Float64Array(L * L),
    start: new Float64Array(L),
    end: new Float64Array(L),
  }
  const syncLive = (): void => {
    for (let i = 0; i < L * L; i++) live.transitions[i] = tw[i] + (cons?.transitions[i] ?? 0)
    for (let i = 0; i < L; i++) {
      live.start[i] = tw[START + i] + (cons?.start[i] ?? 0)
      live.end[i] = tw[END + i] + (cons?.end[i] ?? 0)
    }
  }
  const rand = seededRandom(opts.seed)
  let c = 1
  const average = (): LinearChainModel => {
    const weights = new Float32Array(size)
    for (let i = 0; i < size; i++) weights[i] = w[i] - u[i] / c
    const t = new Float64Array(L * L + 2 * L)
    for (let i = 0; i < t.length; i++) t[i] = tw[i] - tu[i] / c
    const transitions = t.slice(0, START)
    const start = t.slice(START, END)
    const end = t.slice(END)
    if (cons !== undefined) {
      for (let i = 0; i < L * L; i++) transitions[i] += cons.transitions[i]
      for (let i = 0; i < L; i++) { start[i] += cons.start[i]; end[i] += cons.end[i] }
    }
    return { labels: L, featuresPerToken: F, weights, transitions, start, end }
  }
  const bump = (arr: Float64Array, acc: Float64Array, i: number, d: number): void => {
    arr[i] += d
    acc[i] += c * d
  }
  let model = average()
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    let correct = 0
    let total = 0
    syncLive()
    for (const idx of shuffledOrder(data.length, rand)) {
      const { features, labels: gold } = data[idx]
      const T = gold.length
      if (T === 0) continue
      const em = emissionScores(features, F, w, L)
      const pred = viterbi(em, T, L, live)
      let changed = false
      for (let t = 0; t < T; t++) {
        total++
        if (pred[t] === gold[t]) { correct++; continue }
        changed = true
        for (let f = 0; f < F; f++) {
          const id = features[t * F + f]
          if (id === 0) continue
          bump(w, u, id * L + gold[t], 1)
          bump(w, u, id * L + pred[t], -1)
        }
      }
      if (changed) {
        if (gold[0] !== pred[0]) { bump(tw, tu, START + gold[0], 1); bump(tw, tu, START + pred[0], -1) }
        if (gold[T - 1] !== pred[T - 1]) { bump(tw, tu, END + gold[T - 1], 1); bump(tw, tu, END + pred[T - 1], -1) }
        for (let t = 1; t < T; t++) {
          const g = gold[t - 1] * L + gold[t]
          const p = pred[t - 1] * L + pred[t]
          if (g !== p) { bump(tw, tu, g, 1); bump(tw, tu, p, -1) }
        }
        syncLive()
      }
      c++
    }
    model = average()
    opts.onEpoch?.(epoch, model, total === 0 ? 0 : correct / total)
  }
  return model
}
