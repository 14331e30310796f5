// Open Inference Protocol conformance, written from the REST spec
// (kserve/open-inference-protocol specification/protocol/inference_rest.md)
// and the binary tensor data extension, against models the tests generate.
import t from 'tap'
import { deflateSync, gzipSync } from 'node:zlib'
import { buildApp } from '../fixtures/oip-app.ts'
import { buildModel } from '../../framework/onnx-builder.ts'
import { slowModel } from '../fixtures/models.ts'
import {
  addModel, binaryBody, bytesOf, EMBEDDING_TABLE, embeddingModel, fixedModel, identityModel, oipApp, scalerModel, shiftedModel, splitBinary,
  tempModels, twoWayModel,
} from '../fixtures/oip.ts'

const infer = (app: Awaited<ReturnType<typeof oipApp>>['app'], url: string, payload: unknown) =>
  app.inject({ method: 'POST', url, payload: payload as object })

t.test('health: live at once, ready only after loading; model ready 503 while loading', async t => {
  const dir = tempModels(t, { 'scaler.onnx': scalerModel(), 'mlp.onnx': addModel() })
  const app = await buildApp({ modelsDir: dir, threads: 1 })
  t.teardown(() => app.close())
  await app.ready()
  const live = await app.inject({ url: '/v2/health/live' })
  t.equal(live.statusCode, 200)
  t.same(live.json(), { live: true })
  const notReady = await app.inject({ url: '/v2/health/ready' })
  t.equal(notReady.statusCode, 503)
  t.equal(notReady.json().code, 'NOT_READY')
  t.equal(notReady.headers['retry-after'], '1')
  const modelNotReady = await app.inject({ url: '/v2/models/mlp/ready' })
  t.equal(modelNotReady.statusCode, 503)
  t.match(modelNotReady.json(), { name: 'mlp', ready: false, code: 'MODEL_NOT_READY' })
  const inferWhileLoading = await infer(app as never, '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
  t.equal(inferWhileLoading.statusCode, 503)
  t.equal(inferWhileLoading.headers['retry-after'], '1')
  await app.loadResources()
  const ready = await app.inject({ url: '/v2/health/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { live: true, ready: true })
  t.same((await app.inject({ url: '/v2/models/mlp/ready' })).json(), { name: 'mlp', ready: true })
  app.drain()
  const draining = await app.inject({ url: '/v2/health/ready' })
  t.equal(draining.statusCode, 503)
  t.equal(draining.json().code, 'SHUTTING_DOWN')
  t.equal((await app.inject({ url: '/v2/health/live' })).statusCode, 200)
  const inferDraining = await infer(app as never, '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
  // Served, as the resource routes are, with Connection: close: a cluster
  // worker replaced on HUP drains, and a 503 here was a request dropped.
  t.equal(inferDraining.statusCode, 200, inferDraining.body)
  t.equal(inferDraining.headers.connection, 'close')
})

t.test('server metadata: name, version, extensions', async t => {
  const { app } = await oipApp(t, {})
  const res = await app.inject({ url: '/v2' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.type(body.name, 'string')
  t.type(body.version, 'string')
  t.same(body.extensions, ['binary_tensor_data'], 'the repository extension is off by default')
  // The spec's OpenAPI documents write the path GET /v2/.
  const slash = await app.inject({ url: '/v2/' })
  t.equal(slash.statusCode, 200, slash.body)
  t.same(slash.json(), body, '/v2/ answers as /v2 does')
  t.equal((await app.inject({ method: 'PUT', url: '/v2/' })).statusCode, 405, 'and refuses the other verbs alike')
  const { app: withRepo } = await oipApp(t, {}, { repositoryApi: true })
  t.same((await withRepo.inject({ url: '/v2' })).json().extensions, ['binary_tensor_data', 'model_repository'])
})

t.test('model metadata: name, platform, inputs and outputs from the session, -1 for dynamic dims, versions', async t => {
  const { app } = await oipApp(t, {
    'mlp.onnx': addModel(),
    'fixed/model.onnx': fixedModel(),
    'clf/1/model.onnx': addModel(),
    'clf/2/model.onnx': addModel([0, 0, 0, 0]),
    'clf/config.json': JSON.stringify({ versionPolicy: 'all', labels: ['a', 'b'], maxBatchSize: 8 }),
  })
  const mlp = await app.inject({ url: '/v2/models/mlp' })
  t.equal(mlp.statusCode, 200)
  t.same(mlp.json(), {
    name: 'mlp',
    platform: 'onnx_onnxv1',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }],
  }, 'an unversioned model has no versions field')
  t.same((await app.inject({ url: '/v2/models/fixed' })).json().inputs, [{ name: 'x', datatype: 'FP32', shape: [2, 3] }])
  const clf = (await app.inject({ url: '/v2/models/clf' })).json()
  t.same(clf.versions, ['1', '2'])
  t.same(clf.parameters, { labels: ['a', 'b'], max_batch_size: 8 }, 'config.json labels and max batch size')
  t.equal((await app.inject({ url: '/v2/models/clf/versions/1' })).statusCode, 200)
  const noVersion = await app.inject({ url: '/v2/models/clf/versions/7' })
  t.equal(noVersion.statusCode, 404)
  t.equal(noVersion.json().code, 'MODEL_NOT_FOUND')
  t.match(noVersion.json().error, /no version '7'/)
  t.equal((await app.inject({ url: '/v2/models/mlp/versions/1' })).statusCode, 404, 'an unversioned model has no versions')
  const unknown = await app.inject({ url: '/v2/models/nope' })
  t.equal(unknown.statusCode, 404)
  t.same(unknown.json(), { error: "unknown model 'nope'", code: 'MODEL_NOT_FOUND', statusCode: 404 })
  t.equal((await app.inject({ url: '/v2/models/nope/ready' })).statusCode, 404)
  t.equal((await app.inject({ url: '/v2/models/clf/versions/2/ready' })).statusCode, 200)
})

t.test('an empty version segment (/versions//...) names no version: a 404 on every route, not the unversioned model', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'clf/1/model.onnx': addModel() })
  const body = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
  const unversioned = { error: "model 'mlp' has no version '' (it is not versioned)", code: 'MODEL_NOT_FOUND', statusCode: 404 }
  for (const [method, url] of [['POST', '/v2/models/mlp/versions//infer'], ['GET', '/v2/models/mlp/versions//ready'], ['GET', '/v2/models/mlp/versions//']] as const) {
    const res = await app.inject({ method, url, ...(method === 'POST' ? { payload: body } : {}) })
    t.same({ status: res.statusCode, body: res.json() }, { status: 404, body: unversioned }, `${method} ${url}`)
  }
  // As a versioned model's answered already.
  const clf = await app.inject({ url: '/v2/models/clf/versions//ready' })
  t.same(clf.json(), { error: "model 'clf' has no version '' (versions: 1)", code: 'MODEL_NOT_FOUND', statusCode: 404 })
  t.equal((await app.inject({ url: '/v2/models/mlp/ready' })).statusCode, 200, 'the model itself is served')
})

t.test('a model a resource uses appears too, sharing its sessions', async t => {
  const { app } = await oipApp(t, {})
  const meta = await app.inject({ url: '/v2/models/scaler' })
  t.equal(meta.statusCode, 200)
  t.equal(app.models.pool.size, 1)
  const scaler = app.models.get('scaler')!
  const oip = await infer(app, '/v2/models/scaler/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] })
  t.equal(oip.statusCode, 200)
  const rest = await infer(app, '/scale', { rows: [[5.1, 3.5, 1.4, 0.2]] })
  t.same(oip.json().outputs[0].data, rest.json().rows[0], 'OIP and the resource answer alike')
  t.equal(scaler.loaded.key, 'scaler', 'the repository adopted the resource\'s sessions rather than loading a second copy')
})

t.test('infer: flat and nested data give the same answer; id echoed; model_version when versioned', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'v/3/model.onnx': addModel() })
  const flat = await infer(app, '/v2/models/mlp/infer', { id: 'req-1', inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] }] })
  const nested = await infer(app, '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [[1, 2, 3, 4], [5, 6, 7, 8]] }] })
  t.equal(flat.statusCode, 200)
  t.equal(nested.statusCode, 200)
  t.same(flat.json(), {
    model_name: 'mlp',
    id: 'req-1',
    outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 4], data: [2, 4, 6, 8, 6, 8, 10, 12] }],
  })
  t.same(nested.json().outputs, flat.json().outputs)
  t.notOk('id' in nested.json(), 'no id when none was given')
  t.notOk('model_version' in flat.json(), 'no model_version for an unversioned model')
  const versioned = await infer(app, '/v2/models/v/versions/3/infer', { id: 'x', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] })
  t.equal(versioned.statusCode, 200)
  t.equal(versioned.json().model_version, '3')
  t.equal((await infer(app, '/v2/models/v/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] })).json().model_version, '3')
})

t.test('infer: outputs filter returns only (and in the order of) the outputs asked for', async t => {
  const { app } = await oipApp(t, { 'twoway.onnx': twoWayModel() })
  const inputs = [
    { name: 'a', shape: [1, 2], datatype: 'FP32', data: [2, 3] },
    { name: 'b', shape: [1, 2], datatype: 'FP32', data: [4, 5] },
  ]
  const all = (await infer(app, '/v2/models/twoway/infer', { inputs })).json()
  t.same(all.outputs.map((o: { name: string }) => o.name), ['sum', 'product'])
  const empty = await infer(app, '/v2/models/twoway/infer', { inputs, outputs: [] })
  t.equal(empty.statusCode, 200, 'an empty outputs list is none named: every output (as Triton)')
  t.same(empty.json().outputs, all.outputs)
  const emptyBinary = await infer(app, '/v2/models/twoway/infer', { inputs, outputs: [], parameters: { binary_data_output: true } })
  const header = JSON.parse(emptyBinary.rawPayload.subarray(0, Number(emptyBinary.headers['inference-header-content-length'])).toString())
  t.same(header.outputs.map((o: { name: string, parameters?: unknown }) => [o.name, o.parameters]),
    [['sum', { binary_data_size: 8 }], ['product', { binary_data_size: 8 }]], 'with binary_data_output: every output, binary')
  const one = (await infer(app, '/v2/models/twoway/infer', { inputs, outputs: [{ name: 'product' }] })).json()
  t.same(one.outputs, [{ name: 'product', datatype: 'FP32', shape: [1, 2], data: [8, 15] }])
  const order = (await infer(app, '/v2/models/twoway/infer', { inputs, outputs: [{ name: 'product' }, { name: 'sum' }] })).json()
  t.same(order.outputs.map((o: { name: string }) => o.name), ['product', 'sum'])
  const unknown = await infer(app, '/v2/models/twoway/infer', { inputs, outputs: [{ name: 'nope' }] })
  t.equal(unknown.statusCode, 400)
  t.match(unknown.json().error, /unknown output 'nope'/)
})

const SAMPLES: Record<string, { type: Parameters<typeof identityModel>[0], data: unknown[] }> = {
  BOOL: { type: 'bool', data: [true, false, true, true] },
  UINT8: { type: 'uint8', data: [0, 1, 128, 255] },
  UINT16: { type: 'uint16', data: [0, 1, 300, 65535] },
  UINT32: { type: 'uint32', data: [0, 1, 70000, 4294967295] },
  UINT64: { type: 'uint64', data: [0, 1, 2 ** 40, Number.MAX_SAFE_INTEGER] },
  INT8: { type: 'int8', data: [-128, -1, 0, 127] },
  INT16: { type: 'int16', data: [-32768, -1, 0, 32767] },
  INT32: { type: 'int32', data: [-2147483648, -1, 0, 2147483647] },
  INT64: { type: 'int64', data: [Number.MIN_SAFE_INTEGER, -1, 0, Number.MAX_SAFE_INTEGER] },
  FP32: { type: 'float32', data: [-1.5, Math.fround(0.1), 0.25, 3.4028234663852886e38] },
  FP64: { type: 'float64', data: [-1.5, 0, 0.1, 1e300] },
  BYTES: { type: 'string', data: ['a', '', 'héllo', 'x y'] },
}

t.test('every datatype round-trips through JSON', async t => {
  const files: Record<string, Uint8Array> = {}
  for (const [dt, s] of Object.entries(SAMPLES)) files[`id_${dt.toLowerCase()}.onnx`] = identityModel(s.type)
  files['id_fp16.onnx'] = identityModel('float16')
  const { app } = await oipApp(t, files)
  for (const [dt, s] of Object.entries(SAMPLES)) {
    const res = await infer(app, `/v2/models/id_${dt.toLowerCase()}/infer`, { inputs: [{ name: 'x', shape: [2, 2], datatype: dt, data: s.data }] })
    t.equal(res.statusCode, 200, `${dt}: ${res.body}`)
    // FP32 is written in float32's shortest digits: the same float32 values.
    const outputs = res.json().outputs
    if (dt === 'FP32') outputs[0].data = outputs[0].data.map(Math.fround)
    t.same(outputs, [{ name: 'y', datatype: dt, shape: [2, 2], data: s.data }], dt)
    if (dt === 'FP32') t.match(res.body, '"data":[-1.5,0.1,0.25,3.4028235e+38]', 'FP32 in the fewest digits that read back as the same float32')
    const meta = (await app.inject({ url: `/v2/models/id_${dt.toLowerCase()}` })).json()
    t.equal(meta.inputs[0].datatype, dt, `${dt} in metadata`)
  }
  // 64-bit integers beyond 2^53 are written exactly in JSON output (here via binary input).
  const big = BigInt64Array.from([2n ** 62n + 1n, -(2n ** 63n)])
  const res = await app.inject({ method: 'POST', url: '/v2/models/id_int64/infer', ...binaryBody({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'INT64', parameters: { binary_data_size: 16 } }] }, bytesOf(big)) })
  t.equal(res.statusCode, 200)
  t.match(res.body, '"data":[4611686018427387905,-9223372036854775808]')
  // FP16 is binary only.
  const fp16json = await infer(app, '/v2/models/id_fp16/infer', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP16', data: [1] }] })
  t.equal(fp16json.statusCode, 400)
  t.match(fp16json.json().error, /FP16 data must be sent as binary/)
})

