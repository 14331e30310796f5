// Adaptive batching, the pure half: which queued requests may share one
// `session.run`, how their feeds are merged along axis 0, and how the outputs
// are split back. framework/pool.ts decides *when* (a thread is free) and
// calls these; keeping them pure lets the tests check them directly.
//
// Limits are counted in items: an item is one example (one row along axis 0),
// whatever the request that carried it. Inputs whose other dimensions vary
// between requests (sequence lengths) are padded per batch with the model's
// pad value on the axes the model declares dynamic, and the outputs that share
// those axes (same symbolic name, else same position) are cropped back, so each
// request gets exactly what an unbatched run would give it. A model without a
// pad value only batches requests whose shapes agree.
import { TYPED_ARRAYS, type Tensor, type TensorInfo } from './tensor.ts'

/** Per-model batching and queueing options (`pool.configure(key, ...)`). */
export interface BatchOptions {
  /** Most items (rows along axis 0) merged into one session.run. 1 disables batching. */
  maxBatchItems: number
  /**
   * Most items waiting for a thread; a request that would go over is refused
   * (503). 0: nothing waits, a request is admitted only when a thread is free
   * to start it at once (no batching, no inline runs, no delay).
   */
  maxQueueItems: number
  /**
   * How long a batch that is not full may wait for more requests, in
   * milliseconds. 0 (the default) never waits: a lone request runs at once, and
   * batches form only from what queued while every thread was busy.
   */
  maxDelayMs: number
  /**
   * Value that pads dynamic non-batch axes; undefined: only same-shape
   * requests batch. It must be neutral for the model (the outputs at real
   * positions must not depend on padded ones, e.g. a zero embedding row).
   */
  padValue?: number
  /**
   * Most padded elements along the padded axes in one batch (rows x padded
   * length, e.g. tokens), when set. A request alone may exceed it.
   */
  maxBatchTokens?: number
}

export const DEFAULT_BATCH_OPTIONS: BatchOptions = { maxBatchItems: 64, maxQueueItems: 64, maxDelayMs: 0 }

/** Checks options (a typo in config.json should fail at load, not under load). */
export function validateBatchOptions (options: Partial<BatchOptions>): string[] {
  const problems: string[] = []
  const intFrom = (name: keyof BatchOptions, min: 0 | 1) => {
    const v = options[name]
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < min)) {
      problems.push(`${name} must be ${min === 1 ? 'a positive integer' : 'an integer >= 0'}, got ${JSON.stringify(v)}`)
    }
  }
  intFrom('maxBatchItems', 1)
  intFrom('maxQueueItems', 0)
  intFrom('maxBatchTokens', 1)
  if (options.maxDelayMs !== undefined && !(typeof options.maxDelayMs === 'number' && options.maxDelayMs >= 0 && Number.isFinite(options.maxDelayMs))) {
    problems.push(`maxDelayMs must be a number >= 0, got ${JSON.stringify(options.maxDelayMs)}`)
  }
  if (options.padValue !== undefined && !(typeof options.padValue === 'number' && Number.isFinite(options.padValue))) {
    problems.push(`padValue must be a finite number, got ${JSON.stringify(options.padValue)}`)
  }
  return problems
}

export interface ModelShape { inputs: TensorInfo[], outputs: TensorInfo[] }

/** Whether a declared dimension is dynamic: a name, or a negative size. */
export const isDynamic = (d: number | string | undefined) => typeof d === 'string' || (typeof d === 'number' && d < 0)

/**
 * Whether a model can batch at all: every input and output must have a
 * dynamic first axis (otherwise rows cannot be stacked or split), and the
 * axis names must not say that the first axis is something else: an output
 * or input led by a name the inputs give to another axis (a time-major
 * ['seq', 'batch'] output), or an output that carries the inputs' batch name
 * further in.
 */
export function modelBatches (shape: ModelShape): boolean {
  const all = [...shape.inputs, ...shape.outputs]
  if (!(all.length > 0 && all.every(t => t.type !== 'non-tensor' && t.shape.length >= 1 && isDynamic(t.shape[0])))) return false
  const named = (d: number | string | undefined): d is string => typeof d === 'string' && d !== ''
  const leading = new Set(shape.inputs.map(i => i.shape[0]).filter(named))
  const inner = new Set(shape.inputs.flatMap(i => i.shape.slice(1)).filter(named))
  const ledByInner = (t: TensorInfo) => named(t.shape[0]) && inner.has(t.shape[0]) && !leading.has(t.shape[0])
  return !all.some(ledByInner) && !shape.outputs.some(o => o.shape.slice(1).some(d => named(d) && leading.has(d)))
}

