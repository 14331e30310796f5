// Every request gets a deadline, `request.deadline`, that is aborted when its
// time is up (504 is sent then) or when its client goes away. Resources pass it
// to `model.run(feeds, { signal: request.deadline })`, so a request that nobody
// waits for any more is dropped before it reaches a model.
//
// `request.deadline` is a light look-alike of an AbortSignal (`aborted`,
// `reason`, `addEventListener('abort')`, `removeEventListener`,
// `throwIfAborted`): on Node 20 a real AbortController and its listeners cost
// several microseconds per request, as much as a small model's whole run.
// APIs that insist on a real AbortSignal (fetch) get one from
// `request.abortSignal`, made on first use and aborted with the deadline.
//
// Why not fastify's `request.signal`: it follows the request stream's 'close'
// event, which Node emits as soon as the body has been read, so for a POST it
// reports "aborted" while the client is still waiting.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { sendError } from './errors.ts'
import { AbortedError } from './pool.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Aborted at the request's deadline or when the client disconnects (an AbortSignal look-alike). */
    deadline: RequestDeadline
    /** A real AbortSignal that follows `deadline`, made on first use (for fetch and the like). */
    readonly abortSignal: AbortSignal
  }
  interface FastifyContextConfig {
    /** Deadline for this route in milliseconds, instead of the app's. */
    timeoutMs?: number
  }
}

/** What `model.run` needs of a signal: an AbortSignal, or a RequestDeadline. */
export interface AbortSignalLike {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener (type: 'abort', listener: () => void, options?: { once?: boolean }): void
  removeEventListener (type: 'abort', listener: () => void): void
  /**
   * performance.now() at which it aborts, when known (a RequestDeadline's):
   * the pool drops a job whose time is up as it takes it for a thread, even
   * if the timer that aborts it has not run yet (a busy event loop runs it
   * late, after the thread's answer that frees a thread).
   */
  readonly expiresAt?: number
}

/** A client may ask for a shorter deadline (never a longer one), in seconds. */
export const CLIENT_TIMEOUT_HEADER = 'x-request-timeout'

export class DeadlineError extends Error {
  constructor (readonly timeoutMs: number) {
    super(`request timed out after ${timeoutMs / 1000} s`)
    this.name = 'DeadlineError'
  }
}

export class ClientGoneError extends Error {
  constructor () {
    super('client disconnected')
    this.name = 'ClientGoneError'
  }
}

/** One request's deadline: an AbortSignal look-alike with plain-array listeners. */
export class RequestDeadline implements AbortSignalLike {
  aborted = false
  reason: unknown = undefined
  /** performance.now() at which the deadline fires (Infinity: none). */
  expiresAt = Infinity
  private listeners: Array<() => void> | undefined

  addEventListener (type: 'abort', listener: () => void): void {
    if (type === 'abort' && !this.aborted) (this.listeners ??= []).push(listener)
  }

  removeEventListener (type: 'abort', listener: () => void): void {
    const i = type === 'abort' && this.listeners ? this.listeners.indexOf(listener) : -1
    if (i >= 0) this.listeners!.splice(i, 1)
  }

  throwIfAborted (): void {
    if (this.aborted) throw this.reason
  }

  /** Milliseconds left (Infinity: no deadline; 0 once aborted). */
  get remainingMs (): number {
    return this.aborted ? 0 : this.expiresAt - performance.now()
  }

  abort (reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    const listeners = this.listeners
    this.listeners = undefined
    for (const listener of listeners ?? []) listener()
  }
}

interface DeadlineState {
  deadline: RequestDeadline
  reply: FastifyReply
  timer?: NodeJS.Timeout
  controller?: AbortController
  /** The deadline's length in milliseconds, as its messages say it (0: none). */
  timeoutMs: number
  /** performance.now() by which the body must have all arrived (Infinity: checked, or no bound). */
  bodyBy: number
  /** The body timeout, in milliseconds, as its message says it. */
  bodyTimeoutMs: number
}

const DEADLINE = Symbol('deadline')
type WithDeadline = FastifyRequest & { [DEADLINE]?: DeadlineState }

