// A model's config.json (`name/config.json`, or `name.json` beside a lone
// `name.onnx`): the keys the server reads, checked the same way whether a
// resource loads the model (models.ts) or the repository serves it
// (repository.ts). Other keys are kept for resources (the taggers'
// `transitions`, say), except one so close to a server key that it is surely
// a typo of it: a misspelled `maxBatchsize` was ignored without a word.
import { batchOptionsFromConfig } from './batcher.ts'

export type VersionPolicy = { latest: number } | 'all' | { specific: string[] }

export interface RepositoryConfig {
  labels?: unknown
  /** Most items along the first dimension of every input (0: not set, no limit). */
  maxBatchSize: number
  versionPolicy: VersionPolicy
  allowNonFinite: boolean
  /** The whole config.json, for resources and metadata. */
  raw: Record<string, unknown>
}

/** The keys the server reads: the repository's, and batcher.ts's batching options. */
export const CONFIG_KEYS = ['labels', 'maxBatchSize', 'maxQueueItems', 'maxQueueDelayMs', 'padValue', 'maxBatchTokens', 'versionPolicy', 'allowNonFinite']

/** A key as typos vary it: case, '_' and '-' left out (Triton's max_batch_size is maxBatchSize). */
const folded = (key: string) => key.toLowerCase().replace(/[_-]/g, '')

/** Levenshtein distance (the keys are short). */
function distance (a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    row = next
  }
  return row[b.length]
}

/**
 * The server key `key` is a near miss of, if any: the same but for case, '_'
 * and '-', or one edit away (two for keys of 8 letters or more: a resource's
 * `levels` is no typo of `labels`, but `maxQueueDelay` is of `maxQueueDelayMs`).
 */
export function nearMiss (key: string): string | undefined {
  if (CONFIG_KEYS.includes(key)) return undefined
  return CONFIG_KEYS.find(k => folded(k) === folded(key)) ??
    CONFIG_KEYS.find(k => distance(folded(k), folded(key)) <= (k.length >= 8 ? 2 : 1))
}

/** A value as a message quotes it, at most 60 characters. */
function shortJson (v: unknown): string {
  const text = JSON.stringify(v) ?? String(v)
  return text.length > 60 ? `${text.slice(0, 60)}...` : text
}

/** Parses config.json into the server's settings; throws with the reason, `where` (the file) first. */
export function parseConfig (raw: unknown, where: string): RepositoryConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where} must hold a JSON object`)
  const c = raw as Record<string, unknown>
  for (const key of Object.keys(c)) {
    const meant = nearMiss(key)
    if (meant) {
      throw new Error(`${where}: unknown key '${key}' (did you mean '${meant}'?): the keys the server reads are ${CONFIG_KEYS.join(', ')}; other keys are left to resources, but not one this close to a server key`)
    }
  }
  // The batching options (maxBatchSize, maxQueueItems, ...): checked here, so
  // a bad one is reported with its file (the pool applies them at load).
  try {
    batchOptionsFromConfig(c)
  } catch (err) {
    throw new Error(`invalid batching options in ${where}: ${(err as Error).message}`)
  }
  // Served as the model's metadata (OIP's parameters.labels), and read by resources.
  if (c.labels !== undefined && !(Array.isArray(c.labels) && c.labels.every(l => typeof l === 'string'))) {
    throw new Error(`${where}: labels must be an array of strings, got ${shortJson(c.labels)}`)
  }
  if (c.allowNonFinite !== undefined && typeof c.allowNonFinite !== 'boolean') throw new Error(`${where}: allowNonFinite must be true or false`)
  let versionPolicy: VersionPolicy = { latest: 1 }
  const p = c.versionPolicy
  if (p === 'all') versionPolicy = 'all'
  else if (p !== undefined) {
    const obj = (typeof p === 'object' && p !== null ? p : {}) as Record<string, unknown>
    if (Number.isInteger(obj.latest) && (obj.latest as number) >= 1) versionPolicy = { latest: obj.latest as number }
    else if (Array.isArray(obj.specific) && obj.specific.length > 0 && obj.specific.every(v => Number.isInteger(v) && v >= 0)) {
      versionPolicy = { specific: obj.specific.map(String) }
    } else {
      throw new Error(`${where}: versionPolicy must be "all", {"latest": n >= 1} or {"specific": [versions]}, got ${JSON.stringify(p)}`)
    }
  }
  return {
    labels: c.labels,
    maxBatchSize: (c.maxBatchSize as number | undefined) ?? 0,
    versionPolicy,
    allowNonFinite: c.allowNonFinite === true,
    raw: c,
  }
}