t.test('every datatype round-trips through binary data, FP16 included', async t => {
  const encode: Record<string, (d: unknown[]) => Uint8Array> = {
    BOOL: d => Uint8Array.from(d as boolean[], v => (v ? 1 : 0)),
    UINT8: d => bytesOf(Uint8Array.from(d as number[])),
    UINT16: d => bytesOf(Uint16Array.from(d as number[])),
    UINT32: d => bytesOf(Uint32Array.from(d as number[])),
    UINT64: d => bytesOf(BigUint64Array.from(d as number[], BigInt)),
    INT8: d => bytesOf(Int8Array.from(d as number[])),
    INT16: d => bytesOf(Int16Array.from(d as number[])),
    INT32: d => bytesOf(Int32Array.from(d as number[])),
    INT64: d => bytesOf(BigInt64Array.from(d as number[], BigInt)),
    FP32: d => bytesOf(Float32Array.from(d as number[])),
    FP64: d => bytesOf(Float64Array.from(d as number[])),
    BYTES: d => Buffer.concat((d as string[]).map(s => { const b = Buffer.from(s); const n = Buffer.alloc(4); n.writeUInt32LE(b.length); return Buffer.concat([n, b]) })),
    // 1.0, -2.0, 0.5, 65504 (max half)
    FP16: () => bytesOf(Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff])),
  }
  const files: Record<string, Uint8Array> = {}
  for (const [dt, s] of Object.entries(SAMPLES)) files[`id_${dt.toLowerCase()}.onnx`] = identityModel(s.type)
  files['id_fp16.onnx'] = identityModel('float16')
  const { app } = await oipApp(t, files)
  for (const dt of Object.keys(encode)) {
    const bytes = encode[dt](SAMPLES[dt]?.data ?? [])
    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/id_${dt.toLowerCase()}/infer`,
      ...binaryBody({ id: dt, inputs: [{ name: 'x', shape: [2, 2], datatype: dt, parameters: { binary_data_size: bytes.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }, bytes),
    })
    t.equal(res.statusCode, 200, `${dt}: ${res.statusCode === 200 ? '' : res.body}`)
    t.equal(res.headers['content-type'], 'application/octet-stream')
    const { json, binary } = splitBinary(res)
    t.same(json, { model_name: `id_${dt.toLowerCase()}`, id: dt, outputs: [{ name: 'y', datatype: dt, shape: [2, 2], parameters: { binary_data_size: bytes.byteLength } }] }, dt)
    t.same([...binary], [...bytes], `${dt} bytes round-trip`)
  }
})

t.test('binary extension: binary_data_output for all outputs, a per-output override, mixed JSON and binary inputs', async t => {
  const { app } = await oipApp(t, { 'twoway.onnx': twoWayModel() })
  const b = bytesOf(new Float32Array([4, 5]))
  const res = await app.inject({
    method: 'POST',
    url: '/v2/models/twoway/infer',
    ...binaryBody({
      parameters: { binary_data_output: true },
      inputs: [
        { name: 'a', shape: [1, 2], datatype: 'FP32', data: [2, 3] },
        { name: 'b', shape: [1, 2], datatype: 'FP32', parameters: { binary_data_size: 8 } },
      ],
      outputs: [{ name: 'sum' }, { name: 'product', parameters: { binary_data: false } }],
    }, b),
  })
  t.equal(res.statusCode, 200, res.body)
  const { json, binary } = splitBinary(res)
  t.same(json.outputs, [
    { name: 'sum', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } },
    { name: 'product', datatype: 'FP32', shape: [1, 2], data: [8, 15] },
  ])
  t.same([...new Float32Array(binary.buffer.slice(binary.byteOffset, binary.byteOffset + 8))], [6, 8])
  // JSON content type with the header works too (some clients send it).
  const json2 = binaryBody({ inputs: [{ name: 'a', shape: [1, 2], datatype: 'FP32', data: [1, 1] }, { name: 'b', shape: [1, 2], datatype: 'FP32', parameters: { binary_data_size: 8 } }] }, b)
  const res2 = await app.inject({ method: 'POST', url: '/v2/models/twoway/infer', headers: { ...json2.headers, 'content-type': 'application/json' }, payload: json2.payload })
  t.equal(res2.statusCode, 200, res2.body)
  t.same(res2.json().outputs[0].data, [5, 6])
})

t.test('binary extension errors', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'id_bytes.onnx': identityModel('string') })
  const header = (size: number) => ({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: size } }] })
  const data = bytesOf(new Float32Array([1, 2, 3, 4]))
  const cases: Array<[string, { headers: Record<string, string>, payload: Buffer }, RegExp]> = [
    ['size too small for the shape', binaryBody(header(12), data.subarray(0, 12)), /needs 16 bytes of binary data, got 12/],
    ['size past the end', binaryBody(header(32), data), /goes past the end/],
    ['bytes nobody claims', binaryBody(header(16), data, data), /16 bytes of binary data that no input claims/],
    ['binary_data_size with data', binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4], parameters: { binary_data_size: 16 } }] }, data), /both data and binary_data_size/],
    ['non-finite binary float', binaryBody(header(16), bytesOf(new Float32Array([1, NaN, 3, 4]))), /element 1 is not a finite FP32/],
    ['BYTES length past the end', binaryBody({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'BYTES', parameters: { binary_data_size: 6 } }] }, Uint8Array.from([9, 0, 0, 0, 65, 66])), /claims 9 bytes/],
    ['BYTES element with a NUL byte', binaryBody({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'BYTES', parameters: { binary_data_size: 7 } }] }, Uint8Array.from([3, 0, 0, 0, 65, 0, 66])), /BYTES element 0 holds a NUL character/],
  ]
  for (const [what, body, message] of cases) {
    const url = what.startsWith('BYTES') ? '/v2/models/id_bytes/infer' : '/v2/models/mlp/infer'
    const res = await app.inject({ method: 'POST', url, ...body })
    t.equal(res.statusCode, 400, what)
    t.match(res.json(), { code: 'BAD_REQUEST', statusCode: 400, error: message }, what)
  }
  const noHeader = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from('{}') })
  t.equal(noHeader.statusCode, 400)
  t.match(noHeader.json().error, /needs the inference-header-content-length header/)
  const badHeader = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '999' }, payload: Buffer.from('{}') })
  t.equal(badHeader.statusCode, 400)
  const noBinary = await infer(app, '/v2/models/mlp/infer', header(16))
  t.equal(noBinary.statusCode, 400)
  t.match(noBinary.json().error, /no binary data/)
  // Resource routes stay JSON-only: the octet-stream parser lives in the OIP scope.
  const scale = await app.inject({ method: 'POST', url: '/scale', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from('{}') })
  t.equal(scale.statusCode, 415)
})

t.test('tensor validation: every error is a 400 with the project error body, before ONNX Runtime', async t => {
  const { app } = await oipApp(t, {
    'mlp.onnx': addModel(),
    'fixed.onnx': fixedModel(),
    'twoway.onnx': twoWayModel(),
    'id_u8.onnx': identityModel('uint8'),
    'id_i64.onnx': identityModel('int64'),
    'id_bool.onnx': identityModel('bool'),
    'id_str.onnx': identityModel('string'),
    'id_f32.onnx': identityModel('float32'),
    'capped.onnx': addModel(),
    'capped.json': JSON.stringify({ maxBatchSize: 2 }),
  })
  const x = (over: Record<string, unknown> = {}) => ({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4], ...over }] })
  const cases: Array<[string, string, unknown, RegExp]> = [
    ['unknown input', 'mlp', { inputs: [{ name: 'z', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, /unknown input 'z'; the model's inputs are 'x'/],
    ['missing input', 'twoway', { inputs: [{ name: 'a', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }, /missing input 'b'/],
    ['duplicate input', 'mlp', { inputs: [x().inputs[0], x().inputs[0]] }, /given twice/],
    ['wrong datatype', 'mlp', x({ datatype: 'FP64' }), /expected datatype FP32, got FP64/],
    ['unknown datatype', 'mlp', x({ datatype: 'FLOAT' }), /unknown datatype 'FLOAT'/],
    ['element count vs shape', 'mlp', x({ shape: [2, 4] }), /needs 8 elements, got 4/],
    ['rank mismatch', 'mlp', x({ shape: [4] }), /rank 2.*rank 1/],
    ['fixed dimension mismatch', 'fixed', { inputs: [{ name: 'x', shape: [3, 2], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }] }, /dimension 0 must be 2, got 3/],
    ['inputs disagree on a shared dimension', 'twoway', { inputs: [{ name: 'a', shape: [1, 2], datatype: 'FP32', data: [1, 2] }, { name: 'b', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3, 4] }] }, /'batch'\) is 2, but input 'a' gives 'batch' = 1/],
    ['non-finite number (1e999 parses to Infinity)', 'mlp', '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,1e999]}]}', /element 3 is not a finite FP32/],
    ['FP32 overflow', 'mlp', x({ data: [1, 2, 3, 1e39] }), /element 3 is not a finite FP32/],
    ['string where a number goes', 'mlp', x({ data: [1, 2, 3, '4'] }), /element 3 must be a number/],
    ['integer overflow UINT8', 'id_u8', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'UINT8', data: [1, 256] }] }, /element 1 \(256\) is out of range for UINT8: 0 to 255/],
    ['negative UINT8', 'id_u8', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'UINT8', data: [-1] }] }, /out of range for UINT8/],
    ['fraction in an integer', 'id_u8', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'UINT8', data: [1.5] }] }, /must be an integer for UINT8/],
    ['INT64 beyond 2^53 in JSON', 'id_i64', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'INT64', data: [2 ** 60] }] }, /out of range for INT64.*binary data/],
    ['number where a BOOL goes', 'id_bool', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'BOOL', data: [1] }] }, /must be true or false/],
    ['batch over the model maximum', 'capped', { inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', data: new Array(12).fill(0) }] }, /batch size 3 is over the model's maximum of 2/],
    ['no data', 'mlp', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32' }] }, /has no data/],
    ['unknown field (strict schema)', 'mlp', { ...x(), extra: 1 }, /unknown field 'extra'/],
    ['negative dimension', 'mlp', x({ shape: [-1, 4] }), /must be >= 0/],
    ['id must be a string', 'mlp', { ...x(), id: 7 }, /id must be string/],
    ['a dimension over 2^31 - 1 (with another 0, no elements)', 'id_f32', { inputs: [{ name: 'x', shape: [0, 2 ** 32], datatype: 'FP32', data: [] }] }, /must be <= 2147483647/],
    ['a NUL inside a BYTES element', 'id_str', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'BYTES', data: ['a\0b'] }] }, /BYTES element 0 holds a NUL character/],
    ['a lone surrogate in a BYTES element', 'id_str', '{"inputs":[{"name":"x","shape":[1,2],"datatype":"BYTES","data":["ok","\\ud800"]}]}', /BYTES element 1 holds a lone UTF-16 surrogate/],
    ['an input named after an Object.prototype member', 'mlp', { inputs: [{ name: 'toString', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, /unknown input 'toString'/],
    ['__proto__ as an input name', 'mlp', '{"inputs":[{"name":"__proto__","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}', /unknown input '__proto__'/],
  ]
  for (const [what, model, payload, message] of cases) {
    const res = await app.inject({ method: 'POST', url: `/v2/models/${model}/infer`, headers: { 'content-type': 'application/json' }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) })
    t.equal(res.statusCode, 400, `${what}: ${res.body}`)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['code', 'error', 'statusCode'], what)
    t.match(body.error, message, what)
  }
  const unknownModel = await infer(app, '/v2/models/nope/infer', x())
  t.equal(unknownModel.statusCode, 404)
  t.equal(unknownModel.json().code, 'MODEL_NOT_FOUND')
  const unknownVersion = await infer(app, '/v2/models/mlp/versions/2/infer', x())
  t.equal(unknownVersion.statusCode, 404)
  const ok = await infer(app, '/v2/models/capped/infer', { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: new Array(8).fill(0) }] })
  t.equal(ok.statusCode, 200, 'a batch at the maximum is fine')
  // Data nested far deeper than the call stack: flattened in a loop, so the
  // answer is about the data, not a stack overflow.
  const deep = '{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":' + '['.repeat(20000) + '1' + ']'.repeat(20000) + '}]}'
  const nested = await app.inject({ method: 'POST', url: '/v2/models/id_f32/infer', headers: { 'content-type': 'application/json' }, payload: deep })
  t.equal(nested.statusCode, 200, 'deep nesting is read like any nesting')
  t.same(nested.json().outputs[0].data, [1])
  const biggest = await infer(app, '/v2/models/id_f32/infer', { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: ['3.4028235e38'].map(Number) }] })
  t.equal(biggest.statusCode, 200, 'float32\'s largest value as usually written (a little above it as a double) is accepted')
  t.equal(Math.fround(biggest.json().outputs[0].data[0]), 3.4028234663852886e38)
})

t.test('a model whose input is named after an Object.prototype member is served', async t => {
  const model = buildModel({
    name: 'odd_names',
    inputs: [{ name: 'constructor', type: 'float32', shape: ['batch', 2] }],
    outputs: [{ name: 'toString', type: 'float32', shape: ['batch', 2] }],
    nodes: [{ op: 'Identity', inputs: ['constructor'], outputs: ['toString'] }],
  })
  const { app } = await oipApp(t, { 'odd.onnx': model })
  const res = await infer(app, '/v2/models/odd/infer', { inputs: [{ name: 'constructor', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json().outputs, [{ name: 'toString', datatype: 'FP32', shape: [1, 2], data: [1, 2] }])
  const missing = await infer(app, '/v2/models/odd/infer', { inputs: [] })
  t.equal(missing.statusCode, 400)
  t.match(missing.json().error, /missing input 'constructor'/)
})

t.test('the media type is matched whatever its case', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  for (const type of ['Application/JSON', 'APPLICATION/JSON; charset=utf-8']) {
    const res = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': type }, payload: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }) })
    t.equal(res.statusCode, 200, `${type}: ${res.body}`)
  }
})

t.test('a body with no Content-Type, as tritonclient.http sends it, is read as JSON or as JSON then binary data', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const x = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
  const plain = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', payload: Buffer.from(JSON.stringify(x)) })
  t.equal(plain.statusCode, 200, plain.body)
  t.same(plain.json().outputs[0].data, [2, 4, 6, 8])
  const { headers, payload } = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, bytesOf(new Float32Array([1, 1, 1, 1])))
  const binary = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'inference-header-content-length': headers['inference-header-content-length'] }, payload })
  t.equal(binary.statusCode, 200, binary.body)
  t.same(binary.json().outputs[0].data, [2, 3, 4, 5])
  const garbage = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', payload: Buffer.from('not json') })
  t.equal(garbage.statusCode, 400)
  t.match(garbage.json(), { error: /^Body is not valid JSON: Unexpected token/, code: 'INVALID_JSON', statusCode: 400 }, 'no word of a content type it did not have')
  t.notMatch(garbage.json().error, /content-type/)
  // Other media types stay refused.
  const text = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'text/plain' }, payload: JSON.stringify(x) })
  t.equal(text.statusCode, 415)
  t.same(text.json(), { error: "content-type 'text/plain' is not supported: send the body as application/json, application/octet-stream (with inference-header-content-length) or with no content-type", code: 'UNSUPPORTED_MEDIA_TYPE', statusCode: 415 })
  // A content type fastify cannot even read as a media type gave the resource
  // routes' advice ("send the body as application/json"), without the binary
  // extension's octet-stream or the bare body tritonclient sends.
  for (const type of ['json', 'application/', ';charset=utf-8']) {
    const malformed = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': type }, payload: JSON.stringify(x) })
    t.same(malformed.json(), { error: `content-type '${type}' is not supported: send the body as application/json, application/octet-stream (with inference-header-content-length) or with no content-type`, code: 'UNSUPPORTED_MEDIA_TYPE', statusCode: 415 }, type)
  }
})

t.test('header values the OIP parser quotes are shortened, like every other client string', async t => {
  // Quoted whole, a 10,000-character header made a 10 kB error message.
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const long = 'x'.repeat(10_000)
  const encoding = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/json', 'content-encoding': long }, payload: '{}' })
  t.same(encoding.json(), { error: `content-encoding '${'x'.repeat(100)}...' is not supported: send gzip, deflate or identity`, code: 'UNSUPPORTED_MEDIA_TYPE', statusCode: 415 })
  const length = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'inference-header-content-length': long }, payload: '{}' })
  t.same(length.json(), { error: `inference-header-content-length must be an integer from 0 to the body's length (2), got '${'x'.repeat(100)}...'`, code: 'BAD_REQUEST', statusCode: 400 })
})

