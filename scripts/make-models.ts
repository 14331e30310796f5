// Generates the small example model(s) committed under models/. Reproducible:
// the same bytes on every run (`npm run make-models`).
import { writeFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildModel } from '../framework/onnx-builder.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * scaler: standardizes the four Iris measurements (sepal length, sepal width,
 * petal length, petal width, in cm) with the dataset's means and standard
 * deviations: y = (x - mean) / std. float32 [N, 4] -> float32 [N, 4].
 */
export function scalerModel (): Uint8Array {
  const mean = new Float32Array([5.8433, 3.0573, 3.758, 1.1993])
  const invStd = new Float32Array([0.8253, 0.4344, 1.7594, 0.7596].map(s => 1 / s))
  return buildModel({
    name: 'scaler',
    docString: 'Standardizes Iris measurements: (x - mean) / std',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', 4] }],
    initializers: [
      { name: 'mean', type: 'float32', dims: [4], data: mean },
      { name: 'inv_std', type: 'float32', dims: [4], data: invStd },
    ],
    nodes: [
      { op: 'Sub', inputs: ['x', 'mean'], outputs: ['centered'] },
      { op: 'Mul', inputs: ['centered', 'inv_std'], outputs: ['y'] },
    ],
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = join(root, 'models', 'scaler.onnx')
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, scalerModel())
  console.log(`wrote ${out}`)
}
