// The Open Inference Protocol (KServe V2, Triton's and MLServer's HTTP API)
// over the model repository: every model in the models directory is an
// endpoint, with no code. A fastify plugin, mounted from app.ts:
//
//   app.register(openInferenceProtocol, { repositoryApi: options.repositoryApi })
//
//   GET  /v2/health/live                      {"live": true}
//   GET  /v2/health/ready                     {"live": true, "ready": true} (503 while loading, draining, or a model is unavailable)
//   GET  /v2 (or /v2/)                        {"name", "version", "extensions"}
//   GET  /v2/models/{name}[/versions/{v}]     {"name", "versions", "platform", "inputs", "outputs"}
//   GET  /v2/models/{name}[/versions/{v}]/ready
//   POST /v2/models/{name}[/versions/{v}]/infer
//   POST /v2/repository/index                 (with repositoryApi)
//   POST /v2/repository/models/{name}/load    (with repositoryApi)
//   POST /v2/repository/models/{name}/unload  (with repositoryApi)
//
//   curl -s localhost:8000/v2/models/mlp/infer -H 'content-type: application/json' \
//     -d '{"id":"1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
//   -> {"model_name":"mlp","id":"1","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[...]}]}
//
// Binary tensor data extension: a body of JSON then raw tensors, the JSON's
// length in `Inference-Header-Content-Length`. Its parser is registered in
// this plugin's scope only; resource routes stay JSON-only. A length of 0 is
// the extension's raw binary request: no JSON at all, the body is the data of
// the model's only input, whose shape is deduced from its size (rawRequest).
//
// Server readiness follows the app's lifecycle (ready once start-up loading is
// done), not every model: a model that failed to load is reported by its own
// ready route and the repository index, and does not take the server down.
// It is /health/ready's (health.ts's notReady): 503 too while a loaded model
// is held by no inference thread, which every request of it would get.
// While the app drains, inference is served as on the resource routes (the
// app's onSend hook adds `Connection: close`): a cluster worker that a HUP,
// --max-requests or TTOU replaces drains, and what reaches it meanwhile is a
// request to a server that goes on.
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isUtf8 } from 'node:buffer'
import { gunzip, inflate } from 'node:zlib'
import { ErrorBody, HttpError, errorBody, notUtf8, payloadTooLarge, sendError, sendOverloaded, shown, shownValue, unsupportedMediaType } from './errors.ts'
import { answerOtherVerbs, contentCodings, readWhole, whyNotJson, withoutBom, type BodyParser } from './create-app.ts'
import { notReady } from './health.ts'
import { limitDeadline, quietPastDeadline, type RouteHandler } from './deadline.ts'
import { ModelRepository, type RepositoryModel, type ServedVersion } from './repository.ts'
import type { LoadedModel } from './models.ts'
import type { Tensor } from './tensor.ts'
import { fastJson, NOT_READ } from './fast-json.ts'
import {
  ELEMENT_SIZE, checkBatch, checkInput, dataBinary, dataJson, datatypeOf, elementCount, fromBinary, fromJson,
  isDatatype, oipShape, tensorMetadata, type RequestInput,
} from './oip-tensors.ts'

export interface OipOptions {
  /** Serve the repository extension (load, unload, index): off by default, it is a management action. */
  repositoryApi?: boolean
  /** A model that fails to load at start-up stops the server instead of being reported. */
  stopOnModelFailure?: boolean
  serverName?: string
  serverVersion?: string
}

const TAG = 'Open Inference Protocol'
export const PLATFORM = 'onnx_onnxv1'
const HEADER_LENGTH = 'inference-header-content-length'
const MAX_ELEMENTS = 2 ** 31 - 1
/** The content codings the /v2 routes undo, by name (x-gzip is gzip, RFC 9110 8.4.1.3). */
const DECODERS: Record<string, typeof gunzip> = { gzip: gunzip, 'x-gzip': gunzip, deflate: inflate }
/** Most codings a Content-Encoding may list (identity aside). */
const MAX_CODINGS = 4

const Parameters = Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form key/value parameters' })
// Each dimension bounded too: with another dimension 0, the element count alone says nothing.
const Shape = Type.Array(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }), { description: 'Dimensions, row-major' })
const MetadataTensor = Type.Object({ name: Type.String(), datatype: Type.String(), shape: Type.Array(Type.Integer({ description: '-1 for a dynamic dimension' })) })

const RequestInputSchema = Type.Object({
  name: Type.String(),
  shape: Shape,
  datatype: Type.String({ description: 'BOOL, UINT8..UINT64, INT8..INT64, FP16 (binary only), FP32, FP64, BYTES' }),
  parameters: Type.Optional(Parameters),
  data: Type.Optional(Type.Unknown({ description: 'Elements, flat or nested, row-major; omit with parameters.binary_data_size' })),
}, { additionalProperties: false })

const InferRequest = Type.Object({
  id: Type.Optional(Type.String()),
  // Not in the spec's $inference_request, but in its binary extension's
  // example, and KServe's Python client (InferRequest.to_rest) sends it with
  // every request. The URL names the model, as in Triton and KServe's server,
  // which ignore this field: so does this server.
  model_name: Type.Optional(Type.String({ description: 'Ignored: the URL names the model (KServe\'s client sends it)' })),
  parameters: Type.Optional(Parameters),
  inputs: Type.Array(RequestInputSchema),
  // None, or an empty list (as Triton reads it): every output of the model.
  outputs: Type.Optional(Type.Array(Type.Object({ name: Type.String(), parameters: Type.Optional(Parameters) }, { additionalProperties: false }), {
    description: 'The outputs to send; all of them when absent or empty',
  })),
}, { additionalProperties: false, title: 'InferenceRequest' })
type InferRequest = Static<typeof InferRequest>