t.test('valid JSON with a __proto__ key is refused as such, not as invalid JSON; malformed JSON says why', async t => {
  // The resource routes said so (create-app.ts's whyNotJson); OIP's parser
  // answered fastify's "Body is not valid JSON but content-type is set to
  // 'application/json'" for both, INVALID_JSON for JSON that is valid.
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const poisoned = '{"inputs": [], "__proto__": {"x": 1}}'
  for (const headers of [{ 'content-type': 'application/json' }, {}, { 'inference-header-content-length': String(poisoned.length) }]) {
    const res = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers, payload: Buffer.from(poisoned) })
    t.same(res.json(), { error: 'body has a __proto__ or constructor.prototype key, which is refused (prototype poisoning)', code: 'BAD_REQUEST', statusCode: 400 }, JSON.stringify(headers))
  }
  const malformed = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/json' }, payload: '{"inputs": [' })
  t.same(malformed.json(), { error: 'Body is not valid JSON: Unexpected end of JSON input', code: 'INVALID_JSON', statusCode: 400 })
})

t.test('a body naming its model (model_name), as KServe\'s Python client sends every request, is served; the URL names the model', async t => {
  // KServe's InferRequest.to_rest() writes {"id", "model_name", "inputs", ...}, JSON
  // or JSON then binary data; the binary extension's example request has it too.
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'twoway.onnx': twoWayModel() })
  const json = await infer(app, '/v2/models/mlp/infer', { id: 'k-1', model_name: 'mlp', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
  t.equal(json.statusCode, 200, json.body)
  t.same(json.json(), { model_name: 'mlp', id: 'k-1', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [2, 4, 6, 8] }] })
  const binary = await app.inject({
    method: 'POST',
    url: '/v2/models/mlp/infer',
    ...binaryBody({ id: 'k-2', model_name: 'mlp', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, bytesOf(new Float32Array([1, 1, 1, 1]))),
  })
  t.equal(binary.statusCode, 200, binary.body)
  t.same(binary.json().outputs[0].data, [2, 3, 4, 5])
  // As Triton and KServe's server do, the field is not read: the URL's model answers.
  const other = await infer(app, '/v2/models/mlp/infer', { model_name: 'twoway', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] })
  t.equal(other.statusCode, 200, other.body)
  t.equal(other.json().model_name, 'mlp')
  const notString = await infer(app, '/v2/models/mlp/infer', { model_name: 7, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] })
  t.equal(notString.statusCode, 400)
  t.match(notString.json().error, /model_name must be string/)
})

