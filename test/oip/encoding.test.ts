// How bodies are read on the resource and OIP routes: a UTF-8 byte order mark
// before the JSON, and Content-Encoding lists (RFC 9110 8.4).
import t from 'tap'
import { deflateSync, gzipSync } from 'node:zlib'
import { addModel, binaryBody, bytesOf, oipApp } from '../fixtures/oip.ts'

const BOM = Buffer.from([0xef, 0xbb, 0xbf])
const withBom = (text: string | Buffer) => Buffer.concat([BOM, Buffer.from(text)])
const INFER = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })

t.test('a JSON body may start with a byte order mark (RFC 8259 8.1), on resource and OIP routes; errors then blame the JSON, not the mark', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const post = (url: string, payload: Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    app.inject({ method: 'POST', url, payload, headers })
  const scale = await post('/scale', withBom('{"rows": [[1, 2, 3, 4]]}'))
  t.equal(scale.statusCode, 200, scale.body)
  for (const headers of [{ 'content-type': 'application/json' }, {}] as Array<Record<string, string>>) {
    const res = await post('/v2/models/mlp/infer', withBom(INFER), headers)
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json().outputs[0].data, [2, 4, 6, 8])
  }
  // After gzip too: the mark is in the inflated bytes.
  const gz = await post('/v2/models/mlp/infer', gzipSync(withBom(INFER)), { 'content-type': 'application/json', 'content-encoding': 'gzip' })
  t.equal(gz.statusCode, 200, gz.body)
  // A binary request's JSON header: the mark is part of it, counted in Inference-Header-Content-Length.
  const { payload } = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, bytesOf(new Float32Array([1, 1, 1, 1])))
  const binary = await post('/v2/models/mlp/infer', withBom(payload), { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(payload.length - 16 + 3) })
  t.equal(binary.statusCode, 200, binary.body)
  t.same(binary.json().outputs[0].data, [2, 3, 4, 5])
  for (const url of ['/scale', '/v2/models/mlp/infer']) {
    // The message said "Unexpected token '\ufeff'", and a __proto__ key was called invalid JSON.
    const broken = await post(url, withBom('{"rows": [[1, 2, 3, 4]],}'))
    t.equal(broken.json().code, 'INVALID_JSON', `${url}: malformed`)
    t.notMatch(broken.json().error, /\ufeff/, `${url}: the message does not quote the mark`)
    t.match(broken.json().error, /Body is not valid JSON: Expected double-quoted property name/, `${url}: it says what is wrong`)
    const poisoned = await post(url, withBom('{"rows": [[1, 2, 3, 4]], "__proto__": {}}'))
    t.same(poisoned.json(), { error: 'body has a __proto__ or constructor.prototype key, which is refused (prototype poisoning)', code: 'BAD_REQUEST', statusCode: 400 }, `${url}: __proto__`)
  }
  // A mark alone is an empty body.
  const empty = await post('/scale', BOM)
  t.equal(empty.statusCode, 400)
  t.notMatch(empty.json().error, /\ufeff|Unexpected token/, empty.body)
  const emptyOip = await post('/v2/models/mlp/infer', BOM)
  t.same(emptyOip.json().code, 'VALIDATION_FAILED', emptyOip.body)
  t.match(emptyOip.json().error, /the request has no body/)
})

t.test('Content-Encoding lists: every coding supported is undone (identity is none), case aside; an unknown one is a 415', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const post = (url: string, payload: Buffer, encoding: string) =>
    app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', 'content-encoding': encoding } })
  // Codings are listed in the order they were applied: undone from the last.
  const served: Array<[string, Buffer]> = [
    ['gzip, identity', gzipSync(INFER)],
    ['identity, gzip', gzipSync(INFER)],
    ['Identity,GZip', gzipSync(INFER)],
    ['gzip, deflate', deflateSync(gzipSync(INFER))],
    ['deflate,, x-gzip', gzipSync(deflateSync(INFER))],
    ['identity, identity', Buffer.from(INFER)],
  ]
  for (const [encoding, body] of served) {
    const res = await post('/v2/models/mlp/infer', body, encoding)
    t.equal(res.statusCode, 200, `${encoding}: ${res.body}`)
    t.same(res.json().outputs?.[0].data, [2, 4, 6, 8], encoding)
  }
  const scale = await post('/scale', Buffer.from('{"rows": [[1, 2, 3, 4]]}'), 'identity, IDENTITY')
  t.equal(scale.statusCode, 200, `resource route, identity twice: ${scale.body}`)
  const refused: Array<[string, string, RegExp]> = [
    ['/v2/models/mlp/infer', 'gzip, br', /content-encoding 'gzip, br' is not supported: 'br' is not gzip, deflate or identity/],
    ['/v2/models/mlp/infer', 'identity, compress', /'compress' is not gzip, deflate or identity/],
    ['/scale', 'identity, gzip', /content-encoding 'identity, gzip' is not supported on this route: send the body uncompressed/],
  ]
  for (const [url, encoding, message] of refused) {
    const res = await post(url, gzipSync(INFER), encoding)
    t.equal(res.statusCode, 415, `${url} ${encoding}`)
    t.match(res.json(), { code: 'UNSUPPORTED_MEDIA_TYPE', statusCode: 415, error: message }, `${url} ${encoding}`)
  }
  // Bounded: a long list is refused before any inflating.
  const many = await post('/v2/models/mlp/infer', gzipSync(INFER), Array(9).fill('gzip').join(', '))
  t.equal(many.statusCode, 415, many.body)
  t.match(many.json().error, /at most 4/)
  // The list's order matters: undone the other way, the data is not gzip.
  const wrongOrder = await post('/v2/models/mlp/infer', deflateSync(gzipSync(INFER)), 'deflate, gzip')
  t.equal(wrongOrder.statusCode, 400, wrongOrder.body)
  t.match(wrongOrder.json().error, /not valid gzip data/)
})
