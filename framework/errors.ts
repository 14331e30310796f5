// One error format for every error the service answers with:
//
//   {"error": "<human-readable message>", "code": "<stable code>", "statusCode": <n>}
//
// `error` is the field Open Inference Protocol clients read. `code` is stable:
// clients may branch on it, so codes are only added, never renamed. Every code
// lives in the registry below (fastify keeps its FST_ERR_* codes the same way).
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import { STATUS_CODES, validateHeaderName, validateHeaderValue } from 'node:http'
import { resolve, sep } from 'node:path'
import { AbortedError, BadInputError, ModelUnavailableError, OverloadedError } from './pool.ts'

export const ERROR_CODES = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  EXPECTATION_FAILED: 417,
  UNPROCESSABLE: 422,
  TOO_MANY_REQUESTS: 429,
  HEADERS_TOO_LARGE: 431,
  INTERNAL_ERROR: 500,
  NOT_IMPLEMENTED: 501,
  NOT_READY: 503,
  MODEL_NOT_READY: 503,
  OVERLOADED: 503,
  SHUTTING_DOWN: 503,
  METRICS_UNAVAILABLE: 503,
  TIMEOUT: 504,
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** The schema of every error body, for response serialization and OpenAPI. */
export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'Human-readable message' }),
    code: Type.String({ description: 'Stable machine-readable code' }),
    statusCode: Type.Integer(),
  },
  { $id: 'ErrorBody', title: 'Error' },
)

/**
 * An error with an HTTP status, safe to show to the client. Throw it anywhere
 * in a responder; the app's error handler turns it into the error body.
 */
export class HttpError extends Error {
  readonly statusCode: number
  readonly code: ErrorCode
  readonly headers: Record<string, string>

  constructor (code: ErrorCode, message: string, options: { headers?: Record<string, string>, cause?: unknown } = {}) {
    // A code the registry lacks (from JavaScript, or a cast) had no status:
    // the error handler failed on it, and fastify answered in its own words.
    if (!Object.hasOwn(ERROR_CODES, code)) {
      throw new TypeError(`HttpError: unknown code '${String(code)}': use one of framework/errors.ts's ERROR_CODES (${Object.keys(ERROR_CODES).join(', ')})`)
    }
    super(message, { cause: options.cause })
    this.name = 'HttpError'
    this.code = code
    this.statusCode = ERROR_CODES[code]
    this.headers = options.headers ?? {}
    for (const [name, value] of Object.entries(this.headers)) checkHeader(name, value)
  }
}

/**
 * Refuses a header Node would not send, where the HttpError is made: at send
 * time it failed with Node's ERR_INVALID_CHAR, far from the code that made
 * it, and fastify answered in its own format.
 */
function checkHeader (name: string, value: unknown) {
  try {
    validateHeaderName(name)
  } catch {
    throw new TypeError(`HttpError: header name '${name}' is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_\`|~ only, no spaces)`)
  }
  // The error body's length is the server's to write.
  if (/^(content-length|transfer-encoding)$/i.test(name)) throw new TypeError(`HttpError: header '${name}' is set by the server for the error body; leave it out`)
  try {
    validateHeaderValue(name, value as string)
  } catch (err) {
    throw new TypeError(`HttpError: header '${name}' has an invalid value: ${JSON.stringify(value)} (a header value is one line of printable characters, no newline or control character: ${(err as Error).message})`)
  }
}

/**
 * A JSON body whose bytes are not UTF-8 (RFC 8259 8.1: JSON text is UTF-8):
 * decoded as it was, each bad byte became U+FFFD and the request was served,
 * on other text than the client sent (a /ner text's offsets moved).
 */
export const notUtf8 = () =>
  new HttpError('INVALID_JSON', 'the body is not valid UTF-8: JSON bodies are read as UTF-8 whatever charset the content-type names')

export const badRequest = (message: string) => new HttpError('BAD_REQUEST', message)
export const notFound = (message: string) => new HttpError('NOT_FOUND', message)
export const payloadTooLarge = (message: string) => new HttpError('PAYLOAD_TOO_LARGE', message)
export const notReady = (message: string, retryAfterSeconds = 1) =>
  new HttpError('NOT_READY', message, { headers: { 'retry-after': String(retryAfterSeconds) } })

/** fastify's own error codes mapped to ours, with the message the client sees. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
}

interface ValidationItem { instancePath?: string, message?: string, keyword?: string, params?: Record<string, unknown> }

/** The first code registered for each status. */
const CODE_OF_STATUS = new Map<number, ErrorCode>()
for (const [code, status] of Object.entries(ERROR_CODES) as Array<[ErrorCode, number]>) if (!CODE_OF_STATUS.has(status)) CODE_OF_STATUS.set(status, code)

/**
 * A client's string as error messages quote it: at most 100 characters. A
 * field or input name of 500,000 characters came back whole, in a 500 kB
 * error body.
 */
export const shown = (text: string) => (text.length > 100 ? `${text.slice(0, 100)}...` : text)

