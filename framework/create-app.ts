// Builds a fastify app that serves resources, without listening. It owns the
// cross-cutting parts: strict validation, the one error format, 405/Allow,
// readiness (loading -> ready -> draining), health routes, the OpenAPI
// document and docs page, and the model store the resources load from.
// app.ts calls `createApp` and then `app.mount(...)` once per route.
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { Ajv } from 'ajv'
import { isUtf8 } from 'node:buffer'
import { METHODS, createServer, type IncomingMessage, type ServerOptions, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { ModelLoadError, ModelStore, type Model } from './models.ts'
import type { BatchOptions } from './batcher.ts'
import { ERROR_CODES, ErrorBody, HttpError, MAX_PARAM_LENGTH, answerOnSocket, sendNotFound, clientErrorHandler, errorBody, type ErrorCode, frameworkErrors, installErrorHandlers, notUtf8, sendError, sendOverloaded, withoutModelsDir } from './errors.ts'
import { respondersOf, type Resource } from './resource.ts'
import { healthRoutes } from './health.ts'
import { UNMATCHED_ROUTE, metricsRoutes, type ResponseCounter } from './metrics.ts'
import { installDeadlines, quietPastDeadline, type RouteHandler } from './deadline.ts'
import { buildSerializer } from './serializer.ts'
import { fastJson, NOT_READ } from './fast-json.ts'

export interface AppOptions {
  /** Directory the resources load their models from. */
  modelsDir: string
  /** Inference threads (one session per model per thread). */
  threads?: number
  /** Deadline for a whole request, in milliseconds; 504 after it (0: none). */
  requestTimeoutMs?: number
  /** Batching and queue defaults for every model (a model's config.json may override). */
  batching?: Partial<BatchOptions>
  /** Models whose run is predicted under this many microseconds run on the main thread (0: never). */
  inlineBelowUs?: number
  /** Niceness added to the inference threads (Linux), so HTTP runs first when they share a core (0: none). */
  threadNice?: number
  /** Largest request body accepted, in bytes (413 above). */
  bodyLimit?: number
  /**
   * Milliseconds a request's body may take to arrive once its headers have:
   * 408 and the connection closed after it, whatever `requestTimeoutMs` (also
   * when it is 0). Defaults to 30 s; 0 leaves the deadline alone to bound it.
   */
  bodyTimeoutMs?: number
  /** HTTP keep-alive timeout for idle connections, in milliseconds. */
  keepAliveTimeoutMs?: number
  /** Milliseconds a client may read nothing of a large answer (64 kB or more) before its connection is closed (0: no limit). */
  sendTimeoutMs?: number
  /** How long resources may take to load and warm up, in milliseconds. */
  loadTimeoutMs?: number
  logger?: FastifyServerOptions['logger'] | FastifyBaseLogger
  /** A model store to use instead of making one (tests pass their own). */
  models?: ModelStore
  /** Open Inference Protocol: serve the repository extension's load/unload/index routes. */
  repositoryApi?: boolean
  /** Open Inference Protocol: a model in the directory that fails to load stops the server. */
  stopOnModelFailure?: boolean
  /** A worker of server.ts's cluster: /metrics answers with every worker's metrics, gathered by the arbiter. */
  clusterMetrics?: boolean
}

export interface MountOptions {
  /** falcon's suffix: mount `onGetMetadata` & co. instead of `onGet` & co. */
  suffix?: string
  /** Section of the OpenAPI document (defaults to the resource's class name). */
  tag?: string
}

export type LifecycleState = 'loading' | 'ready' | 'draining' | 'failed'

export interface Lifecycle {
  state: LifecycleState
  reason: string
  /**
   * Draining because this cluster worker is replaced (HUP, --max-requests)
   * or removed (TTOU), not because the server stops: the other workers serve
   * on, so readiness stays 200 (see `drain`).
   */
  replaced?: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Mounts a resource's responders on a URI template such as `/items/{id}`. */
    mount(template: string, resource: Resource, options?: MountOptions): FastifyInstance
    /** Loads and warms up every mounted resource; readiness turns 200 after it. */
    loadResources(): Promise<void>
    /**
     * Marks the app as draining: readiness answers 503 and every answer
     * carries `Connection: close`. With `replaced` (a cluster worker the
     * arbiter replaces or removes while the server goes on), readiness stays
     * 200: a load balancer probing the server's address must not take the
     * whole server out because one worker is being recycled.
     */
    drain(options?: { replaced?: boolean }): void
    /** Adds start-up work that readiness waits for, run after the resources load (the model repository). */
    onLoad(name: string, task: () => Promise<void>): void
    /** Adds work for `reload()` (SIGHUP in a single process: re-scan the models). */
    onReload(task: () => Promise<void>): void
    /** Runs the reload tasks in order. */
    reload(): Promise<void>
    lifecycle: Lifecycle
    models: ModelStore
  }
}

