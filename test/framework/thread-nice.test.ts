// Inference threads run nicer than the process when asked (Linux: niceness is
// per thread), so that the main thread runs first on a shared core; at 0 they
// keep the process's priority.
import t from 'tap'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { InferencePool } from '../../framework/pool.ts'
import { affineModel } from '../fixtures/batching.ts'

/** Niceness of each thread of this process (field 19 of /proc/self/task/<tid>/stat), the main thread first. */
function niceness (): number[] {
  return readdirSync('/proc/self/task').map(tid => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
  })
}

t.test('threadNice lowers the inference threads\' priority, and only theirs', { skip: !existsSync('/proc/thread-self') && 'needs Linux /proc' }, async t => {
  const before = niceness()
  const pool = new InferencePool({ threads: 2, threadNice: 7 })
  t.teardown(() => pool.close())
  // Loading a model is a round trip to every thread: each has set its priority by then.
  await pool.load('affine', affineModel())
  const after = niceness()
  // Both inference threads, and any thread ONNX Runtime starts from them.
  t.ok(after.filter(n => n === 7).length - before.filter(n => n === 7).length >= 2, 'the two threads at +7')
  t.equal(after[0], 0, 'the main thread unchanged')
})

t.test('threadNice 0 leaves the threads at the process\'s priority', { skip: !existsSync('/proc/thread-self') && 'needs Linux /proc' }, async t => {
  const before = niceness().filter(n => n !== 0).length
  const pool = new InferencePool({ threads: 1, threadNice: 0 })
  t.teardown(() => pool.close())
  await pool.load('affine', affineModel())
  t.equal(niceness().filter(n => n !== 0).length, before, 'no new thread above 0')
})
