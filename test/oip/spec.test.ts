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

t.test('parameter values are strings, numbers or booleans ($parameter in the spec): an object, array or null is a 400, in the request, an input or an output', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const input = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }
  const infer = (payload: object) => app.inject({ method: 'POST', url: '/v2/models/mlp/infer', payload })
  const refused: Array<[string, object, RegExp]> = [
    ['request, an object', { inputs: [input], parameters: { priority: { level: 1 } } }, /^parameters\.priority must be a string, number or boolean \(the protocol's parameter values\), got an object$/],
    ['request, null', { inputs: [input], parameters: { trace: null } }, /^parameters\.trace must be a string, number or boolean .*, got null$/],
    ['input, an array', { inputs: [{ ...input, parameters: { tags: ['a'] } }] }, /^inputs\[0\]\.parameters\.tags must be a string, number or boolean .*, got an array$/],
    ['output, null', { inputs: [input], outputs: [{ name: 'y', parameters: { note: null } }] }, /^outputs\[0\]\.parameters\.note must be a string, number or boolean .*, got null$/],
  ]
  for (const [what, payload, message] of refused) {
    const res = await infer(payload)
    t.equal(res.statusCode, 400, `${what}: ${res.body}`)
    t.match(res.json(), { code: 'BAD_REQUEST', statusCode: 400, error: message }, what)
  }
  // Parameters this server does not know, of the spec's types, are accepted (and ignored), as before.
  const custom = await infer({ inputs: [{ ...input, parameters: { note: 'a' } }], parameters: { priority: 1, trace: true, tag: 'x' }, outputs: [{ name: 'y', parameters: { note: 2.5 } }] })
  t.equal(custom.statusCode, 200, custom.body)
  t.same(custom.json().outputs[0].data, [2, 4, 6, 8])
})

t.test('repository unload: unload_dependents is true or false, as Triton reads it; anything else a 400 before anything is unloaded', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() }, { repositoryApi: true })
  const unload = (parameters: object) => app.inject({ method: 'POST', url: '/v2/repository/models/mlp/unload', payload: { parameters } })
  for (const value of ['yes', 1, null]) {
    const res = await unload({ unload_dependents: value })
    t.equal(res.statusCode, 400, `${JSON.stringify(value)}: ${res.body}`)
    t.match(res.json(), { code: 'BAD_REQUEST', error: /^parameters\.unload_dependents must be true or false/ })
    t.equal((await app.inject({ url: '/v2/models/mlp/ready' })).statusCode, 200, 'the model still serves')
  }
  const res = await unload({ unload_dependents: true })
  t.equal(res.statusCode, 200, res.body)
  t.equal((await app.inject({ url: '/v2/models/mlp/ready' })).statusCode, 503, 'unloaded')
})

t.test('repository routes take no binary tensor data: bytes after the JSON header are a 400, not ignored', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() }, { repositoryApi: true })
  const binary = { 'content-type': 'application/octet-stream', 'inference-header-content-length': '2' }
  for (const url of ['/v2/repository/index', '/v2/repository/models/mlp/load', '/v2/repository/models/mlp/unload']) {
    const res = await app.inject({ method: 'POST', url, payload: Buffer.from('{}\x00\x01\x02'), headers: binary })
    t.equal(res.statusCode, 400, `${url}: ${res.body}`)
    t.match(res.json(), { code: 'BAD_REQUEST', error: /takes no binary data: 3 bytes follow the JSON header/ }, url)
    // The JSON header alone, sent so, is read as before.
    const alone = await app.inject({ method: 'POST', url, payload: Buffer.from('{}'), headers: binary })
    t.equal(alone.statusCode, 200, `${url}, the header alone: ${alone.body}`)
  }
})

