// Open Inference Protocol details found against the spec (KServe's
// inference_rest.md, Triton's extensions), over real HTTP requests.
import t from 'tap'
import { addModel, identityModel, oipApp } from '../fixtures/oip.ts'

t.test('nested data must be rectangular: ragged data whose count happens to match the shape is a 400, not served', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'bool.onnx': identityModel('bool') })
  const infer = (url: string, shape: number[], data: unknown, datatype = 'FP32') =>
    app.inject({ method: 'POST', url, payload: { inputs: [{ name: 'x', shape, datatype, data }] } })
  const ragged: Array<[string, number[], unknown, RegExp]> = [
    ['rows of 3 and 1', [1, 4], [[1, 2, 3], [4]], /arrays of 3 and of 1 elements at depth 1/],
    ['empty rows around one', [1, 4], [[], [1, 2, 3, 4], []], /arrays of 0 and of 4 elements at depth 1/],
    ['numbers beside an array', [1, 4], [1, [2, 3], 4], /arrays and elements at depth 1/],
    ['uneven depth', [2, 4], [[1, 2, 3, 4], [5, 6, 7, [8]]], /arrays and elements at depth 2/],
  ]
  for (const [what, shape, data, message] of ragged) {
    const res = await infer('/v2/models/mlp/infer', shape, data)
    t.equal(res.statusCode, 400, `${what}: ${res.body}`)
    t.match(res.json(), { code: 'BAD_REQUEST', statusCode: 400, error: message }, what)
    t.match(res.json().error, /^input 'x': nested data must be rectangular/, what)
  }
  const boolRagged = await infer('/v2/models/bool/infer', [1, 2], [[true], [false, []]], 'BOOL')
  t.equal(boolRagged.statusCode, 400, `BOOL: ${boolRagged.body}`)
  // Rectangular data is served, nested or flat, as before.
  for (const data of [[[1, 2, 3, 4], [5, 6, 7, 8]], [1, 2, 3, 4, 5, 6, 7, 8], [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]]) {
    const res = await infer('/v2/models/mlp/infer', [2, 4], data)
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json().outputs[0].data, [2, 4, 6, 8, 6, 8, 10, 12])
  }
  const none = await infer('/v2/models/mlp/infer', [0, 4], [[]].slice(1))
  t.equal(none.statusCode, 200, `no rows: ${none.body}`)
})
