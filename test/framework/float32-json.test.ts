// float32 numbers as JSON text in the fewest digits that read back as the
// same float32, checked against toPrecision's search over every digit count.
import t from 'tap'
import { float32ArrayJson, float32Json } from '../../framework/float32-json.ts'
import { seededRandom } from '../../framework/onnx-builder.ts'

/** The reference: the fewest significant digits p whose toPrecision reads back as x, in JavaScript's own number text. */
function shortest (x: number): string {
  if (x === 0) return '0'
  if (Math.fround(x) !== x) return String(x)
  for (let p = 1; p <= 9; p++) {
    const text = x.toPrecision(p)
    if (Math.fround(Number(text)) === x) return String(Number(text))
  }
  throw new Error(`no 9-digit text for ${x}`)
}

t.test('every kind of float32: the shortest text, and it reads back as the same float32', async t => {
  const bits = new Uint32Array(1)
  const f = new Float32Array(bits.buffer)
  const r = seededRandom(42)
  let checked = 0
  let wrong = 0
  const check = (x: number) => {
    const got = float32Json(x)
    checked++
    if (got === shortest(x) && Math.fround(Number(got)) === x) return
    if (wrong++ < 5) t.fail(`${x}: ${got}, wanted ${shortest(x)}`)
  }
  // Any bit pattern: subnormals, huge values, every exponent.
  for (let i = 0; i < 100_000; i++) {
    bits[0] = Math.floor(r() * 2 ** 32)
    if (Number.isFinite(f[0])) check(f[0])
  }
  // The magnitudes models write (1e-7 to 1e7), where the fast path works.
  for (let i = 0; i < 100_000; i++) check(Math.fround((r() - 0.5) * 10 ** (r() * 14 - 7)))
  // Every float32 around the fast paths' edges, around powers of ten, and
  // around powers of 2 below 1 (each has a closer float32 below than above).
  const powersOfTwo = Array.from({ length: 21 }, (_, i) => 2 ** -i)
  for (const edge of [1e-6, 2 ** 24, 1, 10, 0.1, 1e6, 1e-5, ...powersOfTwo]) {
    let x = Math.fround(edge)
    for (let i = 0; i < 50; i++) x = nextDown(x)
    for (let i = 0; i < 100; i++, x = nextUp(x)) { check(x); check(-x) }
  }
  t.equal(wrong, 0, `${checked} values`)
})

t.test('arrays of mixed values: each number the shortest text, in and out of the fast path in any order', async t => {
  // float32ArrayJson writes runs of values in [1e-6, 1) in one loop, and
  // leaves any other to the exact way: every order of the two, at any index.
  const bits = new Uint32Array(1)
  const f = new Float32Array(bits.buffer)
  const r = seededRandom(7)
  const kinds = [
    () => Math.fround((r() - 0.5) * 10 ** (r() * 4 - 3)), // logits, mostly the fast path
    () => Math.fround(r()), // probabilities
    () => Math.fround((r() - 0.5) * 10 ** (r() * 14 - 7)),
    () => { bits[0] = Math.floor(r() * 2 ** 32); return Number.isFinite(f[0]) ? f[0] : 1 },
    () => [0, -0, 1, -1, 0.5, 0.25, 1e-6, 0.1, 1 / 3][Math.floor(r() * 9)],
  ]
  let wrong = 0
  for (let a = 0; a < 20_000; a++) {
    const values = Array.from({ length: Math.floor(r() * 12) }, () => kinds[Math.floor(r() * kinds.length)]())
    const start = Math.floor(r() * (values.length + 1))
    const want = '[' + values.slice(start).map(shortest).join(',') + ']'
    const got = [float32ArrayJson(values, start), float32ArrayJson(Float32Array.from(values), start)]
    if (got[0] === want && got[1] === '[' + Array.from(Float32Array.from(values).subarray(start), shortest).join(',') + ']') continue
    if (wrong++ < 5) t.fail(`${JSON.stringify(values)} from ${start}: ${got[0]}, wanted ${want}`)
  }
  t.equal(wrong, 0, '20000 arrays')
})

function nextUp (x: number): number {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)
  u[0] += x >= 0 ? 1 : -1
  return f[0]
}
function nextDown (x: number): number {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)
  u[0] += x > 0 ? -1 : 1
  return f[0]
}

t.test('examples', async t => {
  t.equal(float32Json(Math.fround(0.1)), '0.1', 'not 0.10000000149011612')
  t.equal(float32Json(-Math.fround(2.5)), '-2.5')
  t.equal(float32Json(0), '0')
  t.equal(float32Json(-0), '0', 'as JSON.stringify writes -0')
  t.equal(float32Json(3.4028234663852886e38), '3.4028235e+38', "float32's largest value")
  t.equal(float32Json(1.401298464324817e-45), '1e-45', "float32's smallest subnormal")
  t.equal(float32Json(Math.fround(1e-7)), '1e-7', 'exponents as JavaScript writes them')
  t.equal(float32Json(455260064), '455260060', 'over 2^24: fewer digits, then zeros')
  t.equal(float32Json(16777216), '16777216')
  t.equal(float32Json(123456.5), '123456.5')
  t.equal(float32Json(Math.fround(0.000123)), '0.000123')
  t.equal(float32Json(0.1), '0.1', 'a double that is no float32 keeps its double text')
  t.equal(float32Json(1 / 3), '0.3333333333333333')
  t.equal(float32Json(NaN), undefined)
  t.equal(float32Json(Infinity), undefined)
})

t.test('arrays: typed or plain, a slice, any length; undefined if one value is not a finite number', async t => {
  const f = Float32Array.from([1.5, -0.25, 0.1, 1e-7])
  t.equal(float32ArrayJson(f), '[1.5,-0.25,0.1,1e-7]')
  t.equal(float32ArrayJson(Array.from(f)), '[1.5,-0.25,0.1,1e-7]')
  t.equal(float32ArrayJson(f, 1, 3), '[-0.25,0.1]')
  t.equal(float32ArrayJson(f, 2, 2), '[]')
  t.equal(float32ArrayJson([]), '[]')
  t.equal(float32ArrayJson([1, NaN]), undefined)
  t.equal(float32ArrayJson([1, -Infinity]), undefined)
  t.equal(float32ArrayJson([1, '2' as unknown as number]), undefined)
  t.equal(float32ArrayJson(Object.assign([1, 2, 3], { 1: undefined }) as number[]), undefined, 'a hole')
  // Longer than the first scratch buffer: it grows, and the text is whole.
  const big = Float32Array.from({ length: 50_000 }, (_, i) => Math.sin(i) * 1000)
  const text = float32ArrayJson(big)!
  t.same(JSON.parse(text).map(Math.fround), Array.from(big))
  t.ok(text.length < JSON.stringify(Array.from(big)).length * 0.7, 'shorter than the doubles\' text')
  // Over the kept buffer's cap (1 MB): a buffer of its own, the same text.
  const huge = Float32Array.from({ length: 60_000 }, (_, i) => Math.cos(i))
  t.same(JSON.parse(float32ArrayJson(huge)!).map(Math.fround), Array.from(huge))
  t.equal(float32ArrayJson(f), '[1.5,-0.25,0.1,1e-7]', 'and the kept buffer still works after it')
})
