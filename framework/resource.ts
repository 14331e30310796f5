// The resource contract, falcon-style: one long-lived object per model, with
// responders found by name (`onGet`, `onPost`, ..., and suffixed forms such as
// `onGetMetadata` for a second route). Each responder is made with
// `responder({ schema, handler })`: the one schema value gives validation, the
// handler's static types (no generic arguments to write), response
// serialization and the OpenAPI document.
//
//   export class Echo extends Resource {
//     onPost = responder({
//       schema: { body: Type.Object({ text: Type.String() }), response: { 200: Type.Object({ text: Type.String() }) } },
//       handler: async (request) => ({ text: request.body.text }),   // request.body is typed
//     })
//   }
import type { TSchema } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type {
  ContextConfigDefault, FastifyBaseLogger, RawReplyDefaultExpression, RawRequestDefaultExpression,
  RawServerDefault, RouteGenericInterface, RouteHandlerMethod,
} from 'fastify'
import type { ModelStore } from './models.ts'

export const VERBS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const
export type Verb = typeof VERBS[number]

export interface RouteSchema {
  body?: TSchema
  querystring?: TSchema
  params?: TSchema
  headers?: TSchema
  response?: Record<number | string, TSchema>
}

export type Handler<S extends RouteSchema> = RouteHandlerMethod<
  RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression,
  RouteGenericInterface, ContextConfigDefault, S, TypeBoxTypeProvider, FastifyBaseLogger
>

export interface ResponderSpec<S extends RouteSchema> {
  schema: S
  handler: Handler<S>
  /** One line for the OpenAPI document. */
  summary?: string
  description?: string
  /** Overrides the server's request deadline for this responder (milliseconds). */
  timeoutMs?: number
  /** Overrides the server's body limit for this responder (bytes). */
  bodyLimit?: number
}

const RESPONDER = Symbol('responder')

export interface Responder<S extends RouteSchema = RouteSchema> extends ResponderSpec<S> {
  readonly [RESPONDER]: true
}

/** Declares a responder; its handler is typed from its schema. */
export function responder<S extends RouteSchema> (spec: ResponderSpec<S>): Responder<S> {
  return { ...spec, [RESPONDER]: true }
}

export function isResponder (value: unknown): value is Responder {
  return typeof value === 'object' && value !== null && (value as Responder)[RESPONDER] === true
}

/** What a resource gets when the app loads it. */
export interface ResourceContext {
  models: ModelStore
  log: FastifyBaseLogger
}

/**
 * Base class for resources. Subclasses add responders as fields and may
 * override the lifecycle: `load` opens the models they need (through
 * `context.models`, never onnxruntime-node directly), `warmup` runs a first
 * inference so the first real request is not slow, `close` releases anything
 * they hold. Readiness turns 200 only after every resource loaded and warmed up.
 */
export abstract class Resource {
  async load (_context: ResourceContext): Promise<void> {}
  async warmup (): Promise<void> {}
  async close (): Promise<void> {}
}

const RESPONDER_NAME = /^on(Get|Post|Put|Patch|Delete)([A-Z]\w*)?$/

/**
 * Finds a resource's responders for one mount: `onPost` with no suffix,
 * `onPostMetadata` with the suffix 'Metadata' (falcon's `suffix=`).
 */
export function respondersOf (resource: object, suffix = ''): Map<Verb, Responder> {
  const found = new Map<Verb, Responder>()
  const names = new Set<string>()
  // Responders under names no mount finds (onPots, onget, onGet_meta), by name.
  const misnamed = new Map<string, unknown>()
  // Responders under route names: one kept under a helper name as well
  // (`update = responder(...)`, then `onPut = this.update`) is served.
  const routed = new Set<unknown>()
  for (let o: object | null = resource; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      names.add(name)
      // A plain value, not a getter.
      const value = Object.getOwnPropertyDescriptor(o, name)?.value
      if (!isResponder(value)) continue
      if (RESPONDER_NAME.test(name)) routed.add(value)
      else if (!misnamed.has(name)) misnamed.set(name, value)
    }
  }
  // One under no route name at all would never answer: its routes would be
  // 405s, or the class would have "no responders".
  for (const [name, value] of misnamed) {
    if (routed.has(value)) continue
    throw new TypeError(`${resource.constructor.name}.${name} was made with responder() but no route can find it: name it on<Verb> or on<Verb><Suffix>, with Verb one of Get, Post, Put, Patch, Delete and Suffix starting with a capital letter (onGetMetadata)`)
  }
  for (const name of names) {
    const m = RESPONDER_NAME.exec(name)
    if (!m || (m[2] ?? '') !== suffix) continue
    const value = (resource as Record<string, unknown>)[name]
    if (!isResponder(value)) {
      throw new TypeError(`${resource.constructor.name}.${name} looks like a responder but was not made with responder({ schema, handler })`)
    }
    found.set(m[1].toUpperCase() as Verb, value)
  }
  return found
}
