// A generic benchmark resource: POST {"inputs": [[...example...], ...]} ->
// {"outputs": [[...flattened output row...], ...]} through one model, with the
// request's deadline and disconnect signal. What a resource author writes for
// a numeric model, nothing more.
import { Type } from '@sinclair/typebox'
import { Resource, responder, type ResourceContext } from '../framework/resource.ts'
import type { Model } from '../framework/models.ts'

export interface RowsOptions { model: string, input: string, output: string, type: 'float32' | 'int64', width: number }

export class RowsModel extends Resource {
  private model!: Model
  constructor (private readonly options: RowsOptions) { super() }

  async load ({ models }: ResourceContext) {
    this.model = await models.load(this.options.model)
  }

  async warmup () {
    await this.infer([new Array(this.options.width).fill(0)])
  }

  private async infer (rows: number[][], signal?: AbortSignal): Promise<number[][]> {
    const { input, output, type, width } = this.options
    const flat = rows.flat()
    const data = type === 'int64' ? BigInt64Array.from(flat, v => BigInt(v)) : Float32Array.from(flat)
    const result = await this.model.run({ [input]: { type, data, dims: [rows.length, width] } }, { signal })
    const out = result[output]
    const per = out.data.length / rows.length
    const values = out.data as Float32Array
    return rows.map((_, i) => Array.from(values.subarray(i * per, (i + 1) * per)))
  }

  onPost = responder({
    schema: {
      body: Type.Object({ inputs: Type.Array(Type.Array(Type.Number()), { minItems: 1, maxItems: 64 }) }),
      response: { 200: Type.Object({ outputs: Type.Array(Type.Array(Type.Number())) }) },
    },
    handler: async (request) => {
      const { inputs } = request.body
      if (inputs.some(r => r.length !== this.options.width)) throw new Error('bad width')
      return { outputs: await this.infer(inputs, request.abortSignal) }
    },
  })
}
