#!/usr/bin/env node
// Passes TAP through unchanged and ends with "N passed, N failed", counting
// assertions (test points with no subtests of their own) at every depth.
// A test point is a parent when the line before it closes a deeper subtest
// (its plan "1..N" or last line is indented further).
import { createInterface } from 'node:readline'

const TEST_POINT = /^(\s*)(not ok|ok)\b(.*)$/
let passed = 0
let failed = 0
let skipped = 0
let previousIndent = -1
let inYaml = false
// Leaf failures seen below each indent since its last test point: a failing
// parent with none (a test file that crashed after passing assertions) is
// a failure of its own.
const failuresBelow = new Map()

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  process.stdout.write(line + '\n')
  const trimmed = line.trim()
  if (inYaml) {
    if (trimmed === '...') inYaml = false
    continue
  }
  if (trimmed === '---') { inYaml = true; continue }
  if (trimmed === '' || trimmed.startsWith('#')) continue
  const indent = line.length - line.trimStart().length
  const m = TEST_POINT.exec(line)
  if (m) {
    const isParent = previousIndent > indent
    let failure = false
    if (!isParent) {
      if (/#\s*(SKIP|TODO)\b/i.test(m[3])) skipped++
      else if (m[2] === 'ok') passed++
      else failure = true
    } else if (m[2] === 'not ok' && !(failuresBelow.get(indent) > 0)) {
      failure = true
    }
    failuresBelow.set(indent, 0)
    if (failure) {
      failed++
      for (const [level, n] of failuresBelow) if (level < indent) failuresBelow.set(level, n + 1)
    }
  }
  previousIndent = indent
}
process.stdout.write(`${passed} passed, ${failed} failed${skipped ? ` (${skipped} skipped or todo)` : ''}\n`)
