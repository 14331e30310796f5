// Every request gets an AbortSignal, `request.abortSignal`, that fires when
// its deadline passes (504 is sent then) or when its client goes away.
// Resources pass it to `model.run(feeds, { signal })`, so a request that
// nobody waits for any more is dropped before it reaches a model.
//
// Why not fastify's `request.signal`: it follows the request stream's 'close'
// event, which Node emits as soon as the body has been read, so for a POST it
// reports "aborted" while the client is still waiting.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { sendError } from './errors.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Aborted at the request's deadline or when the client disconnects. */
    abortSignal: AbortSignal
  }
  interface FastifyContextConfig {
    /** Deadline for this route in milliseconds, instead of the app's. */
    timeoutMs?: number
  }
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

interface DeadlineState {
  controller: AbortController
  reply: FastifyReply
  timer?: NodeJS.Timeout
  /** performance.now() at which the deadline fires (Infinity: none). */
  expiresAt: number
}

const DEADLINE = Symbol('deadline')
type WithDeadline = FastifyRequest & { [DEADLINE]?: DeadlineState }

function arm (state: DeadlineState, timeoutMs: number) {
  clearTimeout(state.timer)
  state.expiresAt = performance.now() + timeoutMs
  state.timer = setTimeout(() => {
    const err = new DeadlineError(timeoutMs)
    state.controller.abort(err)
    const { reply } = state
    if (!reply.sent && !reply.raw.headersSent) sendError(reply, 'TIMEOUT', err.message)
  }, timeoutMs)
}

/**
 * Shortens a request's deadline to `timeoutMs` from now (never lengthens it),
 * for deadlines that arrive in the body, such as the Open Inference
 * Protocol's `timeout` parameter. Returns the milliseconds left.
 */
export function limitDeadline (request: FastifyRequest, timeoutMs: number): number {
  const state = (request as WithDeadline)[DEADLINE]
  if (!state || !(timeoutMs > 0)) return state ? state.expiresAt - performance.now() : Infinity
  if (state.controller.signal.aborted) return 0
  if (performance.now() + timeoutMs < state.expiresAt) arm(state, timeoutMs)
  return state.expiresAt - performance.now()
}

export function clientTimeoutMs (request: FastifyRequest): number | undefined {
  const raw = request.headers[CLIENT_TIMEOUT_HEADER]
  if (typeof raw !== 'string') return undefined
  const seconds = Number(raw)
  return Number.isFinite(seconds) && seconds > 0 ? Math.ceil(seconds * 1000) : undefined
}

export function installDeadlines (app: FastifyInstance, defaultTimeoutMs: number) {
  app.decorateRequest('abortSignal', null as unknown as AbortSignal)
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const controller = new AbortController()
    request.abortSignal = controller.signal
    const routeMs = request.routeOptions.config?.timeoutMs ?? defaultTimeoutMs
    const askedMs = clientTimeoutMs(request)
    const timeoutMs = askedMs !== undefined && (routeMs <= 0 || askedMs < routeMs) ? askedMs : routeMs
    const state: DeadlineState = { controller, reply, expiresAt: Infinity }
    ;(request as WithDeadline)[DEADLINE] = state
    if (timeoutMs > 0) arm(state, timeoutMs)
    reply.raw.once('close', () => {
      clearTimeout(state.timer)
      if (!reply.raw.writableFinished) controller.abort(new ClientGoneError())
    })
  })
}
