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
    let timer: NodeJS.Timeout | undefined
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        const err = new DeadlineError(timeoutMs)
        controller.abort(err)
        if (!reply.sent && !reply.raw.headersSent) sendError(reply, 'TIMEOUT', err.message)
      }, timeoutMs)
    }
    reply.raw.once('close', () => {
      clearTimeout(timer)
      if (!reply.raw.writableFinished) controller.abort(new ClientGoneError())
    })
  })
}
