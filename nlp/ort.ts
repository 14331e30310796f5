// The one place in nlp/ that calls ONNX Runtime, used by `npm run eval` and
// the tests until the framework's model module serves the taggers; swapping it
// means providing another `RunScores`.
import * as ort from 'onnxruntime-node'
import type { RunScores } from './tagger.ts'

/** Loads an ONNX tagger and returns a function computing its scores. */
export async function loadScorer (path: string, input = 'features', output = 'scores'): Promise<RunScores> {
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 })
  return async features => {
    const result = await session.run({ [input]: new ort.Tensor('int64', features.data, features.dims) })
    const scores = result[output]
    return { data: scores.data as Float32Array, dims: scores.dims }
  }
}
