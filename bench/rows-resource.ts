// A generic benchmark resource: POST {"inputs": [[...example...], ...]} ->
// {"outputs": [[...flattened output row...], ...]} through one model, with the
// request's deadline and disconnect signal. What a resource author writes for
// a numeric model, nothing more.
import { Type } from '@sinclair/typebox'
import { Resource, responder, type ResourceContext } from '../framework/resource.ts'
import type { Model } from '../framework/models.ts'
import { badRequest } from '../framework/errors.ts'
import { rowsFromTensor, tensorFromRows } from '../framework/tensor.ts'
import type { AbortSignalLike } from '../framework/deadline.ts'

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

  private async infer (rows: number[][], signal?: AbortSignalLike): Promise<number[][]> {
    const { input, output, type, width } = this.options
    const x = tensorFromRows(rows, width, type)
    if (!x) throw badRequest(`every row of body.inputs must have ${width} ${type === 'int64' ? 'integers' : 'numbers'}`)
    const result = await this.model.run({ [input]: x }, { signal })
    return rowsFromTensor(result[output].data as Float32Array, rows.length)
  }

  onPost = responder({
    schema: {
      body: Type.Object({ inputs: Type.Array(Type.Array(Type.Number()), { minItems: 1, maxItems: 64 }) }),
      // format 'float': the model's float32 outputs, written in float32's shortest digits.
      response: { 200: Type.Object({ outputs: Type.Array(Type.Array(Type.Number({ format: 'float' }))) }) },
    },
    handler: async (request) => {
      const { inputs } = request.body
      return { outputs: await this.infer(inputs, request.deadline) }
    },
  })
}