t.test('a JSON body or JSON header whose bytes are not UTF-8 is a 400, not a BYTES element with U+FFFD', async t => {
  const { app } = await oipApp(t, { 'echo.onnx': identityModel('string') })
  const body = (text: Buffer) => Buffer.concat([Buffer.from('{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "BYTES", "data": ["'), text, Buffer.from('"]}]}')])
  const good = await app.inject({ method: 'POST', url: '/v2/models/echo/infer', payload: body(Buffer.from('caf\u00e9')), headers: { 'content-type': 'application/json' } })
  t.equal(good.statusCode, 200, good.body)
  t.same(good.json().outputs[0].data, ['caf\u00e9'])
  const latin1 = body(Buffer.from([0x63, 0x61, 0x66, 0xe9]))
  for (const headers of [{ 'content-type': 'application/json' }, {}]) {
    const res = await app.inject({ method: 'POST', url: '/v2/models/echo/infer', payload: latin1, headers })
    t.equal(res.statusCode, 400, JSON.stringify(headers))
    t.same(res.json(), { error: 'the body is not valid UTF-8: JSON bodies are read as UTF-8 whatever charset the content-type names', code: 'INVALID_JSON', statusCode: 400 })
  }
  const binary = await app.inject({
    method: 'POST',
    url: '/v2/models/echo/infer',
    payload: latin1,
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(latin1.length) },
  })
  t.same(binary.json(), { error: `the body's first ${latin1.length} bytes (inference-header-content-length) are not valid JSON`, code: 'INVALID_JSON', statusCode: 400 })
})