const InferResponse = Type.Object({
  model_name: Type.String(),
  model_version: Type.Optional(Type.String()),
  id: Type.Optional(Type.String()),
  parameters: Type.Optional(Parameters),
  outputs: Type.Array(Type.Object({
    name: Type.String(),
    datatype: Type.String(),
    shape: Type.Array(Type.Integer()),
    parameters: Type.Optional(Parameters),
    data: Type.Optional(Type.Array(Type.Unknown())),
  })),
}, { title: 'InferenceResponse' })

const ModelMetadata = Type.Object({
  name: Type.String(),
  versions: Type.Optional(Type.Array(Type.String())),
  platform: Type.String(),
  inputs: Type.Array(MetadataTensor),
  outputs: Type.Array(MetadataTensor),
  parameters: Type.Optional(Parameters),
})

const ModelReady = Type.Object({
  name: Type.String(),
  ready: Type.Boolean(),
  error: Type.Optional(Type.String()),
  code: Type.Optional(Type.String()),
  statusCode: Type.Optional(Type.Integer()),
})

const IndexEntry = Type.Object({ name: Type.String(), version: Type.Optional(Type.String()), state: Type.String(), reason: Type.String() })

const ModelParams = Type.Object({ name: Type.String() })
const VersionParams = Type.Object({ name: Type.String(), version: Type.String() })
const errors = { '4xx': ErrorBody, '5xx': ErrorBody }

/** Binary tensor data that followed a parsed JSON header, by header object. */
const binaryBodies = new WeakMap<object, Buffer>()
/** The stand-in bodies of raw binary requests (no JSON header): their binary data is the whole body. */
const rawBodies = new WeakSet<object>()

const bad = (message: string) => new HttpError('BAD_REQUEST', message)
const modelNotReady = (message: string) => new HttpError('MODEL_NOT_READY', message, { headers: { 'retry-after': '1' } })

