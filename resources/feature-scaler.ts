// FeatureScaler: standardizes Iris flower measurements before classification.
// Model: models/scaler.onnx (scripts/make-models.ts), float32 x [batch, 4] ->
// float32 y [batch, 4], y = (x - mean) / std with the Iris dataset statistics.
//
//   POST /scale {"rows": [[5.1, 3.5, 1.4, 0.2]]}
//   -> {"rows": [[-0.9007, 1.0190, -1.3402, -1.3154]]}
//
// The framework's example resource: small enough to read in one go, and
// it exercises every path (validation, limits, off-thread inference, metadata).
import { Type } from '@sinclair/typebox'
import { Resource, responder, type ResourceContext } from '../framework/resource.ts'
import { badRequest } from '../framework/errors.ts'
import type { Model } from '../framework/models.ts'
import { rowsFromTensor, tensorFromRows, type ModelContract } from '../framework/tensor.ts'
import type { AbortSignalLike } from '../framework/deadline.ts'

const FEATURES = 4
// What the model must take and give: checked when it loads, and it types
// model.run's outputs (y.data is a Float32Array).
const CONTRACT = {
  inputs: { x: { type: 'float32', shape: [-1, FEATURES] } },
  outputs: { y: { type: 'float32', shape: [-1, FEATURES] } },
} satisfies ModelContract
const Row = Type.Array(Type.Number(), { minItems: FEATURES, maxItems: FEATURES, description: 'sepal length, sepal width, petal length, petal width (cm)' })

export interface FeatureScalerOptions {
  /** Model name in the models directory. */
  model: string
  /** Most rows accepted in one request. */
  maxRows?: number
}

export class FeatureScaler extends Resource {
  private model!: Model<typeof CONTRACT>
  private readonly maxRows: number

  constructor (private readonly options: FeatureScalerOptions) {
    super()
    this.maxRows = options.maxRows ?? 1024
  }

  async load ({ models }: ResourceContext) {
    this.model = await models.load(this.options.model, CONTRACT)
  }

  async warmup () {
    await this.scale([[0, 0, 0, 0]])
  }

  private async scale (rows: number[][], signal?: AbortSignalLike): Promise<number[][]> {
    // The schema has checked every row's length: only a value float32 cannot hold is left.
    const x = tensorFromRows(rows, FEATURES)
    if (!x) throw badRequest('every value must be within float32\'s range (about ±3.4e38)')
    const { y } = await this.model.run({ x }, { signal })
    const out = y.data
    // Scaling can push a value near the limit past it.
    if (!out.every(Number.isFinite)) throw badRequest('a value is so large that its scaled value overflows float32')
    return rowsFromTensor(out, rows.length)
  }

  onPost = responder({
    summary: 'Standardize rows of Iris measurements',
    schema: {
      body: Type.Object({ rows: Type.Array(Row, { minItems: 1 }) }),
      response: { 200: Type.Object({ rows: Type.Array(Type.Array(Type.Number({ format: 'float' }))) }) },
    },
    handler: async (request) => {
      const { rows } = request.body
      if (rows.length > this.maxRows) throw badRequest(`body.rows has ${rows.length} rows; at most ${this.maxRows} are accepted`)
      return { rows: await this.scale(rows, request.deadline) }
    },
  })

  onGet = responder({
    summary: 'Describe the model',
    schema: {
      response: {
        200: Type.Object({
          model: Type.String(),
          inputs: Type.Array(Type.Object({ name: Type.String(), type: Type.String(), shape: Type.Array(Type.Union([Type.Integer(), Type.String()])) })),
          outputs: Type.Array(Type.Object({ name: Type.String(), type: Type.String(), shape: Type.Array(Type.Union([Type.Integer(), Type.String()])) })),
          maxRows: Type.Integer(),
        }),
      },
    },
    handler: async () => ({
      model: this.model.name,
      inputs: this.model.inputs,
      outputs: this.model.outputs,
      maxRows: this.maxRows,
    }),
  })
}