t.test('names and datatypes a client sends are quoted to 100 characters in error messages', async t => {
  // Quoted whole, a 500 kB input name made a 500 kB error body.
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const long = 'k'.repeat(500_000)
  const cases: Array<[unknown, RegExp]> = [
    [{ inputs: [{ name: long, shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] }, /^unknown input 'k{100}\.\.\.'; the model's inputs are 'x'$/],
    [{ inputs: [{ name: long, shape: [1, 4], datatype: long, data: [0, 0, 0, 0] }] }, /^input 'k{100}\.\.\.': unknown datatype 'k{100}\.\.\.'$/],
    [{ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }], outputs: [{ name: long }] }, /^unknown output 'k{100}\.\.\.'; the model's outputs are 'y'$/],
  ]
  for (const [payload, message] of cases) {
    const res = await infer(app, '/v2/models/mlp/infer', payload)
    t.equal(res.statusCode, 400)
    t.match(res.json().error, message)
    t.ok(res.body.length < 400, `${res.body.length} bytes`)
  }
})

t.test('a model name of up to 128 characters is served; a longer path segment is a short 400', async t => {
  // Names may have 128 characters (the repository's rule); fastify's router
  // took path parameters of 100 at most: the index listed the model, and
  // every one of its routes answered 400 "... is exceeding the max param length".
  const name = `m${'x'.repeat(127)}`
  const { app } = await oipApp(t, { [`${name}.onnx`]: addModel() })
  const metadata = await app.inject({ url: `/v2/models/${name}` })
  t.equal(metadata.statusCode, 200, metadata.body)
  t.equal(metadata.json().name, name)
  t.equal((await app.inject({ url: `/v2/models/${name}/ready` })).statusCode, 200)
  const res = await infer(app, `/v2/models/${name}/infer`, { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] }] })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json().outputs[0].data, [1, 2, 3, 4])
  const long = await app.inject({ url: `/v2/models/${'y'.repeat(5000)}` })
  t.equal(long.statusCode, 400)
  t.same(Object.keys(long.json()).sort(), ['code', 'error', 'statusCode'])
  t.match(long.json().error, /^a segment of the path '\/v2\/models\/y+\.\.\.' is longer than 128 characters$/)
  t.ok(long.body.length < 300, 'the 5 KB path is not repeated whole')
})

t.test('out-of-range embedding indices are a 400 that names the limit, never computed; the others in their batch are served', async t => {
  // ONNX Runtime failed the whole run on them: a 500 that did not say whose
  // fault it was. The store knows the table's rows from the file (onnx-graph.ts).
  const { app } = await oipApp(t, { 'embedding.onnx': embeddingModel() })
  const good = await infer(app, '/v2/models/embedding/infer', { inputs: [{ name: 'ids', shape: [1, 2], datatype: 'INT64', data: [1, 9] }] })
  t.equal(good.statusCode, 200)
  t.same(good.json().outputs[0].data, [2, 3, 18, 19])
  const negative = await infer(app, '/v2/models/embedding/infer', { inputs: [{ name: 'ids', shape: [1, 2], datatype: 'INT64', data: [-1, -10] }] })
  t.equal(negative.statusCode, 200, 'negative indices count from the end, as in ONNX')
  t.same(negative.json().outputs[0].data, [18, 19, 0, 1])
  for (const [ids, at] of [[[1, 10], 1], [[-11, 0], 0], [[1e9, 0], 0], [[0, -(2 ** 32)], 1], [[2 ** 32 + 1, 0], 0]] as Array<[number[], number]>) {
    const res = await infer(app, '/v2/models/embedding/infer', { inputs: [{ name: 'ids', shape: [1, 2], datatype: 'INT64', data: ids }] })
    t.equal(res.statusCode, 400, `ids ${ids}`)
    t.same(res.json(), {
      error: `input 'ids': element ${at} (${ids[at]}) is out of range: it indexes the 10 rows of the model's table 'table', so it must be from -10 to 9`,
      code: 'BAD_REQUEST',
      statusCode: 400,
    })
  }
  // Sent together, they would have shared a batch: the bad one is refused
  // before it is queued, the others compute.
  const answers = await Promise.all([0, 1, 2, 3, 4, 5].map(i => infer(app, '/v2/models/embedding/infer', { inputs: [{ name: 'ids', shape: [1, 1], datatype: 'INT64', data: [i === 3 ? 10 : i] }] })))
  t.same(answers.map(a => a.statusCode), [200, 200, 200, 400, 200, 200])
  t.same(answers[5].json().outputs[0].data, [10, 11])
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /\nonnx_serve_model_failed_total\{[^}]*name="embedding"[^}]*\} 0\n/, "no run failed")
})