/** setTimeout's longest delay: Node fires a longer one after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Sets the deadline to `timeoutMs` from now. */
function arm (state: DeadlineState, timeoutMs: number, now = performance.now()) {
  state.timeoutMs = timeoutMs
  state.deadline.expiresAt = now + timeoutMs
  schedule(state, now)
}

/**
 * One timer per request, for whichever comes first: the body timeout (when
 * it is shorter than the deadline, or there is no deadline) or the deadline.
 * A body timeout that finds the body in moves the timer on to the deadline.
 */
function schedule (state: DeadlineState, now = performance.now()) {
  clearTimeout(state.timer)
  state.timer = undefined
  const body = state.bodyBy < state.deadline.expiresAt
  const at = body ? state.bodyBy : state.deadline.expiresAt
  // Over 24 days (or none): no request lasts that long, and no timer can wait it out.
  if (!(at - now <= MAX_TIMER_MS)) return
  state.timer = setTimeout(body ? bodyDue : deadlineDue, Math.max(0, at - now), state)
}

/** The body timeout: 408 if the body has not all arrived, else on to the deadline. */
function bodyDue (state: DeadlineState) {
  state.bodyBy = Infinity
  if (state.reply.request.raw.complete === false) timeOut(state, state.bodyTimeoutMs)
  else schedule(state)
}

function deadlineDue (state: DeadlineState) {
  timeOut(state, state.timeoutMs)
}

function timeOut (state: DeadlineState, timeoutMs: number) {
  const err = new DeadlineError(timeoutMs)
  state.deadline.abort(err)
  const { reply } = state
  if (reply.sent || reply.raw.headersSent) return
  // The body has not all arrived: the client is late, not the server (408,
  // not 504), and a connection stopped mid-body cannot carry another
  // request: it closes. (It was a 504 that kept the connection alive.)
  if (reply.request.raw.complete === false) {
    sendError(reply, 'REQUEST_TIMEOUT', `the request body did not arrive within ${timeoutMs / 1000} s`, { connection: 'close' })
  } else {
    sendError(reply, 'TIMEOUT', err.message)
  }
}

/**
 * Shortens a request's deadline to `timeoutMs` from now (never lengthens it),
 * for deadlines that arrive in the body, such as the Open Inference
 * Protocol's `timeout` parameter. Returns the milliseconds left.
 */
export function limitDeadline (request: FastifyRequest, timeoutMs: number): number {
  const state = (request as WithDeadline)[DEADLINE]
  if (!state) return Infinity
  if (!(timeoutMs > 0)) return state.deadline.remainingMs
  if (state.deadline.aborted) return 0
  if (performance.now() + timeoutMs < state.deadline.expiresAt) arm(state, timeoutMs)
  return state.deadline.remainingMs
}

export function clientTimeoutMs (request: FastifyRequest): number | undefined {
  const raw = request.headers[CLIENT_TIMEOUT_HEADER]
  if (typeof raw !== 'string') return undefined
  const seconds = Number(raw)
  return Number.isFinite(seconds) && seconds > 0 ? Math.ceil(seconds * 1000) : undefined
}

/**
 * `onClosed` is told of each request as its response closes, with the
 * seconds since it came: every response closes once, whether it finished or
 * its client left (fastify's onResponse runs on 'finish' only), so /metrics
 * counts requests from here.
 */
/**
 * `bodyTimeoutMs` bounds the reading of a request's body, from its headers,
 * whatever the deadline (also when there is none: `--timeout 0` left a body
 * sent a byte at a time, or never, unbounded): a body not all arrived by then
 * is a 408 and the connection closes, as at the deadline. 0: the deadline
 * alone bounds it.
 */
