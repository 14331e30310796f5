// The resource contract, falcon-style: one long-lived object per model, with
// responders found by name (`onGet`, `onPost`, ..., and suffixed forms such as
// `onGetMetadata` for a second route). Each responder is made with
// `responder({ schema, handler })`: the one schema value gives validation, the
// handler's static types (no generic arguments to write), response
// serialization and the OpenAPI document. With a 200 response schema, the
// handler must return its answer (or the reply it sent), with no field the
// schema lacks: both are compile errors (HandlerReturn, ExactAnswer below).
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

/** The body types of every response the schema declares (fastify's reply type). */
export type ReplyBody<S extends RouteSchema> = Exclude<ReturnType<Handler<S>>, void | PromiseLike<unknown>>

/**
 * What a responder's handler may return. With a 200 response schema, not
 * fastify's `Promise<void>`: an async handler that forgets its `return` is an
 * empty 200 (a 500 at run time, see deadline.ts), so it is refused here. One
 * that answers through `reply` returns it (`return reply.send(...)`: the reply
 * is a thenable that resolves to nothing, so the handler is `Promise<never>`,
 * which fits). A sync handler may still return nothing: it may send later
 * from a callback (fastify's callback style).
 */
export type HandlerReturn<S extends RouteSchema> = S['response'] extends { 200: TSchema }
  ? ReplyBody<S> | void | Promise<ReplyBody<S>>
  : ReturnType<Handler<S>>

/** A handler typed from its schema, returning R (inferred from the handler). */
export type ResponderHandler<S extends RouteSchema, R = HandlerReturn<S>> = (
  this: ThisParameterType<Handler<S>>, request: Parameters<Handler<S>>[0], reply: Parameters<Handler<S>>[1],
) => R

export interface ResponderSpec<S extends RouteSchema, R = HandlerReturn<S>> {
  schema: S
  handler: ResponderHandler<S, R>
  /** One line for the OpenAPI document. */
  summary?: string
  description?: string
  /** Overrides the server's request deadline for this responder (milliseconds). */
  timeoutMs?: number
  /** Overrides the server's body limit for this responder (bytes). */
  bodyLimit?: number
}

// Extra fields: TypeScript checks excess properties only on a fresh object
// literal assigned straight to its type, and an async handler's return is
// never one (nor a literal built in a variable first), so `{ ok, secret }`
// passed as `{ ok }` and fastify's serializer silently dropped `secret`.
// What follows compares the handler's inferred answer with the response
// schemas' type (fastify's: any declared status code's body), field by field
// through objects and arrays, and names every field the schema lacks. Against
// a union (a schema's Type.Union) an object is exact if it has no extra field
// for one member it fits; an index signature (Type.Record) or unknown allows
// any field. Type.Object's `additionalProperties` option is not in its static
// type: an answer that relies on it is refused, and is cast to that type.

/** The members of T that B fits (all of T if none does: the plain type error then says why). */
type Fitting<B, T> = [T extends unknown ? (B extends T ? T : never) : never] extends [infer F]
  ? ([F] extends [never] ? T : F) : never
type ItemOf<T> = T extends readonly (infer I)[] ? I : never
type Path<P extends string, K extends string> = P extends '' ? K : `${P}.${K}`

/** The paths of B's fields that T does not declare (never when there are none). */
export type ExtraFields<B, T, P extends string = ''> =
  0 extends (1 & T) ? never // any
    // An answer (or a field of it) typed any (JSON.parse's): its fields are
    // not known, so none is named. Left to the branches below, any took them
    // all, and was refused as "returns ${string}".
    : 0 extends (1 & B) ? never
      : unknown extends T ? never
        : B extends readonly (infer I)[] ? ExtraFields<I, ItemOf<Fitting<B, T>>, `${P}[]`>
          : B extends (...args: never[]) => unknown ? never
            : B extends object ? ExtraFieldsOfObject<B, Fitting<B, T>, P>
              : never
// Distributed over T's members: exact against one of them is exact.
type ExtraFieldsOfObject<B, T, P extends string> = true extends (T extends unknown ? [ExtraFieldsOfMember<B, T, P>] extends [never] ? true : false : never)
  ? never
  : T extends unknown ? ExtraFieldsOfMember<B, T, P> : never
type ExtraFieldsOfMember<B, T, P extends string> = string extends keyof T ? never : {
  [K in keyof B & string]-?: K extends keyof T ? ExtraFields<B[K], T[K], Path<P, K>> : Path<P, K>
}[keyof B & string]

/** The answer in a handler's return type R: a Promise's value, without void (nothing) and never (a reply). */
type Answered<R> = R extends PromiseLike<infer A> ? Exclude<A, void> : Exclude<R, void>

/**
 * Nothing when the handler's answer has only fields its 200 schema declares;
 * otherwise a `handler` type no function fits, whose text names the fields.
 */
export type ExactAnswer<S extends RouteSchema, R> = S['response'] extends { 200: TSchema }
  ? [ExtraFields<Answered<R>, ReplyBody<S>>] extends [infer E extends string]
      ? [E] extends [never] ? unknown : { handler: `returns ${E}, which the response schema does not declare` }
      : unknown
  : unknown

const RESPONDER = Symbol('responder')

export interface Responder<S extends RouteSchema = RouteSchema> extends ResponderSpec<S> {
  readonly [RESPONDER]: true
}

/**
 * Declares a responder; its handler is typed from its schema. R, the
 * handler's return type, is inferred: with a 200 response schema it must be
 * an answer (or a reply, see HandlerReturn) with no field the schema lacks.
 */
export function responder<S extends RouteSchema, R extends HandlerReturn<S>> (spec: ResponderSpec<S, R> & ExactAnswer<S, R>): Responder<S> {
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
    // responder()'s types require both, but a JavaScript resource (or a cast)
    // may leave one out: without a schema, mount failed on "Cannot destructure
    // property 'body' of 'r.schema'"; without a handler, it mounted and every
    // request was a 500.
    if (typeof value.schema !== 'object' || value.schema === null) {
      throw new TypeError(`${resource.constructor.name}.${name} was made with responder() without a schema: give one (schema: {} when the route takes and declares nothing)`)
    }
    if (typeof value.handler !== 'function') {
      throw new TypeError(`${resource.constructor.name}.${name} was made with responder() without a handler function`)
    }
    found.set(m[1].toUpperCase() as Verb, value)
  }
  return found
}