t.test('an index out of range that the store cannot check beforehand (ids computed on, a GatherND) is a 400 with ONNX Runtime\'s reason; its batch\'s others are served', async t => {
  // ids + 1 before the lookup: the store does not follow an Add
  // (onnx-graph.ts), so ONNX Runtime finds the bad index, and the request,
  // rerun alone, got a 500 that hid why.
  const nd = buildModel({
    name: 'nd',
    inputs: [{ name: 'at', type: 'int64', shape: ['batch', 1] }],
    outputs: [{ name: 'rows', type: 'float32', shape: ['batch', 2] }],
    initializers: [EMBEDDING_TABLE],
    nodes: [{ op: 'GatherND', inputs: ['table', 'at'], outputs: ['rows'] }],
  })
  const { app } = await oipApp(t, { 'shifted.onnx': shiftedModel(), 'nd.onnx': nd })
  const ids = (data: number[]) => ({ inputs: [{ name: 'ids', shape: [1, data.length], datatype: 'INT64', data }] })
  const good = await infer(app, '/v2/models/shifted/infer', ids([0, 8]))
  t.equal(good.statusCode, 200)
  t.same(good.json().outputs[0].data, [2, 3, 18, 19])
  const bad = await infer(app, '/v2/models/shifted/infer', ids([1, 9]))
  t.equal(bad.statusCode, 400)
  t.same(bad.json(), {
    error: "the input's values are out of range for the model: its Gather node 'Gather_1' failed: indices element out of data bounds, idx=10 must be within the inclusive range [-10,9]",
    code: 'BAD_REQUEST',
    statusCode: 400,
  })
  const at = (i: number) => ({ inputs: [{ name: 'at', shape: [1, 1], datatype: 'INT64', data: [i] }] })
  t.same((await infer(app, '/v2/models/nd/infer', at(3))).json().outputs[0].data, [6, 7])
  const far = await infer(app, '/v2/models/nd/infer', at(12))
  t.equal(far.statusCode, 400)
  t.same(far.json(), { error: "the input's values are out of range for the model: its GatherND node 'GatherND_0' failed: invalid index found, index = 12", code: 'BAD_REQUEST', statusCode: 400 })
  // Sent together, they share a batch, which fails: each is rerun alone, and
  // only the bad one gets the 400.
  const answers = await Promise.all([0, 1, 2, 3, 4, 5].map(i => infer(app, '/v2/models/shifted/infer', ids([i === 3 ? 9 : i]))))
  t.same(answers.map(a => a.statusCode), [200, 200, 200, 400, 200, 200])
  t.same(answers[5].json().outputs[0].data, [12, 13])
  // The client's error, not the model's: an alert on failures does not fire.
  const metrics = (await app.inject({ url: '/metrics' })).body
  const sample = (name: string, model: string) => Number(new RegExp(`^${name}\\{[^}]*\\bname="${model}"[^}]*\\} (\\S+)$`, 'm').exec(metrics)?.[1])
  t.equal(sample('onnx_serve_model_failed_total', 'shifted'), 0, 'no failure counted')
  t.equal(sample('onnx_serve_model_bad_input_total', 'shifted'), 2, 'the two bad requests counted as bad input')
  t.equal(sample('onnx_serve_model_bad_input_total', 'nd'), 1)
})

t.test('a shape a model\'s dynamic dimensions declare but its graph cannot take is a 400 naming the input and ONNX Runtime\'s reason; its batch\'s others are served; a model that fails on every input stays a 500', async t => {
  const flat = { name: 'to', type: 'int64' as const, dims: [2], data: new BigInt64Array([-1n, 4n]) }
  // Takes [batch, n], but only when batch * n is a multiple of 4.
  const quads = buildModel({
    name: 'quads',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 'n'] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['rows', 4] }],
    initializers: [flat],
    nodes: [{ op: 'Reshape', inputs: ['x', 'to'], outputs: ['y'] }],
  })
  // Its input fixed at [1, 3], and a Reshape to twice its shape, [2, 6],
  // which ONNX Runtime's checks at load do not follow: every request fails.
  const broken = buildModel({
    name: 'broken',
    inputs: [{ name: 'x', type: 'float32', shape: [1, 3] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['a', 'b'] }],
    initializers: [{ name: 'two', type: 'int64', dims: [1], data: new BigInt64Array([2n]) }],
    nodes: [
      { op: 'Shape', inputs: ['x'], outputs: ['s'] },
      { op: 'Mul', inputs: ['s', 'two'], outputs: ['t'] },
      { op: 'Reshape', inputs: ['x', 't'], outputs: ['y'] },
    ],
  })
  // Requests wait for company: those sent together share a batch.
  const { app } = await oipApp(t, { 'quads.onnx': quads, 'quads.json': '{"maxQueueDelayMs": 300}', 'broken.onnx': broken })
  const x = (rows: number, n: number) => ({ inputs: [{ name: 'x', shape: [rows, n], datatype: 'FP32', data: new Array(rows * n).fill(1) }] })
  const sample = async (name: string, model: string) => {
    const metrics = (await app.inject({ url: '/metrics' })).body
    return Number(new RegExp(`^${name}\\{[^}]*\\bname="${model}"[^}]*\\} (\\S+)$`, 'm').exec(metrics)?.[1])
  }
  // The warm-up runs on zeros at load (broken's fails) are not counted.
  t.same(await Promise.all(['requests', 'failed', 'bad_input'].map(what => sample(`onnx_serve_model_${what}_total`, 'broken'))), [0, 0, 0], 'no request counted before any client sent one')
  t.same(await Promise.all(['requests', 'batches'].map(what => sample(`onnx_serve_model_${what}_total`, 'quads'))), [0, 0])
  const counts = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(['quads', 'broken'].flatMap(model => ['failed', 'bad_input'].map(async what =>
    [`${model} ${what}`, await sample(`onnx_serve_model_${what}_total`, model)]))))
  const before = await counts()
  const good = await infer(app, '/v2/models/quads/infer', x(2, 2))
  t.equal(good.statusCode, 200, good.body)
  t.same(good.json().outputs[0].shape, [1, 4])
  const bad = await infer(app, '/v2/models/quads/infer', x(1, 3))
  t.equal(bad.statusCode, 400, bad.body)
  t.same(bad.json(), {
    error: "the shape of input 'x' ([1, 3]) does not suit the model: its Reshape node 'Reshape_0' failed: The input tensor cannot be reshaped to the requested shape. Input shape:{1,3}, requested shape:{-1,4}",
    code: 'BAD_REQUEST',
    statusCode: 400,
  })
  // [4, 3] reshapes, [1, 3] does not, and their batch of [5, 3] does not:
  // each is rerun alone, and only the bad one gets the 400.
  const answers = await Promise.all([x(4, 3), x(1, 3)].map(body => infer(app, '/v2/models/quads/infer', body)))
  t.same(answers.map(a => a.statusCode), [200, 400])
  t.same(answers[0].json().outputs[0].shape, [3, 4])
  const fails = await infer(app, '/v2/models/broken/infer', x(1, 3))
  t.equal(fails.statusCode, 500, 'a model whose inputs are fixed fails on every request alike: the server\'s error')
  t.same(fails.json(), { error: 'Internal server error', code: 'INTERNAL_ERROR', statusCode: 500 })
  t.equal(await sample('onnx_serve_model_largest_batch_items', 'quads'), 5, 'the two shared a batch')
  const after = await counts()
  const added = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k]]))
  // The client's error, not the model's: an alert on failures does not fire.
  t.same(added, { 'quads failed': 0, 'quads bad_input': 2, 'broken failed': 1, 'broken bad_input': 0 })
})

