// OIP routes answer verbs they lack with 405 and Allow, in the error format, and OPTIONS with Allow.
import t from 'tap'
import { oipApp, addModel } from '../fixtures/oip.ts'

t.test('405 with Allow on OIP routes; OPTIONS lists the verbs', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const cases: Array<[string, string, string]> = [
    ['GET', '/v2/models/mlp/infer', 'POST, OPTIONS'],
    ['DELETE', '/v2/models/mlp', 'GET, HEAD, OPTIONS'],
    ['POST', '/v2/health/ready', 'GET, HEAD, OPTIONS'],
    ['PUT', '/v2', 'GET, HEAD, OPTIONS'],
  ]
  for (const [method, url, allow] of cases) {
    const res = await app.inject({ method: method as 'GET', url })
    t.equal(res.statusCode, 405, `${method} ${url}`)
    t.equal(res.headers.allow, allow)
    t.equal(res.json().code, 'METHOD_NOT_ALLOWED')
    t.match(res.json().error, /is not allowed on \/v2/)
    const options = await app.inject({ method: 'OPTIONS', url })
    t.equal(options.statusCode, 204, `OPTIONS ${url}`)
    t.equal(options.headers.allow, allow)
    // A body sent with OPTIONS is not parsed (it made it a 400 or a 415).
    const withBody = await app.inject({ method: 'OPTIONS', url, payload: '{', headers: { 'content-type': 'text/plain' } })
    t.equal(withBody.statusCode, 204, `OPTIONS ${url} with a body`)
  }
  t.equal((await app.inject({ url: '/v2/models/mlp' })).statusCode, 200, 'the declared verb still works')
  t.equal((await app.inject({ url: '/v2/nope' })).statusCode, 404, 'unknown paths stay 404')
})