/** Rows of a request: its inputs' common first dimension; undefined if they disagree. */
export function rowsOf (feeds: Record<string, Tensor>): number | undefined {
  let rows: number | undefined
  for (const t of Object.values(feeds)) {
    if (t.dims.length === 0) return undefined
    if (rows === undefined) rows = t.dims[0]
    else if (rows !== t.dims[0]) return undefined
  }
  return rows
}

/** What integer element types hold (bool: 0 and 1; 64-bit: as far as a JSON number is exact). */
const INT_RANGES: Partial<Record<Tensor['type'], [number, number]>> = {
  bool: [0, 1], int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
  int32: [-(2 ** 31), 2 ** 31 - 1], uint32: [0, 2 ** 32 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], uint64: [0, Number.MAX_SAFE_INTEGER],
}

/** Whether `padValue` is a value of `type` (0.5 is no int64: padding with it would throw; float16 ends at 65504). */
const padFits = (type: Tensor['type'], padValue: number) => {
  if (type === 'float16') return Math.abs(padValue) <= 65504
  const range = INT_RANGES[type]
  return !range || (Number.isInteger(padValue) && padValue >= range[0] && padValue <= range[1])
}

/**
 * A number's float16 bits, rounded to nearest even: float16 data is a
 * Uint16Array of bits, and filling it with the number itself pads with
 * another value (1 is the bits of 6e-8). Rounded once, from the number
 * itself: through float32 first, a value just off a float16 tie would be
 * rounded onto the tie, then to even.
 */
export function float16Bits (value: number): number {
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0
  const a = Math.abs(value)
  if (Number.isNaN(a)) return 0x7e00
  // 65520 is the tie between the largest float16 (65504) and 2^16: even, infinity.
  if (a >= 65520) return sign | 0x7c00
  // Subnormal (or zero): a multiple of 2^-24; 2^-14 rounds up into the smallest normal (0x0400).
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24)
  let exponent = Math.floor(Math.log2(a))
  if (2 ** exponent > a) exponent--
  else if (2 ** (exponent + 1) <= a) exponent++
  // Scaling by powers of two is exact: the 10 bits of mantissa, rounded (a carry into the exponent is right).
  return sign | (((exponent + 15) << 10) + roundHalfEven((a / 2 ** exponent - 1) * 1024))
}

/** x rounded to the nearest integer, ties to even. */
function roundHalfEven (x: number): number {
  const floor = Math.floor(x)
  const rest = x - floor
  return rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor
}

/**
 * Whether two requests may share a batch: same input names, types and ranks;
 * other dimensions equal, or differing only on axes the model declares dynamic
 * when a pad value is set that the input's type holds.
 */
export function compatible (a: Record<string, Tensor>, b: Record<string, Tensor>, shape: ModelShape, padValue?: number): boolean {
  const names = Object.keys(a)
  if (names.length !== Object.keys(b).length) return false
  for (const name of names) {
    const x = a[name]
    const y = b[name]
    if (!y || x.type !== y.type || x.dims.length !== y.dims.length) return false
    const declared = shape.inputs.find(i => i.name === name)?.shape
    for (let axis = 1; axis < x.dims.length; axis++) {
      if (x.dims[axis] === y.dims[axis]) continue
      if (padValue === undefined || x.type === 'string' || !padFits(x.type, padValue) || !declared || !isDynamic(declared[axis])) return false
    }
  }
  return true
}

type Data = Tensor['data']

function allocate (type: Tensor['type'], length: number, fill?: number): Data {
  if (type === 'string') return new Array<string>(length).fill('')
  const Ctor = TYPED_ARRAYS[type as keyof typeof TYPED_ARRAYS]
  const out = new Ctor(length)
  if (fill !== undefined && fill !== 0) fillWith(out, type, fill)
  return out
}

function fillWith (data: Data, type: Tensor['type'], value: number) {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) data.fill(BigInt(value))
  // float16 data is a Uint16Array of the numbers' bits.
  else (data as Float32Array).fill(type === 'float16' ? float16Bits(value) : value)
}

/**
 * Hands mergeFeeds a typed array of `length` elements of `type` to merge
 * into, holding anything (it is overwritten), or nothing (a fresh one is
 * allocated).
 */
export type Scratch = (type: Tensor['type'], length: number) => Data | undefined