t.test('a failed model is reported not-ready with its reason and does not take the others down', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel(), 'broken.onnx': 'not a model', 'badcfg.onnx': addModel(), 'badcfg.json': '{"maxBatchSize": -1}' })
  t.equal((await app.inject({ url: '/v2/health/ready' })).statusCode, 200)
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'readiness does not wait for a model that failed (README, Health)')
  const ready = await app.inject({ url: '/v2/models/broken/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { name: 'broken', ready: false, code: 'MODEL_NOT_READY', error: /cannot load model 'broken' from broken\.onnx/ })
  t.notMatch(ready.json().error, /\/tmp\//, 'no absolute paths in the reason')
  const cfg = await app.inject({ url: '/v2/models/badcfg' })
  t.equal(cfg.statusCode, 503)
  t.match(cfg.json().error, /invalid batching options in badcfg\.json: maxBatchSize must be a positive integer, got -1/)
  const res = await infer(app, '/v2/models/broken/infer', { inputs: [] })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.equal((await infer(app, '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })).statusCode, 200)
})

t.test('stopOnModelFailure: a failed model fails the start-up', async t => {
  const { app } = await oipApp(t, { 'broken.onnx': 'not a model' }, { stopOnModelFailure: true, load: false })
  await t.rejects(app.loadResources(), /models failed to load.*\n.*model 'broken'/)
  t.equal(app.lifecycle.state, 'failed')
})

t.test('the OIP routes are in /openapi.json', async t => {
  const { app } = await oipApp(t, {}, { repositoryApi: true })
  const doc = (await app.inject({ url: '/openapi.json' })).json()
  for (const path of ['/v2', '/v2/health/live', '/v2/health/ready', '/v2/models/{name}', '/v2/models/{name}/versions/{version}',
    '/v2/models/{name}/ready', '/v2/models/{name}/infer', '/v2/models/{name}/versions/{version}/infer',
    '/v2/repository/index', '/v2/repository/models/{name}/load', '/v2/repository/models/{name}/unload']) {
    t.ok(doc.paths[path], path)
  }
  t.ok(doc.paths['/v2/models/{name}/infer'].post.requestBody.content['application/json'].schema.properties.inputs)
  t.ok(doc.paths['/scale'], 'resource routes still there')
})

t.test('binary_data_output must be a boolean, like binary_data', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  for (const value of ['true', 1, null]) {
    const res = await infer(app, '/v2/models/mlp/infer', { parameters: { binary_data_output: value }, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
    t.equal(res.statusCode, 400, `${JSON.stringify(value)}: ${res.body}`)
    t.match(res.json(), { code: 'BAD_REQUEST', error: /binary_data_output must be true or false/ })
  }
  const off = await infer(app, '/v2/models/mlp/infer', { parameters: { binary_data_output: false }, inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
  t.same(off.json().outputs[0].data, [2, 4, 6, 8])
})

t.test('an inference that ends after its deadline answered 504 logs nothing', async t => {
  // fastify logged the late answer of a run that was computing as a warning
  // ("Reply was already sent"), and the deadline's error of a queued run it
  // dropped as an error with its stack.
  const lines: string[] = []
  const { app } = await oipApp(t, { 'slow.onnx': slowModel(3) }, { logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } as never })
  const body = { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [1] }] }
  const send = (timeout: string) => app.inject({ method: 'POST', url: '/v2/models/slow/infer', headers: { 'x-request-timeout': timeout }, payload: body })
  // The first computes past its deadline; the second waits behind it and is dropped.
  const [computing, queued] = await Promise.all([send('0.02'), send('0.04')])
  t.equal(computing.statusCode, 504)
  t.equal(queued.statusCode, 504)
  // Once the run is over, its late answer is dropped.
  const ok = await send('30')
  t.equal(ok.statusCode, 200)
  t.same(lines, [], 'no warning, no error')
})

t.test('parameters.timeout: integer microseconds >= 0, anything else a 400 rather than no deadline', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const x = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
  for (const value of ['100000', -5, 1.5, true, null, { us: 1 }]) {
    const res = await infer(app, '/v2/models/mlp/infer', { ...x, parameters: { timeout: value } })
    t.equal(res.statusCode, 400, `${JSON.stringify(value)}: ${res.body}`)
    t.match(res.json(), { code: 'BAD_REQUEST', error: /parameters\.timeout must be an integer number of microseconds >= 0/ })
  }
  const infinite = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/json' }, payload: '{"parameters":{"timeout":1e999},"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}' })
  t.equal(infinite.statusCode, 400, '1e999 parses to Infinity')
  t.match(infinite.json().error, /got Infinity/)
  for (const value of [0, 5_000_000]) {
    const res = await infer(app, '/v2/models/mlp/infer', { ...x, parameters: { timeout: value } })
    t.equal(res.statusCode, 200, `${value}: ${res.body}`)
  }
})

t.test('an output asking for classification (an extension this server lacks) is a 400, not the raw tensor', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const x = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
  t.notOk((await app.inject({ url: '/v2' })).json().extensions.includes('classification'))
  const res = await infer(app, '/v2/models/mlp/infer', { ...x, outputs: [{ name: 'y', parameters: { classification: 2 } }] })
  t.equal(res.statusCode, 400, res.body)
  t.match(res.json(), { code: 'BAD_REQUEST', error: /output 'y': the classification extension is not supported/ })
  const none = await infer(app, '/v2/models/mlp/infer', { ...x, outputs: [{ name: 'y', parameters: { classification: 0 } }] })
  t.equal(none.statusCode, 200, '0 asks for no classification')
})

t.test('content-encoding gzip and deflate (tritonclient request compression) are inflated; others are refused', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() }, { bodyLimit: 64 * 1024 })
  const x = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
  const gz = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: gzipSync(x) })
  t.equal(gz.statusCode, 200, gz.body)
  t.same(gz.json().outputs[0].data, [2, 4, 6, 8])
  // Binary data: the header length counts the inflated JSON, as tritonclient computes it.
  const { headers, payload } = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, bytesOf(new Float32Array([1, 1, 1, 1])))
  const deflated = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'inference-header-content-length': headers['inference-header-content-length'], 'content-encoding': 'deflate' }, payload: deflateSync(payload) })
  t.equal(deflated.statusCode, 200, deflated.body)
  t.same(deflated.json().outputs[0].data, [2, 3, 4, 5])
  const cases: Array<[string, Record<string, string>, Buffer, number, string, RegExp]> = [
    ['unknown coding', { 'content-encoding': 'br' }, Buffer.from(x), 415, 'UNSUPPORTED_MEDIA_TYPE', /content-encoding 'br' is not supported/],
    ['not gzip data', { 'content-encoding': 'gzip' }, Buffer.from(x), 400, 'BAD_REQUEST', /not valid gzip data/],
    ['inflates past the body limit', { 'content-encoding': 'gzip' }, gzipSync(Buffer.alloc(1024 * 1024, 32)), 413, 'PAYLOAD_TOO_LARGE', /more than the body limit of 65536 bytes/],
  ]
  for (const [what, extra, body, status, code, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/json', ...extra }, payload: body })
    t.equal(res.statusCode, status, `${what}: ${res.body}`)
    t.match(res.json(), { code, statusCode: status, error: message }, what)
  }
  const after = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': 'application/json' }, payload: x })
  t.equal(after.statusCode, 200, 'an uncompressed body as before')
})

t.test('a binary body whose JSON header does not parse: the error names the header length, not application/json', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const { headers, payload } = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, bytesOf(new Float32Array([1, 1, 1, 1])))
  const n = Number(headers['inference-header-content-length'])
  // (0 is no JSON header at all: a raw binary request, tested below.)
  for (const [length, message] of [[n - 1, `the body's first ${n - 1} bytes (inference-header-content-length) are not valid JSON`], [n + 3, `the body's first ${n + 3} bytes (inference-header-content-length) are not valid JSON`]] as const) {
    for (const type of ['application/octet-stream', 'application/json']) {
      const res = await app.inject({ method: 'POST', url: '/v2/models/mlp/infer', headers: { 'content-type': type, 'inference-header-content-length': String(length) }, payload })
      t.same(res.json(), { error: message, code: 'INVALID_JSON', statusCode: 400 }, `${type}, header length ${length}`)
    }
  }
})