export function installDeadlines (app: FastifyInstance, defaultTimeoutMs: number, bodyTimeoutMs: number, onClosed?: (request: FastifyRequest, reply: FastifyReply, seconds: number) => void) {
  app.decorateRequest('deadline', null as unknown as RequestDeadline)
  app.decorateRequest('abortSignal', {
    getter (this: FastifyRequest) {
      const state = (this as WithDeadline)[DEADLINE]
      if (!state) return new AbortController().signal
      if (!state.controller) {
        const controller = state.controller = new AbortController()
        const { deadline } = state
        if (deadline.aborted) controller.abort(deadline.reason)
        else deadline.addEventListener('abort', () => controller.abort(deadline.reason))
      }
      return state.controller.signal
    },
  })
  // A callback hook, not an async one: it runs on every request.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    // Not reply.elapsedTime: fastify times a reply only for its logger or an onResponse hook.
    const started = performance.now()
    const deadline = new RequestDeadline()
    request.deadline = deadline
    const routeMs = request.routeOptions.config?.timeoutMs ?? defaultTimeoutMs
    const askedMs = clientTimeoutMs(request)
    const timeoutMs = askedMs !== undefined && (routeMs <= 0 || askedMs < routeMs) ? askedMs : routeMs
    // (Node marks a request complete once its body is in: a bodyless one
    // after this hook, in the same tick, so it is checked when the timer fires.)
    const state: DeadlineState = { deadline, reply, timeoutMs: 0, bodyBy: bodyTimeoutMs > 0 ? started + bodyTimeoutMs : Infinity, bodyTimeoutMs }
    ;(request as WithDeadline)[DEADLINE] = state
    if (timeoutMs > 0) arm(state, timeoutMs, started)
    else schedule(state, started)
    reply.raw.once('close', () => {
      clearTimeout(state.timer)
      if (!reply.raw.writableFinished) deadline.abort(new ClientGoneError())
      onClosed?.(request, reply, (performance.now() - started) / 1000)
    })
    done()
  })
}

export type RouteHandler = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown

/**
 * A route handler whose end is dropped once its deadline answered the request
 * (the 504 sent): a result that comes too late, or the deadline's error (its
 * reason, or a model run it dropped from the queue). fastify would log the
 * first as a warning ("Reply was already sent") and the second as an error
 * with its stack, for a request that ended as it should. Any other end, such
 * as a real failure that comes after the 504, is fastify's: it is logged.
 *
 * With `responderName` (a resource's responder), an async handler that
 * resolves with nothing to send is a 500, logged with that name: its types
 * allow it (a handler may send with `reply.send` and return nothing), but
 * fastify would answer it with an empty 200, whatever the response schema
 * says. A sync handler that returns nothing is left as it is: fastify lets
 * one send later, from a callback, so it has not forgotten anything yet (one
 * that never sends gets its deadline's 504). A 204 and a request already
 * answered, sent or whose client left are left as they are.
 */
export function quietPastDeadline (handler: RouteHandler, responderName?: string): RouteHandler {
  const answered = (request: FastifyRequest, reply: FastifyReply) => reply.sent && request.deadline?.aborted === true
  // When fastify would send an empty body for an undefined result (its wrap-thenable.js).
  const unanswered = (request: FastifyRequest, reply: FastifyReply) => responderName !== undefined &&
    !reply.sent && !reply.raw.headersSent && reply.statusCode !== 204 && !request.raw.aborted && !request.deadline?.aborted
  const nothing = () => new Error(`${responderName} returned nothing and sent nothing: return the response body, or return reply after reply.send(...)`)
  // A typed array of numbers (a model output's data) returned as the answer:
  // fastify sends any typed array as its raw bytes (application/octet-stream,
  // in a 200, past the response schema). Bytes (a Buffer, a Uint8Array) are
  // sent as fastify sends them.
  const rawNumbers = (payload: unknown) => {
    if (responderName === undefined || !ArrayBuffer.isView(payload) || payload instanceof Uint8Array || payload instanceof DataView) return
    const type = payload.constructor.name
    throw new Error(`${responderName} returned a${/^[AEIOU]/.test(type) ? 'n' : ''} ${type}, which would be sent as its raw bytes: return its values in the JSON answer (Array.from), or send bytes with reply.send(Buffer.from(...))`)
  }
  return function (request, reply) {
    const result = handler.call(this, request, reply)
    // A sync handler may answer later from a callback: not a forgotten answer.
    if (!(result instanceof Promise)) {
      rawNumbers(result)
      return result
    }
    return result.then(
      payload => {
        if (answered(request, reply)) return undefined
        if (payload === undefined && unanswered(request, reply)) throw nothing()
        rawNumbers(payload)
        return payload
      },
      err => {
        const deadlines = err instanceof AbortedError || err === request.deadline?.reason
        if (!(deadlines && answered(request, reply))) throw err
      },
    )
  }
}
