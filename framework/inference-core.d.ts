import type { Tensor, TensorInfo } from './tensor.ts'

export interface Runtime {
  load (msg: { key: string, bytes?: Uint8Array, path?: string, options?: Record<string, unknown> }): Promise<{ inputs: TensorInfo[], outputs: TensorInfo[] }>
  run (msg: { key: string, feeds: Record<string, Tensor>, outputs?: string[] }): Promise<{ outputs: Record<string, Tensor>, computeUs: number, warmUp: boolean }>
  unload (msg: { key: string }): Promise<void>
  has (key: string): boolean
}

export const TRANSFER_MIN_BYTES: number
export function sessionOptions (intraOpThreads?: number): Record<string, unknown>
export function createRuntime (sessionOptions?: Record<string, unknown>): Runtime