/**
 * A client's JSON value as error messages quote it: a string, boolean or
 * null as JSON and a number as JavaScript writes it (1e999 parses to
 * Infinity, which JSON writes as null), shortened as by `shown`; an object or
 * an array by its kind alone (a typed array by its class). JSON.stringify of one nested 20,000 deep (a 120 kB body)
 * overflowed the stack, a 500, and a large one came back whole.
 */
export function shownValue (value: unknown): string {
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'object' && value !== null) return 'an object'
  return shown(typeof value === 'number' ? String(value) : JSON.stringify(value) ?? String(value))
}

/** JSON pointer to a readable path: /rows/0/1 -> .rows[0][1] */
function fieldPath (pointer: string): string {
  return pointer.split('/').slice(1).map(p => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map(p => (/^[0-9]+$/.test(p) ? `[${p}]` : `.${p}`)).join('')
}

/** "body/text must be string", "body must NOT have additional property 'foo'". */
export function describeValidation (context: string | undefined, items: ValidationItem[]): string {
  return items.slice(0, 3).map(item => {
    const where = (context ?? 'body') + fieldPath(item.instancePath ?? '')
    if (item.keyword === 'additionalProperties') {
      return `${where} has an unknown field '${shown(String(item.params?.additionalProperty))}'`
    }
    if (item.keyword === 'required') {
      const field = String(item.params?.missingProperty)
      return `${where} is missing the required field '${field}'`
    }
    return `${where} ${item.message ?? 'is invalid'}`
  }).join('; ')
}

/**
 * ONNX Runtime's source location in its messages: its build's file and line,
 * then the C++ function, then the reason ("/onnxruntime_src/onnxruntime/core/
 * graph/model.cc:187 onnxruntime::Model::Model(onnx::ModelProto&&, ...)
 * ModelProto does not have a graph."). The function ends at its closing
 * parenthesis, a ` const` and a GCC `[with T = ...]` after it.
 */
const SOURCE_LOCATION = /\/\S+\.(?:cc|cpp|h):\d+ [^]*?\)(?: const)?(?: \[with [^\]]*\])? (?=\S)/g

/**
 * `message` as clients may see it, without the server's models directory:
 * files under it relative, the directory itself by name (logs keep the paths);
 * and without ONNX Runtime's source locations (an empty model file's load
 * failure showed one, in model readiness and the repository index).
 */
export function withoutModelsDir (message: string, modelsDir: string): string {
  const dir = resolve(modelsDir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return message
    .replace(new RegExp(`${dir}${sep}(?=\\S)`, 'g'), '')
    .replace(new RegExp(`${dir}${sep}?`, 'g'), 'the models directory')
    .replace(SOURCE_LOCATION, '')
}

export function errorBody (code: ErrorCode, message: string) {
  return { error: message, code, statusCode: ERROR_CODES[code] }
}

export function sendError (reply: FastifyReply, code: ErrorCode, message: string, headers: Record<string, string> = {}) {
  return reply.code(ERROR_CODES[code]).headers(headers).type('application/json').send(errorBody(code, message))
}

/** A model's queue is full: 503 with Retry-After, answered before any work is queued. */
export function sendOverloaded (reply: FastifyReply, err: OverloadedError) {
  return sendError(reply, 'OVERLOADED', err.message, { 'retry-after': String(err.retryAfterSeconds) })
}

/**
 * What Node's HTTP parser could not read (fastify's clientErrorHandler): the
 * answer is written on the socket itself, which is then closed; there is no
 * request to reply to.
 */
export function clientErrorHandler (err: NodeJS.ErrnoException, socket: import('node:stream').Duplex) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  // Node's own caution (its socketOnError), which fastify's handler, and this
  // one, lacked: nothing is written into an answer already going out, nor
  // after the answer to a request whose body was still arriving (a 405 or 413
  // sent from its headers, whose body Node then reads and discards until its
  // requestTimeout): that request has had its answer, and a second one, a
  // 408 it did not ask for, would follow it. The connection just closes.
  // (Node's internals: the socket's response in progress, and its parser's
  // request; without them, the answer is written as before.)
  const http = socket as { _httpMessage?: { headersSent?: boolean } | null, parser?: { incoming?: { complete?: boolean } | null } | null }
  const answered = http._httpMessage?.headersSent === true ||
    (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && !http._httpMessage && http.parser?.incoming?.complete === false)
  if (answered) {
    socket.destroy()
    return
  }
  const [code, message]: [ErrorCode, string] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? ['REQUEST_TIMEOUT', 'the request did not arrive in time']
      : err.code === 'HPE_HEADER_OVERFLOW' ? ['HEADERS_TOO_LARGE', 'the request headers are too large']
        : ['BAD_REQUEST', 'malformed HTTP request']
  answerOnSocket(socket, code, message)
}

/** Writes an error response on a socket no request or response object holds, then closes it. */
export function answerOnSocket (socket: import('node:stream').Duplex, code: ErrorCode, message: string) {
  const body = JSON.stringify(errorBody(code, message))
  const status = ERROR_CODES[code]
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}