export async function openInferenceProtocol (app: FastifyInstance, options: OipOptions = {}) {
  // Every OIP route answers the verbs it lacks with 405 and Allow, like the
  // resources do: the routes declared below are collected, then completed.
  const verbsByUrl = new Map<string, Set<string>>()
  let completing = false
  app.addHook('onRoute', route => {
    if (completing) return
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const set = verbsByUrl.get(route.url) ?? new Set<string>()
    for (const m of methods) if (m !== 'HEAD') set.add(m)
    verbsByUrl.set(route.url, set)
  })
  const store = app.models
  const lifecycle = app.lifecycle
  const repository = new ModelRepository({ store, dir: store.options.dir, log: app.log, stopOnFailure: options.stopOnModelFailure })
  repository.discover()
  app.onLoad('the model repository', () => repository.loadAll())
  app.onReload(() => repository.reload())

  // JSON, or JSON followed by binary tensors (binary tensor data extension).
  // Scoped to this plugin: fastify copies parsers into each encapsulation context.
  const json = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  const parseBody: BodyParser = (request, body, done) => {
    const raw = request.headers[HEADER_LENGTH]
    const type = request.headers['content-type']
    if (raw === undefined) {
      if (type !== undefined && !type.toLowerCase().startsWith('application/json')) {
        return done(bad(`an application/octet-stream body needs the ${HEADER_LENGTH} header (binary tensor data extension)`), undefined)
      }
      // A byte order mark before the JSON is skipped (a mark alone is no body).
      const buffer = withoutBom(body as Buffer)
      if (buffer.length === 0) return done(null, undefined)
      if (!isUtf8(buffer)) return done(notUtf8(), undefined)
      const read = fastJson(buffer)
      if (read !== NOT_READ) return done(null, read)
      // As on the resource routes: where the JSON breaks, or that valid JSON
      // was refused for a __proto__ key (fastify said "not valid JSON" for
      // both, and that the content type was application/json, sent or not).
      const text = buffer.toString('utf8')
      return json(request, text, (err, parsed) => done(err && whyNotJson(err, text), parsed))
    }
    const buffer = body as Buffer
    const n = Number(raw)
    if (typeof raw !== 'string' || !/^[0-9]+$/.test(raw) || n > buffer.length) {
      return done(bad(`${HEADER_LENGTH} must be an integer from 0 to the body's length (${buffer.length}), got '${shown(String(raw))}'`), undefined)
    }
    if (n === 0 && request.routeOptions.url?.endsWith('/infer')) {
      // A raw binary request: the route's handler makes its request from the
      // model's metadata (rawRequest); this stand-in passes the body schema.
      const stand = { inputs: [] }
      rawBodies.add(stand)
      binaryBodies.set(stand, buffer)
      return done(null, stand)
    }
    // A byte order mark before the JSON header is part of it: counted in the
    // header length (the bytes the client wrote), then skipped.
    const header = withoutBom(buffer.subarray(0, n))
    // fastify's message names application/json and the whole body; here the
    // JSON is the first n bytes, and a wrong n is the usual cause (one that
    // reaches into the binary data is not even UTF-8).
    const notJson = () => new HttpError('INVALID_JSON', n === 0 ? `the JSON header is empty (${HEADER_LENGTH}: 0)` : `the body's first ${n} bytes (${HEADER_LENGTH}) are not valid JSON`)
    if (!isUtf8(header)) return done(notJson(), undefined)
    const withBinary = (parsed: unknown) => {
      if (typeof parsed === 'object' && parsed !== null) binaryBodies.set(parsed, buffer.subarray(n))
      else if (buffer.length > n) {
        // No object to hold the bytes after it: the repository routes read
        // a null header as no body and served the request, bytes ignored.
        const kind = parsed === null ? 'null' : `a ${typeof parsed}`
        return done(bad(`the JSON header (${HEADER_LENGTH}: ${n}) is ${kind}, not an object, and ${buffer.length - n} bytes follow it`), undefined)
      }
      done(null, parsed)
    }
    const read = fastJson(header)
    if (read !== NOT_READ) return withBinary(read)
    const text = header.toString('utf8')
    json(request, text, (err, parsed) => {
      if (!err) return withBinary(parsed)
      // Valid JSON with a __proto__ key: said so, as above.
      const why = whyNotJson(err, text)
      done(why instanceof HttpError && why.code === 'BAD_REQUEST' ? why : notJson(), undefined)
    })
  }
  // Content-Encoding gzip or deflate (tritonclient's request_compression_algorithm,
  // which Triton accepts), or a list of them ('gzip, identity'): each undone
  // from the last applied, inflated up to the body limit, then read as above.
  const decodeBody: BodyParser = (request, body, done) => {
    const encoding = request.headers['content-encoding']
    const codings = encoding === undefined ? [] : contentCodings(encoding)
    if (codings.length === 0) return parseBody(request, body, done)
    const unknown = codings.find(c => !Object.hasOwn(DECODERS, c))
    if (unknown !== undefined) {
      // In a list, the coding that is not supported is named.
      const why = !(encoding as string).includes(',') ? 'send gzip, deflate or identity' : `'${shown(unknown)}' is not gzip, deflate or identity`
      return done(new HttpError('UNSUPPORTED_MEDIA_TYPE', `content-encoding '${shown(encoding as string)}' is not supported: ${why}`), undefined)
    }
    // Each coding inflates up to the body limit: a long list is that much work.
    if (codings.length > MAX_CODINGS) {
      return done(new HttpError('UNSUPPORTED_MEDIA_TYPE', `content-encoding '${shown(encoding as string)}' lists ${codings.length} codings: at most ${MAX_CODINGS} are undone`), undefined)
    }
    const limit = request.routeOptions.bodyLimit
    const undo = (data: Buffer, left: number): void => {
      if (left === 0) return parseBody(request, data, done)
      const coding = codings[left - 1]
      DECODERS[coding](data, { maxOutputLength: limit }, (err, inflated) => {
        if (!err) return undo(inflated, left - 1)
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return done(payloadTooLarge(`the ${coding} body inflates to more than the body limit of ${limit} bytes`), undefined)
        done(bad(`the body is not valid ${coding} data (content-encoding ${shown(encoding as string)})`), undefined)
      })
    }
    undo(body as Buffer, codings.length)
  }
  // (readWhole: a body refused once read keeps its connection, as on the other routes.)
  app.addContentTypeParser(['application/json', 'application/octet-stream'], { parseAs: 'buffer' }, readWhole(decodeBody))
  // No Content-Type at all is what Triton's own Python client (tritonclient.http)
  // sends, JSON or binary alike, and Triton reads such a body as above. Any
  // other media type stays refused.
  const accepted = `application/json, application/octet-stream (with ${HEADER_LENGTH}) or with no content-type`
  app.addContentTypeParser('*', { parseAs: 'buffer' }, readWhole((request, body, done) => {
    const type = request.headers['content-type']
    if (type !== undefined) return done(new HttpError('UNSUPPORTED_MEDIA_TYPE', unsupportedMediaType(type, accepted)), undefined)
    decodeBody(request, body, done)
  }))
  // A content type that is not a media type at all ('json') never reaches
  // the parsers: fastify refuses it, and the app's handler would advise the
  // resource routes' application/json alone. Anything else goes on to it.
  app.setErrorHandler((err: Error & { code?: string }, request, reply) => {
    if (err.code !== 'FST_ERR_CTP_INVALID_MEDIA_TYPE') throw err
    return sendError(reply, 'UNSUPPORTED_MEDIA_TYPE', unsupportedMediaType(request.headers['content-type'], accepted))
  })

  const extensions = ['binary_tensor_data', ...(options.repositoryApi ? ['model_repository'] : [])]

  /**
   * The version a path names ('01' is '1'). The unversioned model is kept
   * under '', which an empty segment (/versions//infer) named: it is no
   * version, answered as an unknown one.
   */
  const versionNamed = (model: RepositoryModel, version: string): ServedVersion | undefined =>
    version === '' ? undefined : model.versions.get(/^[0-9]+$/.test(version) ? String(Number(version)) : version)

  /** The model and version a request names; 404 unknown, 503 not (yet) ready. */
  const resolve = (name: string, version: string | undefined): { model: RepositoryModel, served: ServedVersion, loaded: LoadedModel } => {
    const model = repository.get(name)
    if (!model) {
      if (lifecycle.state === 'loading') throw new HttpError('NOT_READY', `not ready: ${lifecycle.reason}`, { headers: { 'retry-after': '1' } })
      throw new HttpError('MODEL_NOT_FOUND', `unknown model '${name}'`)
    }
    let served: ServedVersion | undefined
    if (version !== undefined) {
      served = versionNamed(model, version)
      if (!served) {
        if (model.state === 'LOADING') throw modelNotReady(`model '${name}' is loading`)
        const known = [...model.versions.keys()].filter(k => k !== '')
        throw new HttpError('MODEL_NOT_FOUND', `model '${name}' has no version '${version}'${known.length > 0 ? ` (versions: ${known.join(', ')})` : ' (it is not versioned)'}`)
      }
    } else {
      served = repository.defaultVersion(model)
    }
    if (!served || served.state !== 'READY' || !served.loaded) {
      const reason = served?.reason || model.reason || model.state.toLowerCase()
      throw modelNotReady(`model '${name}'${version !== undefined ? ` version ${version}` : ''} is not ready: ${reason}`)
    }
    const lost = store.pool.unavailable(served.loaded.key)
    if (lost) throw modelNotReady(`model '${name}'${version !== undefined ? ` version ${version}` : ''} is not ready: ${lost}`)
    return { model, served, loaded: served.loaded }
  }

  const versionsOf = (model: RepositoryModel) => [...model.versions].filter(([v, s]) => v !== '' && s.state === 'READY').map(([v]) => v).sort((a, b) => Number(a) - Number(b))

  app.get('/v2/health/live', {
    schema: { tags: [TAG], summary: 'Server live', response: { 200: Type.Object({ live: Type.Boolean() }) } },
  }, async () => ({ live: true }))

  app.get('/v2/health/ready', {
    schema: { tags: [TAG], summary: 'Server ready: 200 once start-up loading is done', response: { 200: Type.Object({ live: Type.Boolean(), ready: Type.Boolean() }), 503: ErrorBody } },
  }, async (_request, reply) => {
    // As /health/ready: also 503 while a model is held by no inference thread (Triton's strict readiness).
    const why = notReady(lifecycle, store)
    if (!why) return { live: true, ready: true }
    return sendError(reply, why.code, why.message, { 'retry-after': '1' })
  })

  const serverMetadata = async () => ({ name: options.serverName ?? 'onnx-serve', version: options.serverVersion ?? '0.1.0', extensions })
  const serverMetadataSchema = {
    tags: [TAG],
    summary: 'Server metadata',
    response: { 200: Type.Object({ name: Type.String(), version: Type.String(), extensions: Type.Array(Type.String()) }) },
  }
  // Also `/v2/` (the router ignores a trailing slash): the spec's OpenAPI
  // documents (KServe's rest_predict_v2.yaml and open_inference_rest.yaml)
  // write this path so, and clients generated from them ask for that.
  app.get('/v2', { schema: serverMetadataSchema }, serverMetadata)

  const metadata = async (request: FastifyRequest<{ Params: { name: string, version?: string } }>) => {
    const { model, loaded } = resolve(request.params.name, request.params.version)
    const versions = versionsOf(model)
    const parameters: Record<string, unknown> = {}
    if (model.config.labels !== undefined) parameters.labels = model.config.labels
    // A licence that config.json states (the taggers' do: they are derived from CC BY-SA corpora).
    if (typeof model.config.raw.licence === 'string') parameters.licence = model.config.raw.licence
    if (model.config.maxBatchSize > 0) parameters.max_batch_size = model.config.maxBatchSize
    return {
      name: model.name,
      ...(versions.length > 0 ? { versions } : {}),
      platform: PLATFORM,
      inputs: loaded.inputs.map(tensorMetadata),
      outputs: loaded.outputs.map(tensorMetadata),
      ...(Object.keys(parameters).length > 0 ? { parameters } : {}),
    }
  }
  const metadataSchema = (params: typeof ModelParams | typeof VersionParams) => ({
    tags: [TAG], summary: 'Model metadata', params, response: { 200: ModelMetadata, ...errors },
  })
  app.get('/v2/models/:name', { schema: metadataSchema(ModelParams) }, metadata)
  app.get('/v2/models/:name/versions/:version', { schema: metadataSchema(VersionParams) }, metadata)

  const ready = async (request: FastifyRequest<{ Params: { name: string, version?: string } }>, reply: FastifyReply) => {
    try {
      resolve(request.params.name, request.params.version)
      return { name: request.params.name, ready: true }
    } catch (err) {
      if (!(err instanceof HttpError) || err.code === 'MODEL_NOT_FOUND') throw err
      return reply.code(err.statusCode).headers(err.headers).send({ name: request.params.name, ready: false, ...errorBody(err.code, err.message) })
    }
  }
  const readySchema = (params: typeof ModelParams | typeof VersionParams) => ({
    tags: [TAG], summary: 'Model ready: 200 when it serves, 503 (with the reason) while it loads or after it failed', params, response: { 200: ModelReady, 503: ModelReady, 404: ErrorBody },
  })
  app.get('/v2/models/:name/ready', { schema: readySchema(ModelParams) }, ready)
  app.get('/v2/models/:name/versions/:version/ready', { schema: readySchema(VersionParams) }, ready)

  const infer = async (request: FastifyRequest<{ Params: { name: string, version?: string }, Body: InferRequest }>, reply: FastifyReply) => {
    const body = request.body
    const timeoutUs = body.parameters?.timeout
    if (timeoutUs !== undefined) {
      // Microseconds, 0 for none, as Triton reads it (which refuses anything else too).
      if (typeof timeoutUs !== 'number' || !Number.isInteger(timeoutUs) || timeoutUs < 0) {
        throw bad(`parameters.timeout must be an integer number of microseconds >= 0, got ${shownValue(timeoutUs)}`)
      }
      if (timeoutUs > 0) limitDeadline(request, Math.ceil(timeoutUs / 1000))
    }
    // From here to store.run nothing awaits: the sessions picked are the ones
    // run, and a hot swap cannot release them in between (see repository.ts).
    const { model, loaded } = resolve(request.params.name, request.params.version)
    let binary = binaryBodies.get(body)
    let inference = body
    if (rawBodies.has(body)) ({ body: inference, binary } = rawRequest(model.name, loaded, binary as Buffer))
    const feeds = decodeInputs(inference, loaded, binary, model.config.allowNonFinite)
    checkBatch(inference.inputs, model.config.maxBatchSize)
    const wanted = chooseOutputs(inference, loaded)
    checkParameterValues(inference)
    // Every output (each is named once at most): ONNX Runtime's default, and
    // such jobs batch with the resource routes' ones (the pool batches jobs
    // that ask for the same outputs).
    const outputs = wanted.length === loaded.outputs.length ? undefined : wanted.map(w => w.name)
    // The feeds are read no more: their own buffers may move to the thread rather than be copied.
    const results = await store.run(loaded.key, feeds, { signal: request.deadline, outputs, transfer: true })
    // Too late: the deadline answered 504 meanwhile.
    if (reply.sent) return
    return sendInferResponse(reply, model.name, loaded.version, body.id, wanted, results)
  }
  const inferSchema = (params: typeof ModelParams | typeof VersionParams) => ({
    tags: [TAG],
    summary: 'Inference',
    description: 'JSON, or with the binary tensor data extension: the JSON header, then each binary input in order; `Inference-Header-Content-Length` gives the JSON length.',
    params,
    body: InferRequest,
    response: { 200: InferResponse, ...errors },
  })
  /**
   * The OpenAPI document's view of an infer route (@fastify/swagger's
   * per-route transform): the binary tensor data extension's requests and
   * answers as application/octet-stream, and Inference-Header-Content-Length
   * both ways. The route itself keeps `inferSchema`: a body schema by content
   * type would leave bodies with no Content-Type (tritonclient's) unvalidated.
   */
  const inferDocs = ({ schema, url }: { schema: ReturnType<typeof inferSchema>, url: string }) => ({
    url,
    schema: {
      ...schema,
      headers: Type.Object({
        [HEADER_LENGTH]: Type.Optional(Type.Integer({ minimum: 0, description: 'Binary tensor data extension: the length in bytes of the JSON header that starts the body, the binary data following it; 0 for a raw binary request (no JSON: the body is the data of the model\'s only input). Absent for a JSON body.' })),
      }),
      body: {
        content: {
          'application/json': { schema: InferRequest },
          'application/octet-stream': {
            schema: {
              type: 'string',
              format: 'binary',
              description: 'Binary tensor data extension: the InferenceRequest JSON (its length in Inference-Header-Content-Length), then the binary data of each input that gives parameters.binary_data_size, in the order of the inputs: little-endian, row-major, BOOL one byte each, each BYTES element prefixed by its length in 4 little-endian bytes. With Inference-Header-Content-Length 0, the body is the data of the model\'s only input, and every output is binary.',
            },
          },
        },
      },
      response: {
        ...schema.response,
        200: {
          description: 'The outputs: JSON, or, when an output is asked for as binary data (parameters.binary_data, binary_data_output, or a raw binary request), application/octet-stream',
          headers: {
            [HEADER_LENGTH]: { type: 'integer', description: 'Binary answers only: the length in bytes of the InferenceResponse JSON that starts the body' },
          },
          content: {
            'application/json': { schema: InferResponse },
            'application/octet-stream': {
              schema: {
                type: 'string',
                format: 'binary',
                description: 'The InferenceResponse JSON (its length in Inference-Header-Content-Length), then the data of each binary output, in the order of the outputs, each output\'s parameters.binary_data_size long',
              },
            },
          },
        },
      },
    },
  })
  // A model whose queue is full refuses here, before the body is read and
  // parsed; anything unusual (unknown model or version, not ready) is left to
  // the handler and its errors.
  // (A route hook, in callback style: it runs on every inference request.)
  const refuseWhenFull = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const { name, version } = request.params as { name: string, version?: string }
    const model = repository.get(name)
    const served = model && (version === undefined ? repository.defaultVersion(model) : versionNamed(model, version))
    const refused = served?.loaded && store.pool.refusal(served.loaded.key)
    if (refused) sendOverloaded(reply, refused)
    else done()
  }
  const quietInfer = quietPastDeadline(infer as RouteHandler) as never
  const inferConfig = { swaggerTransform: inferDocs as never }
  app.post('/v2/models/:name/infer', { schema: inferSchema(ModelParams), config: inferConfig, onRequest: refuseWhenFull as never }, quietInfer)
  app.post('/v2/models/:name/versions/:version/infer', { schema: inferSchema(VersionParams), config: inferConfig, onRequest: refuseWhenFull as never }, quietInfer)

  if (options.repositoryApi) {
    const objectBody = (body: unknown, allowed: string[]): Record<string, unknown> => {
      if (body === undefined || body === null) return {}
      if (typeof body !== 'object' || Array.isArray(body)) throw bad('body must be a JSON object')
      // Sent as a binary request, bytes after the JSON header were ignored without a word.
      const extra = binaryBodies.get(body)?.length ?? 0
      if (extra > 0) throw bad(`this route takes no binary data: ${extra} bytes follow the JSON header (${HEADER_LENGTH})`)
      for (const key of Object.keys(body)) if (!allowed.includes(key)) throw bad(`body has an unknown field '${shown(key)}'`)
      return body as Record<string, unknown>
    }
    /**
     * A load or unload body's `parameters`: only `accepted` ones. Triton's
     * load takes `config` and `file:` overrides; models here are loaded from
     * the models directory as they are, so those are refused, not ignored.
     */
    const checkParameters = (body: unknown, accepted: string[]): Record<string, unknown> => {
      const { parameters } = objectBody(body, ['parameters'])
      if (parameters === undefined) return {}
      if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) throw bad('parameters must be a JSON object')
      const unsupported = Object.keys(parameters).find(k => !accepted.includes(k))
      if (unsupported !== undefined) {
        throw bad(`unsupported parameter '${shown(unsupported)}': models are loaded from the models directory as they are (no config or file overrides)`)
      }
      return parameters as Record<string, unknown>
    }
    app.post('/v2/repository/index', {
      schema: {
        tags: [TAG],
        summary: 'Repository index: every model (and version) in the directory, with its state',
        description: 'Body (optional): {"ready": true} lists only the ready ones.',
        response: { 200: Type.Array(IndexEntry), ...errors },
      },
    }, async (request) => {
      const { ready: onlyReady } = objectBody(request.body, ['ready'])
      if (onlyReady !== undefined && typeof onlyReady !== 'boolean') throw bad('body.ready must be true or false')
      repository.discover()
      const entries: Array<Static<typeof IndexEntry>> = []
      for (const m of repository.list()) {
        if (m.versions.size === 0) entries.push({ name: m.name, state: m.state, reason: m.reason })
        for (const [v, s] of [...m.versions].sort((a, b) => Number(a[0]) - Number(b[0]))) {
          entries.push({ name: m.name, ...(v !== '' ? { version: v } : {}), state: s.state, reason: s.reason || m.reason })
        }
      }
      return onlyReady ? entries.filter(e => e.state === 'READY') : entries
    })
    const manage = { tags: [TAG], params: ModelParams, response: { 200: Type.Object({}), ...errors } }
    app.post('/v2/repository/models/:name/load', {
      schema: { ...manage, summary: 'Load or reload a model from the directory: the new one is swapped in once warm; a failed load leaves the old one serving' },
    }, async (request: FastifyRequest<{ Params: { name: string } }>) => {
      checkParameters(request.body, [])
      const { name } = request.params
      let model
      try {
        model = await repository.load(name)
      } catch (err) {
        throw new HttpError('MODEL_NOT_FOUND', (err as Error).message)
      }
      if (model.state !== 'READY' || model.reason) throw bad(`failed to load model '${name}': ${model.reason || model.state}`)
      return {}
    })
    app.post('/v2/repository/models/:name/unload', {
      schema: { ...manage, summary: 'Unload a model: it stops serving at once; its sessions go when in-flight requests finish' },
    }, async (request: FastifyRequest<{ Params: { name: string } }>) => {
      // unload_dependents: no model here has dependents (no ensembles), but
      // a value Triton would refuse ('yes') is not taken as one it would read.
      const { unload_dependents: dependents } = checkParameters(request.body, ['unload_dependents'])
      if (dependents !== undefined && typeof dependents !== 'boolean') {
        throw bad(`parameters.unload_dependents must be true or false, got ${shownValue(dependents)}`)
      }
      const { name } = request.params
      if (!repository.get(name)) throw new HttpError('MODEL_NOT_FOUND', `unknown model '${name}'`)
      try {
        await repository.unload(name)
      } catch (err) {
        throw bad((err as Error).message)
      }
      return {}
    })
  }

  completing = true
  for (const [url, verbs] of verbsByUrl) {
    // As on resource routes: other verbs 405 with Allow, OPTIONS lists them.
    answerOtherVerbs(app, url, verbs, url.replace(/:(\w+)/g, '{$1}'))
  }
}

