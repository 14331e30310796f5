// The benchmark's synthetic models, written with the project's ONNX writer and
// seeded weights (byte-for-byte the same on every run):
//   tiny   float32 x [N, 4] -> y = x + b                     (pure serving overhead)
//   mlp    float32 x [N, 256] -> 1024 -> 1024 -> 16, ReLU    (compute-bound)
//   tagger int64 ids [N, 32] -> Gather 20000x128 -> MatMul 128x64 + ReLU -> MatMul 64x17 (per-token logits)
//   heavy  float32 x [N, 256] -> 4096 -> 4096 -> 4096 -> 4096 -> 4096 -> 16, ReLU, the last two
//          hidden layers with the weights of the two before them (68 M multiply-adds a row, 140 MB of
//          weights: the model, not HTTP, is the bottleneck; for the flood, which needs a capacity
//          that one core can be offered 10x of. Built on first use of `bytes`.)
import { buildModel, randomWeights } from '../framework/onnx-builder.ts'

/** Rows of tagger's embedding table: its ids are 0 .. TAGGER_VOCAB - 1. */
export const TAGGER_VOCAB = 20_000

export interface BenchModel {
  name: string
  bytes: Uint8Array
  input: string
  output: string
  type: 'float32' | 'int64'
  /** Elements of one example. */
  width: number
  /** One example, as a JSON-able row. */
  example: number[]
}

function dense (name: string, input: string, inSize: number, outSize: number, seed: number, relu: boolean) {
  const w = { name: `${name}_w`, type: 'float32' as const, dims: [inSize, outSize], data: randomWeights(inSize * outSize, seed, 1 / Math.sqrt(inSize)) }
  const b = { name: `${name}_b`, type: 'float32' as const, dims: [outSize], data: randomWeights(outSize, seed + 1, 0.01) }
  const nodes = [
    { op: 'MatMul', inputs: [input, w.name], outputs: [`${name}_mm`] },
    { op: 'Add', inputs: [`${name}_mm`, b.name], outputs: [relu ? `${name}_pre` : name] },
    ...(relu ? [{ op: 'Relu', inputs: [`${name}_pre`], outputs: [name] }] : []),
  ]
  return { nodes, initializers: [w, b] }
}

/**
 * `heavy`: four 4096-wide hidden layers after the first, about 500-700 rows/s
 * on one core. The third and fourth apply the second's and third's weights
 * again (the same initializers), so it computes twice as much per row as
 * three layers did (68 M multiply-adds against 35 M) with the same 140 MB of
 * weights: with three, 10x its capacity was 8,400-9,400 req/s, near what one
 * core can receive at all on a slow host (the node:http floor: 77 us a
 * request, 13,000 req/s), and the flood measured the host's HTTP ceiling more
 * than the framework's refusing.
 */
function heavyModel (): Uint8Array {
  const h1 = dense('h1', 'x', 256, 4096, 21, true)
  const h2 = dense('h2', 'h1', 4096, 4096, 23, true)
  const h3 = dense('h3', 'h2', 4096, 4096, 25, true)
  /** A layer again: the nodes of `layer` on another input, with its weights. */
  const again = (layer: string, name: string, input: string) => [
    { op: 'MatMul', inputs: [input, `${layer}_w`], outputs: [`${name}_mm`] },
    { op: 'Add', inputs: [`${name}_mm`, `${layer}_b`], outputs: [`${name}_pre`] },
    { op: 'Relu', inputs: [`${name}_pre`], outputs: [name] },
  ]
  const y = dense('y', 'h5', 4096, 16, 27, false)
  return buildModel({
    name: 'heavy',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 256] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 16] }],
    initializers: [...h1.initializers, ...h2.initializers, ...h3.initializers, ...y.initializers],
    nodes: [...h1.nodes, ...h2.nodes, ...h3.nodes, ...again('h2', 'h4', 'h3'), ...again('h3', 'h5', 'h4'), ...y.nodes],
  })
}

export function benchModels (): BenchModel[] {
  const tiny = buildModel({
    name: 'tiny',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }],
    initializers: [{ name: 'b', type: 'float32', dims: [4], data: new Float32Array([1, 2, 3, 4]) }],
    nodes: [{ op: 'Add', inputs: ['x', 'b'], outputs: ['y'] }],
  })
  const l1 = dense('h1', 'x', 256, 1024, 1, true)
  const l2 = dense('h2', 'h1', 1024, 1024, 3, true)
  const l3 = dense('y', 'h2', 1024, 16, 5, false)
  const mlp = buildModel({
    name: 'mlp',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 256] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 16] }],
    initializers: [...l1.initializers, ...l2.initializers, ...l3.initializers],
    nodes: [...l1.nodes, ...l2.nodes, ...l3.nodes],
  })
  const t1 = dense('t1', 'emb', 128, 64, 9, true)
  const t2 = dense('logits', 't1', 64, 17, 11, false)
  const tagger = buildModel({
    name: 'tagger',
    inputs: [{ name: 'ids', type: 'int64', shape: ['batch', 32] }],
    outputs: [{ name: 'logits', type: 'float32', shape: ['batch', 32, 17] }],
    initializers: [{ name: 'table', type: 'float32', dims: [TAGGER_VOCAB, 128], data: randomWeights(TAGGER_VOCAB * 128, 7, 0.1) }, ...t1.initializers, ...t2.initializers],
    nodes: [{ op: 'Gather', inputs: ['table', 'ids'], outputs: ['emb'], attributes: { axis: 0 } }, ...t1.nodes, ...t2.nodes],
  })
  const rand = randomWeights(256, 42, 1)
  return [
    { name: 'tiny', bytes: tiny, input: 'x', output: 'y', type: 'float32', width: 4, example: [0.5, -1.25, 2, 3.75] },
    { name: 'mlp', bytes: mlp, input: 'x', output: 'y', type: 'float32', width: 256, example: Array.from(rand, v => Math.round(v * 1e4) / 1e4) },
    { name: 'tagger', bytes: tagger, input: 'ids', output: 'logits', type: 'int64', width: 32, example: Array.from({ length: 32 }, (_, i) => (i * 7919 + 13) % TAGGER_VOCAB) },
    {
      name: 'heavy',
      // 140 MB of weights: made only when a caller writes the model (bench/app.ts only needs the names).
      get bytes () { return (heavyBytes ??= heavyModel()) },
      input: 'x', output: 'y', type: 'float32', width: 256, example: Array.from(rand, v => Math.round(v * 1e4) / 1e4),
    },
  ]
}

let heavyBytes: Uint8Array | undefined

/**
 * `count` different examples of a model, made from its example (the same on
 * every run). A benchmark that sends one example gets one answer again and
 * again, and V8 caches number-to-string conversions: writing tagger's 544
 * floats then looked 2.6 times cheaper than for answers that differ.
 */
export function examplesOf (m: BenchModel, count: number): number[][] {
  return Array.from({ length: count }, (_, k) => m.example.map((v, i) => m.type === 'int64'
    ? (v + k * 101) % TAGGER_VOCAB
    : Math.round((v + Math.sin(k * 7 + i) / 2) * 1e4) / 1e4))
}