/** The 415 message: the content type that came (shortened), and what the route takes. */
export function unsupportedMediaType (type: string | undefined, accepted: string): string {
  if (type === undefined || type.trim() === '') return `the body has no content-type: send it as ${accepted}`
  const shown = type.length > 100 ? `${type.slice(0, 100)}...` : type
  return `content-type '${shown}' is not supported: send the body as ${accepted}`
}

/**
 * The longest path parameter routes take, in characters once decoded: a
 * model's name may have 128 (models.ts, repository.ts). fastify's default of
 * 100 answered every OIP route of a model with a longer name, listed by the
 * repository index, with a 400.
 */
export const MAX_PARAM_LENGTH = 128

/** Errors fastify meets before a route runs (a path that does not decode): the one format too. */
export function frameworkErrors (err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const path = (request.url ?? '').split('?')[0]
  // fastify's messages repeat the whole path (up to the 16 KB header limit)
  // and say "max param length", a router setting, not what was wrong.
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return sendError(reply, 'BAD_REQUEST', `a segment of the path '${shown(path)}' is longer than ${MAX_PARAM_LENGTH} characters`)
  }
  if (err.code === 'FST_ERR_BAD_URL') return sendError(reply, 'BAD_REQUEST', `'${shown(path)}' is not a valid url component`)
  sendError(reply, 'BAD_REQUEST', err.message)
}

/** Installs the error and not-found handlers that give every error one shape. */
export function installErrorHandlers (app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError | HttpError, request: FastifyRequest, reply: FastifyReply) => {
    // A promise rejected with no reason (`reject()`) or `throw null`: the
    // reads of err.code below failed, and fastify answered its own
    // FST_ERR_FAILED_ERROR_SERIALIZATION body, which quoted that failure.
    if (err === null || err === undefined) {
      request.log.error(`unhandled error: a handler threw or rejected with ${err}`)
      return sendError(reply, 'INTERNAL_ERROR', 'Internal server error')
    }
    if (err instanceof HttpError) {
      if (err.statusCode >= 500) request.log.error({ err }, 'request failed')
      return sendError(reply, err.code, err.message, err.headers)
    }
    if (err instanceof OverloadedError) return sendOverloaded(reply, err)
    if (err instanceof ModelUnavailableError) return sendError(reply, 'MODEL_NOT_READY', err.message, { 'retry-after': '1' })
    if (err instanceof BadInputError) return sendError(reply, 'BAD_REQUEST', err.message)
    if (err instanceof AbortedError) {
      // The request's deadline passed (504 already sent) or its client left.
      return reply.sent ? reply : sendError(reply, 'TIMEOUT', 'request was cancelled before the model ran it')
    }
    const fe = err as FastifyError
    // The client closed its connection while its body was read (Node's
    // 'aborted', which fastify's body reader passes on with a 400): no one to
    // answer, and nothing of ours failed. It reached the 500 below, logged as
    // an error with its stack.
    if (fe.code === 'ECONNRESET' && request.raw.destroyed) return sendError(reply, 'BAD_REQUEST', 'the client closed the connection before its body arrived')
    if (fe.validation) {
      // "body must be object" for a request that sent none.
      if (fe.validationContext === 'body' && request.body === undefined) {
        return sendError(reply, 'VALIDATION_FAILED', 'the request has no body: send a JSON object with content-type application/json')
      }
      return sendError(reply, 'VALIDATION_FAILED', describeValidation(fe.validationContext, fe.validation))
    }
    const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined
    // fastify's "Unsupported Media Type" says neither what came nor what to send.
    if (mapped === 'UNSUPPORTED_MEDIA_TYPE') return sendError(reply, mapped, unsupportedMediaType(request.headers['content-type'], 'application/json'))
    // Nor does its "Request body is too large" say what the limit is.
    const limit = request.routeOptions.bodyLimit
    if (mapped === 'PAYLOAD_TOO_LARGE' && typeof limit === 'number') return sendError(reply, mapped, `the request body is larger than this route's limit of ${limit} bytes`)
    if (mapped) return sendError(reply, mapped, fe.message)
    if (fe.code?.startsWith('FST_') && fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      // Other client errors raised by fastify itself: keep the status, with
      // the code registered for it. (Any other error with a statusCode, from
      // an HTTP client say, is ours: a 500 below, its message never shown.)
      const code = CODE_OF_STATUS.get(fe.statusCode) ?? 'BAD_REQUEST'
      return reply.code(fe.statusCode).type('application/json').send({ error: fe.message, code, statusCode: fe.statusCode })
    }
    // Anything else is our fault: log it with its cause, never show it.
    request.log.error({ err }, 'unhandled error')
    return sendError(reply, 'INTERNAL_ERROR', 'Internal server error')
  })

  app.setNotFoundHandler((request, reply) => sendNotFound(reply, request))
}

/** The 404 of a path no route serves (the query left out; a long path shortened, as `shown` does). */
export function sendNotFound (reply: FastifyReply, request: FastifyRequest) {
  sendError(reply, 'NOT_FOUND', `No route for ${request.method} ${shown(request.url.split('?')[0])}`)
}