const product = (dims: number[], from = 0) => dims.slice(from).reduce((a, b) => a * b, 1)

/**
 * Copies the block `src` (row-major, dims `srcDims`) into `dst` (dims
 * `dstDims`) at element `dstOffset`, over the region both cover: pads when
 * `dst` is larger, crops when it is smaller.
 */
export function copyBlock (src: Data, srcDims: number[], dst: Data, dstDims: number[], dstOffset = 0, srcOffset = 0) {
  const rank = srcDims.length
  if (rank === 0) { (dst as unknown[])[dstOffset] = (src as unknown[])[srcOffset]; return }
  const n = Math.min(srcDims[0], dstDims[0])
  if (rank === 1) {
    if (ArrayBuffer.isView(src) && ArrayBuffer.isView(dst)) {
      (dst as Float32Array).set((src as Float32Array).subarray(srcOffset, srcOffset + n), dstOffset)
    } else {
      for (let i = 0; i < n; i++) (dst as unknown[])[dstOffset + i] = (src as unknown[])[srcOffset + i]
    }
    return
  }
  const srcStride = product(srcDims, 1)
  const dstStride = product(dstDims, 1)
  // Same inner shape: one contiguous copy.
  if (srcStride === dstStride && srcDims.slice(1).every((d, i) => d === dstDims[i + 1])) {
    copyBlock(src, [n * srcStride], dst, [n * dstStride], dstOffset, srcOffset)
    return
  }
  for (let i = 0; i < n; i++) {
    copyBlock(src, srcDims.slice(1), dst, dstDims.slice(1), dstOffset + i * dstStride, srcOffset + i * srcStride)
  }
}

export interface MergedBatch {
  feeds: Record<string, Tensor>
  /** Rows each request contributed, in order. */
  rows: number[]
  /**
   * For each padded axis, by its symbolic name (or `#<axis>` when unnamed):
   * the padded size and each request's own size, used to crop outputs.
   * `ambiguous` when inputs give that name (or position) other sizes too: an
   * output axis under it cannot be told which one it follows.
   */
  padded: Map<string, PaddedAxis>
}

export interface PaddedAxis { axis: number, size: number, sizes: number[], ambiguous?: true }

/**
 * How a dynamic axis is known across inputs and outputs: its symbolic name,
 * else its position. ONNX Runtime reports an unnamed dimension as '', which
 * is no name: every unnamed axis would share it, whatever its position.
 */
const axisLabel = (declared: number | string | undefined, axis: number) =>
  typeof declared === 'string' && declared !== '' ? declared : `#${axis}`

/**
 * Stacks compatible requests along axis 0, padding dynamic axes to the
 * batch's longest; into arrays `scratch` hands, when it does.
 */
export function mergeFeeds (batch: Array<Record<string, Tensor>>, shape: ModelShape, padValue = 0, scratch?: Scratch): MergedBatch {
  const rows = batch.map(f => rowsOf(f)!)
  // No prototype: an input may be named '__proto__'.
  const feeds: Record<string, Tensor> = Object.create(null)
  const padded: MergedBatch['padded'] = new Map()
  // Each request's sizes on every dynamic axis, by label (padded or not).
  const sizesOf = new Map<string, string>()
  for (const name of Object.keys(batch[0])) {
    const first = batch[0][name]
    if (batch.length === 1) { feeds[name] = first; continue }
    const dims = first.dims.map((_, axis) => axis === 0 ? rows.reduce((a, b) => a + b, 0) : Math.max(...batch.map(f => f[name].dims[axis])))
    const declared = shape.inputs.find(i => i.name === name)?.shape ?? []
    for (let axis = 1; axis < dims.length; axis++) {
      if (declared[axis] !== undefined && !isDynamic(declared[axis])) continue
      const label = axisLabel(declared[axis], axis)
      const sizes = batch.map(f => f[name].dims[axis])
      const seen = sizesOf.get(label)
      const clash = seen !== undefined && seen !== sizes.join()
      if (seen === undefined) sizesOf.set(label, sizes.join())
      const p = padded.get(label)
      if (clash && p) p.ambiguous = true
      if (sizes.some(s => s !== dims[axis]) && !(p && !clash)) {
        // Another input pads the same label otherwise: kept (for its size) under a key of its own.
        padded.set(p ? `${label} (input '${name}')` : label, { axis, size: dims[axis], sizes, ...(clash ? { ambiguous: true as const } : {}) })
      }
    }
    const needsPad = dims.slice(1).some((d, i) => batch.some(f => f[name].dims[i + 1] !== d))
    // Every element is copied over but the padding, which a reused array must be given.
    const reused = first.type === 'string' ? undefined : scratch?.(first.type, product(dims))
    if (reused && needsPad) fillWith(reused, first.type, padValue)
    const data = reused ?? allocate(first.type, product(dims), needsPad ? padValue : undefined)
    const rowStride = product(dims, 1)
    let offset = 0
    for (const f of batch) {
      const t = f[name]
      copyBlock(t.data, t.dims, data, [t.dims[0], ...dims.slice(1)], offset)
      offset += t.dims[0] * rowStride
    }
    feeds[name] = { type: first.type, data, dims }
  }
  return { feeds, rows, padded }
}

