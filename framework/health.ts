// Liveness and readiness, the way Kubernetes probes them:
// - /health/live is 200 while the process serves HTTP at all;
// - /health/ready is 200 only once every model is loaded and warmed up, and
//   503 (with the reason) while loading, after a failed load, while a model is
//   held by no inference thread (see framework/pool.ts), or while draining,
//   so a load balancer stops sending traffic before the process goes away
//   (not while a cluster worker drains because it is replaced: the server
//   goes on, and its other workers serve).
import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { ErrorBody, sendError, type ErrorCode } from './errors.ts'
import type { Lifecycle } from './create-app.ts'
import type { ModelStore } from './models.ts'
import { modelShown } from './pool.ts'

const Status = Type.Object({ status: Type.String() })

/**
 * Whether readiness says 200 (models aside): once loaded, and while a cluster
 * worker drains for its replacement, the server going on (create-app.ts's
 * drain).
 */
export function readyToServe (lifecycle: Lifecycle): boolean {
  return lifecycle.state === 'ready' || (lifecycle.state === 'draining' && lifecycle.replaced === true)
}

/**
 * Why readiness is 503 now, or undefined when it is 200: /health/ready and
 * OIP's /v2/health/ready both ask. Ready to serve, with every model held by
 * an inference thread (a model none holds answers 503 until it is loaded
 * again: see ModelUnavailableError).
 */
export function notReady (lifecycle: Lifecycle, models: ModelStore): { code: ErrorCode, message: string } | undefined {
  // A cluster worker being replaced drains while the server goes on (create-app.ts's drain).
  if (!readyToServe(lifecycle)) {
    return { code: lifecycle.state === 'draining' ? 'SHUTTING_DOWN' : 'NOT_READY', message: `not ready: ${lifecycle.reason}` }
  }
  for (const key of models.pool.keys()) {
    const reason = models.pool.unavailable(key)
    if (reason !== undefined) return { code: 'NOT_READY', message: `not ready: ${modelShown(key)} is unavailable: ${reason}` }
  }
  return undefined
}

export async function healthRoutes (app: FastifyInstance, { lifecycle, models }: { lifecycle: Lifecycle, models: ModelStore }) {
  app.get('/health/live', {
    schema: { tags: ['health'], summary: 'Liveness: 200 while the process serves', response: { 200: Status } },
  }, async () => ({ status: 'live' }))

  app.get('/health/ready', {
    schema: {
      tags: ['health'],
      summary: 'Readiness: 200 once every model is loaded and warmed up',
      response: { 200: Status, 503: ErrorBody },
    },
  }, async (_request, reply) => {
    const why = notReady(lifecycle, models)
    if (!why) return { status: 'ready' }
    return sendError(reply, why.code, why.message, { 'retry-after': '1' })
  })
}