/** A model's inputs by name, made once per loaded model (a reload loads a new one). */
const inputsByModel = new WeakMap<LoadedModel, { byName: Map<string, LoadedModel['inputs'][number]>, known: string[] }>()
function inputsOf (loaded: LoadedModel) {
  let found = inputsByModel.get(loaded)
  if (!found) {
    found = { byName: new Map(loaded.inputs.map(i => [i.name, i])), known: loaded.inputs.map(i => i.name) }
    inputsByModel.set(loaded, found)
  }
  return found
}

/**
 * The request a raw binary body stands for (the binary tensor data extension's
 * raw binary request, `Inference-Header-Content-Length: 0`): the body is the
 * data of the model's only input, every output comes back as binary data.
 * As Triton deduces it: at most one variable-size dimension, sized from the
 * body's length; a first variable dimension beside another is a batch of one.
 * A BYTES input takes one element, the body's bytes (no length prefix).
 */
export function rawRequest (modelName: string, loaded: LoadedModel, bytes: Buffer): { body: InferRequest, binary: Buffer } {
  const why = `a raw binary request (${HEADER_LENGTH}: 0, no JSON header)`
  if (loaded.inputs.length !== 1) {
    throw bad(`${why} needs a model with one input; model '${modelName}' has ${loaded.inputs.length}: send a JSON header naming the inputs`)
  }
  const info = loaded.inputs[0]
  const datatype = datatypeOf(info.type)
  if (!datatype) throw bad(`input '${info.name}' has type ${info.type}, which this server cannot feed`)
  const declared = oipShape(info.shape)
  const shape = [...declared]
  let variable = declared.flatMap((d, i) => (d < 0 ? [i] : []))
  // A batching model's leading dimension: a batch of one, the other one deduced.
  if (variable.length > 1 && variable[0] === 0) {
    shape[0] = 1
    variable = variable.slice(1)
  }
  const body = (dims: number[], size: number): InferRequest => ({
    inputs: [{ name: info.name, shape: dims, datatype, parameters: { binary_data_size: size } }],
    parameters: { binary_data_output: true },
  })
  if (datatype === 'BYTES') {
    const dims = shape.map(d => (d < 0 ? 1 : d))
    if (elementCount(dims) !== 1) throw bad(`${why} with BYTES data needs an input of one element; input '${info.name}' has shape [${declared.join(', ')}]: send a JSON header`)
    if (bytes.length > 0xffffffff) throw bad(`${why}: a BYTES element is at most 2^32 - 1 bytes`)
    const length = Buffer.alloc(4)
    length.writeUInt32LE(bytes.length)
    const framed = Buffer.concat([length, bytes])
    return { body: body(dims, framed.length), binary: framed }
  }
  if (variable.length > 1) {
    throw bad(`${why}: the shape of input '${info.name}' ([${declared.join(', ')}]) cannot be deduced from the body's size, it has more than one variable-size dimension: send a JSON header`)
  }
  if (variable.length === 1) {
    const per = ELEMENT_SIZE[datatype] * elementCount(shape.filter(d => d >= 0))
    const at = variable[0]
    if (per === 0 ? bytes.length !== 0 : bytes.length % per !== 0) {
      throw bad(`${why}: ${bytes.length} bytes are not a whole number of ${datatype} slices of ${per} bytes for input '${info.name}' (shape [${declared.join(', ')}])`)
    }
    shape[at] = per === 0 ? 0 : bytes.length / per
  }
  return { body: body(shape, bytes.length), binary: bytes }
}