export type App = FastifyInstance

/**
 * Every method Node's parser reads that fastify would route, so that each of
 * them can be refused with 405 on a path that exists. fastify 5 routes only
 * GET, HEAD, TRACE, DELETE, OPTIONS, PATCH, PUT, POST and QUERY: the others
 * (PROPFIND, SEARCH, LOCK, PURGE, ...) never matched a route and were 404s,
 * as were TRACE and QUERY, which no route was registered for. They are added
 * as bodyless: a body sent with one is never parsed (the 405, or a 404 on an
 * unknown path, is answered first). CONNECT is not among them: Node passes
 * it to the server's 'connect' listener, which refuses it.
 */
export function routeEveryMethod (app: FastifyInstance) {
  const known = new Set(app.supportedMethods)
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !known.has(method)) app.addHttpMethod(method)
  }
}

/**
 * The methods a route lacks, for a path that serves `verbs` (HEAD comes with
 * GET): 405 with `Allow`, in the error format, from `onRequest`, so the body
 * is never parsed: every method fastify routes (after `routeEveryMethod`),
 * TRACE among them, which is refused like any other, never echoed. OPTIONS is
 * 204 with `Allow`, before any body is parsed too (a body sent with it was
 * parsed as the route's, and made the OPTIONS a 400 or a 415). `shown` is the
 * URL as the 405's message names it.
 */
export function answerOtherVerbs (app: FastifyInstance, url: string, verbs: ReadonlySet<string>, shown = url) {
  const served = [...verbs, ...(verbs.has('GET') ? ['HEAD'] : []), 'OPTIONS']
  const allow = served.join(', ')
  const notAllowed = app.supportedMethods.filter(m => !served.includes(m))
  if (notAllowed.length > 0) {
    app.route({
      method: notAllowed,
      url,
      schema: { hide: true },
      onRequest: async (request, reply) => sendError(reply, 'METHOD_NOT_ALLOWED',
        `${request.method} is not allowed on ${shown}; allowed: ${allow}`, { allow }),
      handler: async () => { /* onRequest always answers */ },
    })
  }
  app.route({
    method: 'OPTIONS',
    url,
    schema: { hide: true },
    onRequest: async (_request, reply) => reply.code(204).header('allow', allow).send(),
    handler: async () => { /* onRequest always answers */ },
  })
}

/** Converts falcon's `{name}` URI templates to fastify's `:name`. */
export function toFastifyPath (template: string): string {
  if (!template.startsWith('/')) throw new TypeError(`route '${template}' must start with '/'`)
  const path = template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, ':$1')
  // Anything else in braces would be matched literally while OpenAPI lists it as a parameter.
  const bad = /\{[^}]*\}?/.exec(path)
  if (bad) throw new TypeError(`route '${template}': '${bad[0]}' is not a parameter; names are letters, digits and _, not starting with a digit`)
  return path
}

/**
 * Bodies reject unknown fields unless a schema says otherwise (ajv would
 * accept them). Not inside `allOf` (TypeBox's Intersect): each part would
 * reject the other parts' fields.
 */
function closeObjects (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects)
  if (typeof schema !== 'object' || schema === null) return schema
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(schema)) out[k] = k === 'allOf' ? v : closeObjects(v)
  if (out.type === 'object' && out.properties && !('additionalProperties' in out)) out.additionalProperties = false
  return out
}

/**
 * fastify's "Body is not valid JSON but content-type is set to
 * 'application/json'" says neither where nor why, and is wrong for valid JSON
 * refused for a `__proto__` or `constructor.prototype` key (prototype
 * poisoning). Only on the error path: JSON.parse again, for its message.
 */
export function whyNotJson (err: Error, body: string): Error {
  if ((err as { code?: string }).code !== 'FST_ERR_CTP_INVALID_JSON_BODY') return err
  try {
    JSON.parse(body)
  } catch (syntax) {
    return new HttpError('INVALID_JSON', `Body is not valid JSON: ${(syntax as Error).message}`)
  }
  return new HttpError('BAD_REQUEST', 'body has a __proto__ or constructor.prototype key, which is refused (prototype poisoning)')
}