t.test('a client value quoted in a 400 is quoted short: an object or array nested 20,000 deep was a 500 (JSON.stringify overflowed the stack), a large one came back whole', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'str.onnx': identityModel('string'), 'bool.onnx': identityModel('bool'), 'int.onnx': identityModel('int32') }, { repositoryApi: true })
  const post = (url: string, payload: string) => app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } })
  // Written as text: a client library's JSON.stringify would overflow first.
  const deep = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000)
  const deepArray = '{"a":' + '['.repeat(20_000) + ']'.repeat(20_000) + '}'
  const big = JSON.stringify({ a: 'x'.repeat(200_000) })
  const input = (model: string, datatype: string, element: string) => {
    const [shape, rest] = model === 'mlp' ? ['[1,4]', ',1,2,3'] : ['[1,1]', '']
    return `{"inputs":[{"name":"x","shape":${shape},"datatype":"${datatype}","data":[${element}${rest}]}]}`
  }
  const good = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`
  const cases: Array<[string, string, string, RegExp]> = []
  for (const [model, datatype] of [['str', 'BYTES'], ['bool', 'BOOL'], ['int', 'INT32'], ['mlp', 'FP32']]) {
    for (const [what, element, kind] of [['deep object', deep, 'an object'], ['deep array in an object', deepArray, 'an object'], ['large object', big, 'an object']]) {
      cases.push([`${datatype} element, ${what}`, `/v2/models/${model}/infer`, input(model, datatype, element), new RegExp(`^input 'x': element 0 must be .* got ${kind}$`)])
    }
  }
  cases.push(['timeout, deep', '/v2/models/mlp/infer', `{"parameters":{"timeout":${deep}},${good.slice(1)}`, /^parameters\.timeout must be .*, got an object$/])
  cases.push(['timeout, large', '/v2/models/mlp/infer', `{"parameters":{"timeout":${big}},${good.slice(1)}`, /^parameters\.timeout must be .*, got an object$/])
  cases.push(['timeout, long string', '/v2/models/mlp/infer', `{"parameters":{"timeout":"${'9'.repeat(200_000)}"},${good.slice(1)}`, /^parameters\.timeout must be .*, got "9{99}\.\.\.$/])
  cases.push(['unload_dependents, deep', '/v2/repository/models/mlp/unload', `{"parameters":{"unload_dependents":${deep}}}`, /^parameters\.unload_dependents must be true or false, got an object$/])
  for (const [what, url, payload, message] of cases) {
    // A good request beside each bad one is served as ever.
    const [res, beside] = await Promise.all([post(url, payload), post('/v2/models/mlp/infer', good)])
    t.equal(res.statusCode, 400, `${what}: ${res.body.slice(0, 200)}`)
    t.ok(res.body.length < 500, `${what}: a short answer (${res.body.length} characters)`)
    t.match(res.json(), { code: 'BAD_REQUEST', statusCode: 400, error: message }, what)
    t.equal(beside.statusCode, 200, `${what}: the request beside it`)
  }
  // Values that are not objects are still quoted as sent.
  const res = await post('/v2/models/int/infer', input('int', 'INT32', '"7"'))
  t.match(res.json(), { error: /^input 'x': element 0 must be an integer for INT32, got "7"$/ })
})

t.test('a shape of the wrong rank is quoted short in the 400: one of 300,000 dimensions came back whole (a 900 kB error body)', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const infer = (shape: number[]) => app.inject({ method: 'POST', url: '/v2/models/mlp/infer', payload: { inputs: [{ name: 'x', shape, datatype: 'FP32', data: [] }] } })
  const res = await infer(new Array(300_000).fill(0))
  t.equal(res.statusCode, 400)
  t.ok(res.body.length < 500, `a short answer (${res.body.length} characters)`)
  t.match(res.json(), { code: 'BAD_REQUEST', error: /^input 'x': expected shape \[-1, 4\] \(rank 2\), got \[0, 0, 0, 0, 0, 0, 0, 0, \.\.\.\] \(rank 300000\)$/ })
  // A short one is quoted whole, as before.
  t.match((await infer([1, 2, 2])).json(), { error: /^input 'x': expected shape \[-1, 4\] \(rank 2\), got \[1, 2, 2\] \(rank 3\)$/ })
})

t.test('a binary request whose JSON header is null (or another non-object) with bytes after it is a 400: on the repository routes the bytes were ignored and the request served as if bodyless', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() }, { repositoryApi: true })
  const binary = (n: number) => ({ 'content-type': 'application/octet-stream', 'inference-header-content-length': String(n) })
  for (const url of ['/v2/repository/index', '/v2/repository/models/mlp/load', '/v2/repository/models/mlp/unload', '/v2/models/mlp/infer']) {
    for (const header of ['null', '5', '"a"']) {
      const res = await app.inject({ method: 'POST', url, payload: Buffer.from(`${header}\x00\x01\x02`), headers: binary(header.length) })
      t.equal(res.statusCode, 400, `${url}, ${header}: ${res.body}`)
      t.match(res.json(), { code: 'BAD_REQUEST', error: /^the JSON header \(inference-header-content-length: \d\) is (null|a number|a string), not an object, and 3 bytes follow it$/ }, `${url}, ${header}`)
    }
  }
  t.equal((await app.inject({ url: '/v2/models/mlp/ready' })).statusCode, 200, 'the refused unloads unloaded nothing')
  // A null header alone, sent so, is a bodyless request as before.
  const alone = await app.inject({ method: 'POST', url: '/v2/repository/index', payload: Buffer.from('null'), headers: binary(4) })
  t.equal(alone.statusCode, 200, alone.body)
})