/** Checks every input against the model and turns it into a tensor; binary data is consumed in order. */
export function decodeInputs (body: InferRequest, loaded: LoadedModel, binary: Buffer | undefined, allowNonFinite: boolean): Record<string, Tensor> {
  const { byName, known } = inputsOf(loaded)
  const symbols = new Map<string, { size: number, input: string }>()
  // A Map: an input may be named 'constructor' or '__proto__'.
  const feeds = new Map<string, Tensor>()
  const tensorOptions = { allowNonFinite }
  let at = 0
  for (const input of body.inputs as RequestInput[]) {
    if (feeds.has(input.name)) throw bad(`input '${input.name}' is given twice`)
    if (!isDatatype(input.datatype)) throw bad(`input '${shown(input.name)}': unknown datatype '${shown(input.datatype)}'`)
    const datatype = checkInput(input, byName.get(input.name), known, symbols)
    if (elementCount(input.shape) > MAX_ELEMENTS) throw bad(`input '${input.name}': shape [${input.shape.join(', ')}] has too many elements`)
    const size = input.parameters?.binary_data_size
    if (input.parameters?.shared_memory_region !== undefined) throw bad(`input '${input.name}': the shared memory extensions are not supported by this server; send data or binary data`)
    if (size !== undefined) {
      if (input.data !== undefined) throw bad(`input '${input.name}' has both data and binary_data_size`)
      if (!binary) throw bad(`input '${input.name}' has binary_data_size but the request has no binary data (send ${HEADER_LENGTH})`)
      if (!Number.isInteger(size) || (size as number) < 0) throw bad(`input '${input.name}': binary_data_size must be an integer >= 0`)
      if (at + (size as number) > binary.length) throw bad(`input '${input.name}': binary_data_size ${size} goes past the end of the binary data (${binary.length - at} bytes left)`)
      feeds.set(input.name, fromBinary(input, datatype, binary.subarray(at, at + (size as number)), tensorOptions))
      at += size as number
    } else {
      if (input.data === undefined) throw bad(`input '${input.name}' has no data`)
      feeds.set(input.name, fromJson(input, datatype, tensorOptions))
    }
  }
  if (binary && at !== binary.length) throw bad(`the request has ${binary.length - at} bytes of binary data that no input claims`)
  if (feeds.size === known.length) return Object.fromEntries(feeds) // every input is known and none twice: none missing
  const missing = known.filter(n => !feeds.has(n))
  if (missing.length > 0) throw bad(`missing input${missing.length > 1 ? 's' : ''} ${missing.map(n => `'${n}'`).join(', ')}`)
  return Object.fromEntries(feeds)
}