/**
 * A JSON body's bytes without a leading UTF-8 byte order mark (EF BB BF),
 * which RFC 8259 8.1 lets a parser ignore and some clients send (PowerShell,
 * .NET). fastify's JSON parser skipped it already, but `whyNotJson`'s
 * JSON.parse did not: a malformed body or a __proto__ key after a mark was
 * "Unexpected token '\ufeff'", and a mark alone was not an empty body.
 */
export function withoutBom (body: Buffer): Buffer {
  return body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? body.subarray(3) : body
}

/**
 * The codings a Content-Encoding lists, lower-cased, in the order they were
 * applied (RFC 9110 8.4: a comma-separated list, case-insensitive), without
 * identity (no coding) and empty list elements: none for an uncoded body.
 * 'gzip, identity' was refused whole, as one unknown coding.
 */
export function contentCodings (header: string): string[] {
  return header.split(',').map(c => c.trim().toLowerCase()).filter(c => c !== '' && c !== 'identity')
}

/** Requests whose body a parser read whole and then refused (see `readWhole`). */
const refusedWhole = new WeakSet<FastifyRequest>()

export type BodyParser = (request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => void

/**
 * A `parseAs` parser, whose refusals keep the connection: fastify closes it
 * after any body its parser refuses, since the client "may send more data",
 * but such a parser is handed the body only once it has all arrived, so
 * nothing of it is left on the connection. Closed, a keep-alive connection
 * dropped the requests pipelined behind a malformed body unanswered (a body
 * that failed validation instead kept it). Bodies fastify refuses itself,
 * before reading them whole (a Content-Length over the limit), still close it.
 */
export function readWhole (parser: BodyParser): BodyParser {
  return (request, body, done) => parser(request, body, (err, parsed) => {
    if (err) refusedWhole.add(request)
    done(err, parsed)
  })
}

/** fastify's own map of a reply's headers (its `kReplyHeaders`), found once; null if fastify has none. */
let replyHeaders: symbol | null | undefined

/**
 * Undoes fastify's `Connection: close` after a body refused once read whole
 * (readWhole), in fastify's own headers only, before they are written: not
 * with `reply.removeHeader`, which removes it from Node's response too, and
 * Node then writes no Connection or Keep-Alive header and ignores its
 * `maxRequestsPerSocket` (`--keep-alive 0`). Should fastify keep its headers
 * elsewhere one day, the connection closes, as it did.
 */
function keepConnection (reply: FastifyReply) {
  replyHeaders ??= Object.getOwnPropertySymbols(reply).find(s => s.description === 'fastify.reply.headers') ?? null
  const headers = replyHeaders === null ? undefined : (reply as unknown as Record<symbol, Record<string, unknown> | undefined>)[replyHeaders]
  if (headers?.connection === 'close') delete headers.connection
}

/** The client errors @fastify/send answers the docs page's files with (see the docs scope's error handler). */
const SEND_ERRORS: Record<number, ErrorCode | undefined> = { 412: 'PRECONDITION_FAILED', 416: 'RANGE_NOT_SATISFIABLE' }

/** The body timeout when AppOptions gives none (settings.ts's --body-timeout default). */
const DEFAULT_BODY_TIMEOUT_MS = 30_000

/**
 * Node's `server.requestTimeout` for a body timeout: the time the headers may
 * take (its headersTimeout, 60 s) and the body timeout after them, so that
 * the deadline hook's 408, which says what was late, comes first. With no
 * body timeout (0), Node's own default, 300 s: a request is never read for
 * ever.
 */
export function nodeRequestTimeoutMs (bodyTimeoutMs: number, headersTimeoutMs: number): number {
  return bodyTimeoutMs > 0 ? headersTimeoutMs + bodyTimeoutMs : Math.max(300_000, headersTimeoutMs)
}

/** How often Node checks its connections against headersTimeout and requestTimeout (its default: 30 s). */
const CONNECTIONS_CHECK_MS = 1000

/** Answers of this many characters or bytes or more get the send timeout (`sendTimeoutMs`). */
const LARGE_ANSWER = 64 * 1024

const ajvBase = { useDefaults: true, removeAdditional: false, allErrors: false, strict: false } as const
/** Bodies are validated as sent: "1.5" is not a number. */
const strictAjv = new Ajv({ ...ajvBase, coerceTypes: false })
/** URL parts are strings by nature: params and query strings may be coerced. */
const coercingAjv = new Ajv({ ...ajvBase, coerceTypes: 'array' })

export async function createApp (options: AppOptions): Promise<App> {
  // Set once the routes exist: answers a request itself (and returns true)
  // when it can be refused for overload before fastify sees it.
  let refuseEarly: (req: IncomingMessage, res: ServerResponse) => boolean = () => false
  // Answers no fastify hook sees, counted in /metrics all the same.
  const responses: ResponseCounter = {}
  /** Answers a request in the error format before fastify sees it, on a connection then closed; counted as unmatched. */
  const answerRaw = (req: IncomingMessage, res: ServerResponse, code: ErrorCode, message: string) => {
    const body = JSON.stringify(errorBody(code, message))
    res.writeHead(ERROR_CODES[code], { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' })
    res.end(body)
    responses.observe?.(req.method ?? 'GET', UNMATCHED_ROUTE, ERROR_CODES[code], 0)
  }
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 5000,
    // fastify's own 503-while-closing body is not in our format; the
    // lifecycle hook below answers draining requests instead.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // /ner/ is /ner: a client that adds the slash gets the resource, not a 404.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, ignoreTrailingSlash: true },
    // Requests Node cannot parse and paths that do not decode: the one error
    // format too. (Unparseable requests have no method or path to count.)
    clientErrorHandler,
    frameworkErrors: (err, request, reply) => {
      const started = performance.now()
      frameworkErrors(err, request, reply)
      responses.observe?.(request.method, UNMATCHED_ROUTE, reply.statusCode, (performance.now() - started) / 1000)
    },
    // fast-json-stringify, with number arrays (model outputs) written by JSON.stringify.
    schemaController: { compilersFactory: { buildSerializer } },
    // fastify's own HTTP/1 server (lib/server.js), with the early refusal in front of its handler.
    serverFactory: (handler, fastifyOptions) => {
      // fastify hands its options with their defaults filled in.
      const opts = fastifyOptions as unknown as { http?: ServerOptions, keepAliveTimeout: number, requestTimeout: number, connectionTimeout: number, maxRequestsPerSocket: number }
      // Node itself answers an HTTP/1.1 request without Host (400) and an
      // Expect other than 100-continue (417) with empty bodies, not in the
      // error format: the first is let through to the handler below, the
      // second comes to the checkExpectation listener, and both are answered here.
      // connectionsCheckingInterval: how often Node looks for requests past
      // its headersTimeout and requestTimeout (below). Its 30 s default let a
      // client that never ends its headers keep a connection up to 90 s, not 60.
      const server = createServer({ ...opts.http, requireHostHeader: false, connectionsCheckingInterval: CONNECTIONS_CHECK_MS }, (req, res) => {
        if (req.headers.host === undefined && req.httpVersion === '1.1') return answerRaw(req, res, 'BAD_REQUEST', 'an HTTP/1.1 request needs a Host header')
        // Node undoes chunked alone: a body sent with another transfer coding
        // ('gzip, chunked') was read as it came, still coded (RFC 9112 6.1: 501).
        const te = req.headers['transfer-encoding']
        if (te !== undefined && !/^\s*chunked\s*$/i.test(te)) {
          return answerRaw(req, res, 'NOT_IMPLEMENTED', `transfer-encoding '${te.slice(0, 100)}' is not supported: send the body chunked or with a content-length (content-encoding gzip on the /v2 routes)`)
        }
        if (!refuseEarly(req, res)) handler(req, res)
      })
      server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
        answerRaw(req, res, 'EXPECTATION_FAILED', `expect '${String(req.headers.expect).slice(0, 100)}' is not supported: only 100-continue is`)
      })
      // CONNECT (a proxy's method): Node closed the connection without a word.
      server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
        answerOnSocket(socket, 'METHOD_NOT_ALLOWED', 'CONNECT is not supported: this server is not a proxy')
        responses.observe?.('CONNECT', UNMATCHED_ROUTE, 405, 0)
      })
      server.keepAliveTimeout = opts.keepAliveTimeout
      // Node's own bound on reading a whole request, headers and body (fastify
      // sets none: 0), behind the body timeout of the deadline hook: it ends
      // the reading of bodies that hook no longer watches, such as the body
      // of a request already answered (a 405 or a 413 sent from the headers,
      // an early 503), which Node reads and discards for as long as the client
      // sends it, keeping the connection. Answered with clientErrorHandler's
      // 408 and a close, within Node's check interval (1 s) after it.
      server.requestTimeout = opts.requestTimeout > 0 ? opts.requestTimeout : nodeRequestTimeoutMs(options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS, server.headersTimeout)
      server.setTimeout(opts.connectionTimeout)
      if (opts.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = opts.maxRequestsPerSocket
      // A keep-alive of 0 (which fastify reads as "its default, 72 s"): each
      // connection closes after its answer, as gunicorn's keepalive 0 does.
      if (options.keepAliveTimeoutMs === 0) server.maxRequestsPerSocket = 1
      return server
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App

  // Every method refused with 405 on a path that exists (TRACE, PROPFIND, ...: they were 404s).
  routeEveryMethod(app)
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? strictAjv.compile(schema) : coercingAjv.compile(schema))
  installErrorHandlers(app)
  // Requests are counted in /metrics as their responses close (the deadline's close listener).
  installDeadlines(app, options.requestTimeoutMs ?? 30_000, options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS, (request, reply, seconds) => responses.closed?.(request, reply, seconds))
  // An unknown path is a 404 from its headers (after the deadline's hook,
  // which counts it in /metrics): its body was read and parsed first, so a
  // body that is not JSON got a 400 for a route that does not exist.
  app.addHook('onRequest', (request, reply, done) => {
    if (request.is404) return sendNotFound(reply, request)
    done()
  })
  // JSON only: anything else is 415 (fastify would parse text/plain too).
  app.removeContentTypeParser('text/plain')
  // Uncompressed: fastify ignores Content-Encoding, so a gzip body was "not
  // valid JSON" (and a plain one labelled gzip was read). The Open Inference
  // Protocol's routes inflate gzip and deflate (oip.ts, its own parsers).
  const json = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  // Read as bytes, not as a string: fastify's string decoding turns bytes
  // that are not UTF-8 into U+FFFD without a word.
  // (readWhole: a body refused once read keeps its connection.)
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, readWhole((request, body, done) => {
    const encoding = request.headers['content-encoding']
    if (encoding !== undefined && contentCodings(encoding).length > 0) {
      return done(new HttpError('UNSUPPORTED_MEDIA_TYPE', `content-encoding '${encoding.slice(0, 100)}' is not supported on this route: send the body uncompressed`), undefined)
    }
    if (!isUtf8(body as Buffer)) return done(notUtf8(), undefined)
    const bytes = withoutBom(body as Buffer)
    const read = fastJson(bytes)
    if (read !== NOT_READ) return done(null, read)
    const text = bytes.toString('utf8')
    json(request, text, (err, parsed) => done(err && whyNotJson(err, text), parsed))
  }))

  const models = options.models ?? new ModelStore({ dir: options.modelsDir, threads: options.threads ?? 1, batching: options.batching, inlineBelowUs: options.inlineBelowUs, threadNice: options.threadNice })
  const lifecycle: Lifecycle = { state: 'loading', reason: 'loading models' }
  const resources: Resource[] = []
  const loadTasks: Array<{ name: string, task: () => Promise<void> }> = []
  const reloadTasks: Array<() => Promise<void>> = []
  app.decorate('models', models)
  app.decorate('lifecycle', lifecycle)

  // Requests that were in flight when the drain began answer with
  // `Connection: close` too: their keep-alive connections would otherwise
  // hold the drain open until the keep-alive timeout.
  //
  // A large answer waits in this process's memory until its client reads it,
  // and Node gives a client that reads nothing no limit (fastify's
  // connectionTimeout is 0): one that sent 64 texts to /pos and never read the
  // 6 MB answer held it, and its connection, for good. Such a connection is
  // closed once nothing of the answer has gone out for `sendTimeoutMs` (a
  // client that reads slowly keeps it open: each write that drains counts).
  // Small answers fit in the kernel's socket buffer and are left alone; when
  // the answer is out, Node sets the socket's keep-alive timeout as usual.
  const sendTimeoutMs = options.sendTimeoutMs ?? 30_000
  app.addHook('onSend', (request, reply, payload, done) => {
    if (lifecycle.state === 'draining') {
      if (!reply.raw.headersSent) reply.header('connection', 'close')
    } else if (refusedWhole.has(request) && request.raw.complete) {
      keepConnection(reply)
    }
    if (sendTimeoutMs > 0 && (typeof payload === 'string' || Buffer.isBuffer(payload)) && payload.length >= LARGE_ANSWER) {
      // (fastify's inject() answers on a stand-in socket that has no setTimeout.)
      const socket = reply.raw.socket
      if (typeof socket?.setTimeout === 'function') socket.setTimeout(sendTimeoutMs)
    }
    done(null, payload)
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'ONNX model service', version: '0.1.0', description: 'Models served over REST by resource classes.' },
    },
  })
  // The docs page's routes (/docs, /docs/json, /docs/static/*, ...), which
  // the plugin declares: other verbs on them 405 with Allow too (they were 404s).
  await app.register(async scope => {
    // Its files are sent by @fastify/send, which refuses a Range it cannot
    // satisfy (416) and a failed If-Match or If-Unmodified-Since (412) with
    // http-errors objects: the app's handler took them for errors of ours,
    // a 500 logged with its stack. They are the client's: answered here, in
    // the error format (a 416 with its Content-Range); anything else goes on
    // to the app's handler.
    scope.setErrorHandler((err: Error & { status?: number, expose?: boolean, headers?: Record<string, string> }, _request, reply) => {
      const code = err.expose === true ? SEND_ERRORS[err.status ?? 0] : undefined
      if (code === undefined) throw err
      const range = err.headers?.['Content-Range']
      return sendError(reply, code, err.message, range === undefined ? {} : { 'content-range': range })
    })
    const verbsByUrl = new Map<string, Set<string>>()
    scope.addHook('onRoute', route => {
      const set = verbsByUrl.get(route.url) ?? new Set<string>()
      // A HEAD route alone is fastify's for a GET ('/docs/', the GET being declared as '/docs').
      for (const m of [route.method].flat()) set.add(m === 'HEAD' ? 'GET' : m)
      verbsByUrl.set(route.url, set)
    })
    await scope.register(swaggerUi, { routePrefix: '/docs' })
    const docs = [...verbsByUrl]
    verbsByUrl.clear()
    for (const [url, verbs] of docs) answerOtherVerbs(scope, url, verbs)
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  await app.register(healthRoutes, { lifecycle, models })
  await app.register(metricsRoutes, { lifecycle, models, cluster: options.clusterMetrics ?? false, counter: responses })
  // Other verbs on them as on a resource: 405 with Allow (not a 404 for a
  // route that exists), and OPTIONS. (/openapi.json was a 404 to them.)
  for (const url of ['/health/live', '/health/ready', '/metrics', '/openapi.json']) {
    answerOtherVerbs(app, url, new Set(['GET']))
  }

  // Resource routes answer 503 until every model is loaded. While draining
  // they still serve what arrives (on connections opened before the drain),
  // and the onSend hook above asks the client to close the connection, so
  // keep-alive clients move to another worker instead of racing the
  // listener's close. (Callback hooks, not async ones: they run on every request.)
  const gate = (_request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (lifecycle.state === 'ready' || lifecycle.state === 'draining') return done()
    sendError(reply, 'NOT_READY', `not ready: ${lifecycle.reason}`, { 'retry-after': '1' })
  }

  // The models each resource loaded (recorded by `loadResources`), so that its
  // routes can refuse at once, before the body is read, when one of their
  // models' queues is full: under a flood, a refusal then costs no parsing.
  const modelsOf = new Map<Resource, Model[]>()
  /** The refusal one of a resource's models would give a request now, if any. */
  const refusalFor = (resource: Resource) => {
    for (const model of modelsOf.get(resource) ?? []) {
      const refused = models.pool.refusal(model.loaded.key)
      if (refused) return refused
    }
    return undefined
  }
  const refuseWhenFull = (resource: Resource) => (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const refused = refusalFor(resource)
    if (refused) sendOverloaded(reply, refused)
    else gate(request, reply, done)
  }

  // The same refusal, earlier still: in the HTTP server's request handler,
  // before fastify builds its request and reply, runs its hooks and
  // serializes, which cost more than the refusal itself (on one core, a flood
  // at 10x a model's capacity is mostly refusals: each microsecond spent on
  // one is taken from the model). Only for a verb and path that exactly match
  // a mounted resource route without parameters, while ready; anything else
  // (parameters, another spelling of the path, loading or draining) goes
  // through fastify and refuseWhenFull above. Early refusals are not logged.
  const earlyRoutes = new Map<string, Resource>()
  /** The paths mounted (parameters unnamed, no trailing slash): the template and class there. */
  const mounted = new Map<string, { template: string, name: string }>()
  refuseEarly = (req, res) => {
    const method = req.method
    if ((method !== 'POST' && method !== 'PUT' && method !== 'PATCH') || lifecycle.state !== 'ready') return false
    const url = req.url ?? ''
    const query = url.indexOf('?')
    let path = query < 0 ? url : url.slice(0, query)
    // /ner/ is /ner (the router's ignoreTrailingSlash).
    if (path.length > 1 && path.charCodeAt(path.length - 1) === 47) path = path.slice(0, -1)
    const resource = earlyRoutes.get(`${method} ${path}`)
    if (!resource) return false
    const refused = refusalFor(resource)
    if (!refused) return false
    // Timed from here: requests that are not refused pay nothing for it.
    const started = performance.now()
    const body = JSON.stringify(errorBody('OVERLOADED', refused.message))
    res.writeHead(503, {
      'retry-after': String(refused.retryAfterSeconds),
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    })
    // The unread body is discarded by Node once the response has finished.
    res.end(body)
    // Counted as fastify would (the route template of a parameterless route is its path).
    responses.observe?.(method, path, 503, (performance.now() - started) / 1000)
    return true
  }

  app.decorate('mount', function mount (template: string, resource: Resource, mountOptions: MountOptions = {}) {
    // loadResources() loads what is mounted when it starts: a later resource would be served unloaded.
    if (loading) throw new Error(`cannot mount ${template} after loadResources(): mount every resource first`)
    // A class for its instance read as a resource named "Function" with no responders.
    if (typeof resource === 'function') {
      const name = (resource as { name?: string }).name || 'given'
      throw new TypeError(`cannot mount the class ${name} at ${template}: mount an instance of it (new ${name}(...))`)
    }
    if (typeof resource !== 'object' || resource === null) {
      throw new TypeError(`cannot mount ${resource === null ? 'null' : `a ${typeof resource}`} at ${template}: give a resource object (an instance of a class extending Resource)`)
    }
    const url = toFastifyPath(template)
    const responders = respondersOf(resource, mountOptions.suffix ?? '')
    if (responders.size === 0) {
      throw new TypeError(`${resource.constructor.name} has no responders${mountOptions.suffix ? ` with suffix '${mountOptions.suffix}'` : ''} to mount at ${template}`)
    }
    // One resource per path (falcon's add_route). fastify's own refusal named
    // a verb nobody declared there ("Method 'POST' already declared": the
    // 405 that the first mount answers it with) or a path the app serves
    // itself (health, metrics, docs) with no word of why.
    const className = resource.constructor.name
    const path = url.length > 1 ? url.replace(/\/+$/, '') : url
    const key = path.replace(/:\w+/g, ':')
    const there = mounted.get(key)
    if (there) {
      throw new TypeError(`cannot mount ${className} at ${template}: ${there.template} is already mounted (${there.name}); one resource per path: give ${className} another path`)
    }
    if ([...responders.keys(), 'OPTIONS' as const].some(method => app.hasRoute({ method, url: path }))) {
      throw new TypeError(`cannot mount ${className} at ${template}: the app serves ${path} itself (health, metrics, docs)`)
    }
    const tag = mountOptions.tag ?? resource.constructor.name
    // A params schema field the template lacks is never in a request: every
    // request was a 400 that blamed the client ("params is missing the
    // required field 'itemId'") for the resource's mistake.
    // fastify's wildcard (`/files/*`) is the parameter '*'.
    const parameters = [...url.matchAll(/:(\w+)|(\*)/g)].map(m => m[1] ?? m[2])
    for (const [method, r] of responders) {
      const name = `${className}.on${method[0]}${method.slice(1).toLowerCase()}${mountOptions.suffix ?? ''}`
      // '5s', -1 or NaN was read as "no deadline" without a word (fastify checks bodyLimit itself).
      if (r.timeoutMs !== undefined && !(typeof r.timeoutMs === 'number' && r.timeoutMs >= 0 && Number.isFinite(r.timeoutMs))) {
        throw new TypeError(`${name}: timeoutMs must be a number of milliseconds >= 0 (0: no deadline), got ${JSON.stringify(r.timeoutMs) ?? String(r.timeoutMs)}`)
      }
      const declared = Object.keys((r.schema.params as { properties?: object } | undefined)?.properties ?? {})
      const unknown = declared.find(field => !parameters.includes(field))
      if (unknown !== undefined) {
        throw new TypeError(`${name}: its params schema declares '${unknown}', which ${template} does not have (${parameters.length > 0 ? `its parameters: ${parameters.join(', ')}` : 'it has no parameters'})`)
      }
    }
    // Recorded once every check passed: a mount refused leaves no trace.
    mounted.set(key, { template, name: className })
    if (!resources.includes(resource)) resources.push(resource)
    for (const [method, r] of responders) {
      if (method !== 'GET' && method !== 'DELETE' && !url.includes(':') && !url.includes('*')) earlyRoutes.set(`${method} ${url}`, resource)
      const { body, ...rest } = r.schema
      app.route({
        method,
        url,
        schema: {
          ...rest,
          ...(body ? { body: closeObjects(body) } : {}),
          response: { ...r.schema.response, '4xx': ErrorBody, '5xx': ErrorBody },
          tags: [tag],
          summary: r.summary,
          description: r.description,
        } as never,
        config: { timeoutMs: r.timeoutMs },
        bodyLimit: r.bodyLimit,
        // Verbs that carry a body are refused early when a model is overloaded.
        onRequest: method === 'GET' || method === 'DELETE' ? gate : refuseWhenFull(resource),
        handler: quietPastDeadline(r.handler as RouteHandler, `${resource.constructor.name}.on${method[0]}${method.slice(1).toLowerCase()}${mountOptions.suffix ?? ''}`) as never,
      })
    }
    // Verbs the resource lacks: 405 with Allow, before any body is parsed.
    answerOtherVerbs(app, url, new Set(responders.keys()), template)
    return app
  })

  let loading: Promise<void> | undefined
  app.decorate('loadResources', function loadResources () {
    loading ??= (async () => {
      // Each resource's store records the models it loads (see refuseWhenFull).
      const recording = (resource: Resource): ModelStore => new Proxy(models, {
        get (target, property) {
          if (property === 'load') {
            return async (...args: Parameters<ModelStore['load']>) => {
              const model = await target.load(...args)
              const list = modelsOf.get(resource) ?? []
              if (!list.includes(model)) modelsOf.set(resource, [...list, model])
              return model
            }
          }
          const value = Reflect.get(target, property, target)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
      const timeoutMs = options.loadTimeoutMs ?? 120_000
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Error(`models did not load within ${timeoutMs / 1000} s (the load timeout)`)
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(timedOut), timeoutMs)
      })
      // The resource step running, for its errors: a load() that threw its
      // own error ("ECONNREFUSED ...") was reported bare, naming no resource.
      let step = ''
      try {
        for (const resource of resources) {
          lifecycle.reason = `loading ${resource.constructor.name}`
          step = `${resource.constructor.name}.load()`
          // Optional: a resource that does not extend Resource (a plain object, as falcon's are) may lack them.
          await Promise.race([resource.load?.({ models: recording(resource), log: app.log }), timeout])
          lifecycle.reason = `warming up ${resource.constructor.name}`
          step = `${resource.constructor.name}.warmup()`
          await Promise.race([resource.warmup?.(), timeout])
        }
        step = ''
        for (const { name, task } of loadTasks) {
          lifecycle.reason = `loading ${name}`
          await Promise.race([task(), timeout])
        }
        if (lifecycle.state === 'loading') Object.assign(lifecycle, { state: 'ready', reason: '' })
      } catch (caught) {
        // A model the store could not load names itself and its file already.
        const err = step !== '' && caught !== timedOut && !(caught instanceof ModelLoadError)
          ? new Error(`${step} failed: ${caught instanceof Error ? caught.message : String(caught)}`, { cause: caught })
          : caught
        // Clients see the reason (503s, readiness) without the server's paths; the log has them.
        Object.assign(lifecycle, { state: 'failed', reason: withoutModelsDir((err as Error).message, options.modelsDir) })
        throw err
      } finally {
        clearTimeout(timer)
      }
    })()
    return loading
  })

  app.decorate('onLoad', function onLoad (name: string, task: () => Promise<void>) {
    loadTasks.push({ name, task })
  })
  app.decorate('onReload', function onReload (task: () => Promise<void>) {
    reloadTasks.push(task)
  })
  app.decorate('reload', async function reload () {
    for (const task of reloadTasks) await task()
  })

  app.decorate('drain', function drain ({ replaced = false }: { replaced?: boolean } = {}) {
    Object.assign(lifecycle, { state: 'draining', reason: 'shutting down', replaced })
  })

  app.addHook('onClose', async () => {
    lifecycle.state = 'draining'
    // Every resource closes, and the models are released, whatever fails.
    const errors: unknown[] = []
    for (const close of [...resources.map(r => () => r.close?.()), () => models.close()]) {
      try {
        await close()
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length === 1) throw errors[0]
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} errors while closing`)
  })

  return app
}

export { HttpError }