t.test('raw binary request (inference-header-content-length: 0): the body is the only input\'s data, its shape deduced, every output binary', async t => {
  // Triton's binary tensor data extension, "Raw Binary Request".
  const { app } = await oipApp(t, {
    'mlp.onnx': addModel(),
    'fixed.onnx': fixedModel(),
    'twoway.onnx': twoWayModel(),
    'id_f32.onnx': identityModel('float32'),
    'id_str.onnx': identityModel('string'),
    'two_free.onnx': buildModel({
      name: 'two_free',
      inputs: [{ name: 'x', type: 'float32', shape: [2, 'a', 'b'] }],
      outputs: [{ name: 'y', type: 'float32', shape: [2, 'a', 'b'] }],
      nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
    }),
  })
  const raw = (model: string, data: Uint8Array, type: string | undefined = 'application/octet-stream') => app.inject({
    method: 'POST',
    url: `/v2/models/${model}/infer`,
    headers: { 'inference-header-content-length': '0', ...(type ? { 'content-type': type } : {}) },
    payload: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
  })
  const one = await raw('mlp', bytesOf(new Float32Array([1, 1, 1, 1])))
  t.equal(one.statusCode, 200, one.body)
  t.equal(one.headers['content-type'], 'application/octet-stream')
  const { json, binary } = splitBinary(one)
  t.same(json, { model_name: 'mlp', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }] })
  t.same([...new Float32Array(binary.buffer.slice(binary.byteOffset, binary.byteOffset + binary.byteLength))], [2, 3, 4, 5])
  const noType = await raw('mlp', bytesOf(new Float32Array([1, 1, 1, 1, 0, 0, 0, 0])), undefined)
  t.equal(noType.statusCode, 200, noType.body)
  t.same(splitBinary(noType).json.outputs[0].shape, [2, 4], 'the one variable-size dimension is deduced from the size')
  t.equal((await raw('fixed', bytesOf(new Float32Array(6)))).statusCode, 200, 'a fixed shape')
  const batchOfOne = await raw('id_f32', bytesOf(new Float32Array([1, 2, 3])))
  t.equal(batchOfOne.statusCode, 200, batchOfOne.body)
  t.same(splitBinary(batchOfOne).json.outputs[0].shape, [1, 3], '[batch, n]: a batch of one, n deduced')
  const text = Buffer.from('héllo', 'utf8')
  const bytes = await raw('id_str', text)
  t.equal(bytes.statusCode, 200, bytes.body)
  const out = splitBinary(bytes)
  t.same(out.json.outputs[0], { name: 'y', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: 4 + text.length } })
  t.equal(out.binary.readUInt32LE(0), text.length)
  t.equal(out.binary.subarray(4).toString('utf8'), 'héllo', 'a BYTES input takes the body as its one element')
  const refusals: Array<[string, string, Uint8Array, RegExp]> = [
    ['not a whole number of rows', 'mlp', bytesOf(new Float32Array(3)), /12 bytes are not a whole number of FP32 slices of 16 bytes for input 'x'/],
    ['a fixed shape of another size', 'fixed', bytesOf(new Float32Array(4)), /shape \[2, 3\] of FP32 needs 24 bytes of binary data, got 16/],
    ['two inputs', 'twoway', bytesOf(new Float32Array(4)), /needs a model with one input; model 'twoway' has 2/],
    ['two variable-size dimensions', 'two_free', bytesOf(new Float32Array(4)), /input 'x' \(\[2, -1, -1\]\) cannot be deduced.*more than one variable-size dimension/],
  ]
  for (const [what, model, data, message] of refusals) {
    const res = await raw(model, data)
    t.equal(res.statusCode, 400, what)
    t.match(res.json(), { code: 'BAD_REQUEST', error: message }, what)
  }
})

t.test('shared memory regions (an extension this server lacks) are refused for inputs and outputs, not ignored', async t => {
  const { app } = await oipApp(t, { 'mlp.onnx': addModel() })
  const x = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }
  const shm = { shared_memory_region: 'out0', shared_memory_byte_size: 16 }
  const output = await infer(app, '/v2/models/mlp/infer', { ...x, outputs: [{ name: 'y', parameters: shm }] })
  t.equal(output.statusCode, 400, output.body)
  t.match(output.json(), { code: 'BAD_REQUEST', error: /output 'y': the shared memory extensions are not supported/ })
  const input = await infer(app, '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { shared_memory_region: 'in0', shared_memory_byte_size: 16 } }] })
  t.equal(input.statusCode, 400, input.body)
  t.match(input.json(), { code: 'BAD_REQUEST', error: /input 'x': the shared memory extensions are not supported/ })
})

t.test('tensors named __proto__: a model\'s inputs and outputs are served, alone and batched; a request naming one the model lacks is a 400', async t => {
  const outputs = buildModel({
    name: 'proto_out',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 2] }],
    outputs: [{ name: '__proto__', type: 'float32', shape: ['batch', 2] }, { name: 'hasOwnProperty', type: 'float32', shape: ['batch', 2] }],
    initializers: [{ name: 'one', type: 'float32', dims: [1], data: new Float32Array([1]) }],
    nodes: [
      { op: 'Identity', inputs: ['x'], outputs: ['__proto__'] },
      { op: 'Add', inputs: ['x', 'one'], outputs: ['hasOwnProperty'] },
    ],
  })
  const inputs = buildModel({
    name: 'proto_in',
    inputs: [{ name: '__proto__', type: 'float32', shape: ['batch', 2] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 2] }],
    nodes: [{ op: 'Identity', inputs: ['__proto__'], outputs: ['y'] }],
  })
  // Run inline (on the main thread) and on an inference thread (the tensors cross postMessage).
  for (const inlineBelowUs of [50, 0]) {
    const { app } = await oipApp(t, { 'out.onnx': outputs, 'in.onnx': inputs, 'twoway.onnx': twoWayModel() }, { inlineBelowUs })
    const x = (name: string, v: number) => ({ name, shape: [1, 2], datatype: 'FP32', data: [v, 2] })
    const res = await infer(app, '/v2/models/out/infer', { inputs: [x('x', 1)] })
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json().outputs, [
      { name: '__proto__', datatype: 'FP32', shape: [1, 2], data: [1, 2] },
      { name: 'hasOwnProperty', datatype: 'FP32', shape: [1, 2], data: [2, 3] },
    ])
    const one = await infer(app, '/v2/models/out/infer', { inputs: [x('x', 1)], outputs: [{ name: '__proto__', parameters: { binary_data: true } }] })
    t.equal(one.statusCode, 200, one.body)
    const { json, binary } = splitBinary(one)
    t.same(json.outputs, [{ name: '__proto__', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } }])
    t.same([...new Float32Array(binary.buffer.slice(binary.byteOffset, binary.byteOffset + 8))], [1, 2])
    const fed = await infer(app, '/v2/models/in/infer', { inputs: [x('__proto__', 1)] })
    t.equal(fed.statusCode, 200, fed.body)
    t.same(fed.json().outputs, [{ name: 'y', datatype: 'FP32', shape: [1, 2], data: [1, 2] }])
    // Concurrent requests are merged into one run and split back.
    const values = [1, 2, 3, 4, 5, 6]
    const many = await Promise.all(values.map(v => infer(app, '/v2/models/out/infer', { inputs: [x('x', v)] })))
    const manyFed = await Promise.all(values.map(v => infer(app, '/v2/models/in/infer', { inputs: [x('__proto__', v)] })))
    for (const [i, v] of values.entries()) {
      t.equal(many[i].statusCode, 200, many[i].body)
      t.same(many[i].json().outputs.map((o: { data: number[] }) => o.data), [[v, 2], [v + 1, 3]])
      t.equal(manyFed[i].statusCode, 200, manyFed[i].body)
      t.same(manyFed[i].json().outputs[0].data, [v, 2])
    }
    const metrics = (await app.inject({ url: '/metrics' })).body
    const largest = (name: string) => Number(new RegExp(`^onnx_serve_model_largest_batch_items\\{[^}]*name="${name}"[^}]*\\} (\\d+)$`, 'm').exec(metrics)?.[1])
    t.ok(largest('out') > 1, 'outputs split from a batch')
    t.ok(largest('in') > 1, 'inputs merged into a batch')
    // A model without such tensors: the names are unknown, as any other.
    const ab = [x('a', 2), x('b', 4)]
    const output = await infer(app, '/v2/models/twoway/infer', { inputs: ab, outputs: [{ name: '__proto__' }] })
    t.equal(output.statusCode, 400, output.body)
    t.match(output.json().error, /unknown output '__proto__'/)
    const extra = await infer(app, '/v2/models/twoway/infer', { inputs: [...ab, x('__proto__', 1)] })
    t.equal(extra.statusCode, 400, extra.body)
    t.match(extra.json().error, /'__proto__'/)
  }
})