/**
 * The spec's `$parameter = $string : $string | $number | $boolean`, as Triton
 * checks it, for the parameters of the request, its inputs and its outputs:
 * an object, array or null was accepted and ignored. Checked after the
 * parameters this server reads, whose own messages say more.
 */
export function checkParameterValues (body: InferRequest): void {
  const check = (parameters: Record<string, unknown> | undefined, where: string) => {
    for (const key in parameters) {
      const value = parameters[key]
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') continue
      const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : 'an object'
      throw bad(`${where}.${shown(key)} must be a string, number or boolean (the protocol's parameter values), got ${got}`)
    }
  }
  check(body.parameters, 'parameters')
  body.inputs.forEach((input, i) => check(input.parameters, `inputs[${i}].parameters`))
  body.outputs?.forEach((output, i) => check(output.parameters, `outputs[${i}].parameters`))
}

interface WantedOutput { name: string, binary: boolean }

/** The outputs to compute and how to send each (all, in the model's order, when none are named). */
export function chooseOutputs (body: InferRequest, loaded: LoadedModel): readonly WantedOutput[] {
  const allBinary = body.parameters?.binary_data_output
  if (allBinary !== undefined && typeof allBinary !== 'boolean') throw bad('parameters.binary_data_output must be true or false')
  if (body.outputs !== undefined && body.outputs.length > 0) return pickOutputs(body, loaded, allBinary)
  // No outputs named: the answer depends on the model and allBinary alone, so
  // it is made once (a refusal is not kept: it is thrown again each time).
  let cached = defaultOutputs.get(loaded)
  if (!cached) defaultOutputs.set(loaded, cached = [undefined, undefined, undefined])
  const slot = allBinary === undefined ? 0 : allBinary ? 1 : 2
  return cached[slot] ??= Object.freeze(pickOutputs(body, loaded, allBinary).map(w => Object.freeze(w)))
}