/**
 * The padded axis an output's axis follows, if any: same symbolic name, else
 * same position; a fixed axis follows none. Throws when that cannot be told:
 * the label is ambiguous, or a dynamic axis the padding does not name is as
 * long as a padded axis (an output that names its sequence axis otherwise).
 */
function paddedAxisOf (name: string, info: TensorInfo | undefined, axis: number, size: number, padded: MergedBatch['padded']) {
  const declared = info?.shape[axis]
  if (declared !== undefined && !isDynamic(declared)) return undefined
  const p = padded.get(axisLabel(declared, axis))
  if (p && !p.ambiguous && p.size === size) return p
  if (p?.ambiguous || [...padded.values()].some(q => q.size === size)) {
    throw new Error(`cannot tell whether axis ${axis} of output '${name}' follows a padded input axis`)
  }
  return undefined
}

/** Splits a batch's outputs back into one result per request, cropping padding. */
export function splitOutputs (outputs: Record<string, Tensor>, merged: MergedBatch, shape: ModelShape): Array<Record<string, Tensor>> {
  const { rows, padded } = merged
  const total = rows.reduce((a, b) => a + b, 0)
  // No prototype: an output may be named '__proto__'.
  const results: Array<Record<string, Tensor>> = rows.map(() => Object.create(null))
  if (rows.length === 1) return [outputs]
  for (const [name, t] of Object.entries(outputs)) {
    if (t.dims[0] !== total) throw new Error(`output '${name}' has ${t.dims[0]} rows for a batch of ${total}; the model does not batch along axis 0`)
    const info = shape.outputs.find(o => o.name === name)
    const follows = t.dims.map((d, axis) => axis === 0 ? undefined : paddedAxisOf(name, info, axis, d, padded))
    const rowStride = product(t.dims, 1)
    let row = 0
    for (let r = 0; r < rows.length; r++) {
      const dims = t.dims.map((d, axis) => axis === 0 ? rows[r] : (follows[axis]?.sizes[r] ?? d))
      const start = row * rowStride
      if (dims.every((d, axis) => axis === 0 || d === t.dims[axis])) {
        // No padding to remove: a view, no copy.
        const data = ArrayBuffer.isView(t.data)
          ? (t.data as Float32Array).subarray(start, start + rows[r] * rowStride)
          : (t.data as unknown[]).slice(start, start + rows[r] * rowStride)
        results[r][name] = { type: t.type, data: data as Data, dims }
      } else {
        const data = allocate(t.type, product(dims))
        copyBlock(t.data, [rows[r], ...t.dims.slice(1)], data, dims, 0, start)
        results[r][name] = { type: t.type, data, dims }
      }
      row += rows[r]
    }
  }
  return results
}

/**
 * Batching options from a model's config.json: `maxBatchSize`,
 * `maxQueueItems`, `maxQueueDelayMs`, `padValue`, `maxBatchTokens` (each
 * optional; the server's settings give the rest). Throws on a bad value.
 */
export function batchOptionsFromConfig (config: Record<string, unknown>): Partial<BatchOptions> {
  const options: Partial<BatchOptions> = {}
  const take = (from: string, to: keyof BatchOptions) => {
    if (config[from] !== undefined) (options as Record<string, unknown>)[to] = config[from]
  }
  take('maxBatchSize', 'maxBatchItems')
  take('maxQueueItems', 'maxQueueItems')
  take('maxQueueDelayMs', 'maxDelayMs')
  take('padValue', 'padValue')
  take('maxBatchTokens', 'maxBatchTokens')
  const problems = validateBatchOptions(options)
  if (problems.length > 0) {
    throw new RangeError(problems.join('; ').replace('maxBatchItems', 'maxBatchSize').replace('maxDelayMs', 'maxQueueDelayMs'))
  }
  return options
}
