import t from 'tap'
import { build } from '../fixtures/build.ts'

t.test('standardizes rows with the Iris statistics', async t => {
  const app = await build(t)
  const res = await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[5.1, 3.5, 1.4, 0.2], [5.8433, 3.0573, 3.758, 1.1993]] } })
  t.equal(res.statusCode, 200)
  const { rows } = res.json()
  const expected = [[-0.9006, 1.0191, -1.3402, -1.3156], [0, 0, 0, 0]]
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) t.ok(Math.abs(rows[i][j] - expected[i][j]) < 1e-3, `row ${i} col ${j}: ${rows[i][j]}`)
})

t.test('limits: empty list, too many rows', async t => {
  const app = await build(t)
  const empty = await app.inject({ method: 'POST', url: '/scale', payload: { rows: [] } })
  t.equal(empty.statusCode, 400)
  t.equal(empty.json().error, 'body.rows must NOT have fewer than 1 items')
  const many = await app.inject({ method: 'POST', url: '/scale', payload: { rows: Array.from({ length: 1025 }, () => [1, 2, 3, 4]) } })
  t.equal(many.statusCode, 400)
  t.equal(many.json().error, 'body.rows has 1025 rows; at most 1024 are accepted')
})

t.test('values float32 cannot hold, or whose scaled value it cannot, are a 400 (not a 200 with null)', async t => {
  const app = await build(t)
  const cases: Array<[number[], RegExp]> = [
    [[1e39, 0, 0, 0], /within float32's range/],
    [[-1e300, 0, 0, 0], /within float32's range/],
    [[0, 3.4e38, 0, 0], /its scaled value overflows float32/],
  ]
  for (const [row, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/scale', payload: { rows: [[1, 2, 3, 4], row] } })
    t.equal(res.statusCode, 400, JSON.stringify(row))
    t.match(res.json(), { code: 'BAD_REQUEST', error: message })
  }
})

t.test('GET describes the model', async t => {
  const app = await build(t)
  t.same((await app.inject({ url: '/scale' })).json(), {
    model: 'scaler',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }],
    maxRows: 1024,
  })
})