/** chooseOutputs' answers when the request names no outputs, by binary_data_output (absent, true, false). */
const defaultOutputs = new WeakMap<LoadedModel, Array<readonly WantedOutput[] | undefined>>()

function pickOutputs (body: InferRequest, loaded: LoadedModel, allBinary: boolean | undefined): WantedOutput[] {
  const byName = new Map(loaded.outputs.map(o => [o.name, o]))
  const asked = body.outputs?.length ? body.outputs : loaded.outputs.map(o => ({ name: o.name, parameters: undefined }))
  const seen = new Set<string>()
  return asked.map(o => {
    const info = byName.get(o.name)
    if (!info) throw bad(`unknown output '${shown(o.name)}'; the model's outputs are ${[...byName.keys()].map(n => `'${n}'`).join(', ')}`)
    if (seen.has(o.name)) throw bad(`output '${o.name}' is requested twice`)
    seen.add(o.name)
    const flag = o.parameters?.binary_data
    if (flag !== undefined && typeof flag !== 'boolean') throw bad(`output '${o.name}': binary_data must be true or false`)
    if (o.parameters?.shared_memory_region !== undefined) throw bad(`output '${o.name}': the shared memory extensions are not supported by this server; the output comes in the response`)
    // Triton's classification extension (not in this server's extensions):
    // answering the raw tensor instead would hand the client floats where it
    // expects "score:index:label" strings. 0 is tritonclient's "none".
    const classes = o.parameters?.classification
    if (classes !== undefined && classes !== 0) throw bad(`output '${o.name}': the classification extension is not supported by this server; request the raw output and rank it yourself`)
    const binary = flag ?? allBinary ?? false
    if (!binary && info.type === 'float16') throw bad(`output '${o.name}' is FP16, which JSON cannot carry: request it with "parameters": {"binary_data": true}`)
    if (!datatypeOf(info.type)) throw bad(`output '${o.name}' has type ${info.type}, which this server cannot return`)
    return { name: o.name, binary }
  })
}

/** Sends the response: JSON text (64-bit integers exact), or JSON then binary outputs. */
function sendInferResponse (reply: FastifyReply, modelName: string, version: string | undefined, id: string | undefined, wanted: readonly WantedOutput[], results: Record<string, Tensor>) {
  // The JSON text is written here rather than by JSON.stringify of an object:
  // the data is spliced in as prepared text (JSON.stringify cannot write
  // BigInt), and the fields come in the order an object would give them
  // (model_name, model_version, id, outputs; name, datatype, shape, then
  // parameters or data). + rather than join: join would copy the data text.
  let text = '{"model_name":' + JSON.stringify(modelName) +
    (version !== undefined ? ',"model_version":' + JSON.stringify(version) : '') +
    (id !== undefined ? ',"id":' + JSON.stringify(id) : '') + ',"outputs":['
  let parts: Buffer[] | undefined
  for (let i = 0; i < wanted.length; i++) {
    const { name, binary } = wanted[i]
    const t = results[name]
    if (!t) throw new Error(`the model returned no output '${name}'`)
    text += (i > 0 ? ',{"name":' : '{"name":') + JSON.stringify(name) + ',"datatype":' + JSON.stringify(datatypeOf(t.type) ?? t.type) + ',"shape":' + JSON.stringify(t.dims)
    if (!binary) {
      text += ',"data":' + dataJson(t) + '}'
    } else {
      const bytes = dataBinary(t)
      ;(parts ??= []).push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      text += ',"parameters":{"binary_data_size":' + bytes.byteLength + '}}'
    }
  }
  text += ']}'
  if (parts === undefined) return reply.type('application/json').send(text)
  const header = Buffer.from(text, 'utf8')
  return reply.type('application/octet-stream').header(HEADER_LENGTH, String(header.length)).send(Buffer.concat([header, ...parts]))
}
