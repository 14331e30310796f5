// Microbenchmark of fastJson (framework/fast-json.ts) against what the
// routes ran before it, fastify's JSON parser (JSON.parse and its
// prototype-poisoning checks, after the bytes' toString), on the bodies
// bench/run.ts sends: in one process, in alternating rounds, so that the
// shared host's drift falls on both alike. Prints ns per body, medians.
//
//   taskset -c 1 node --import tsx bench/fast-json.ts [rounds (9)]
import Fastify from 'fastify'
import { fastJson, NOT_READ } from '../framework/fast-json.ts'
import { benchModels } from './models.ts'
import { jsonBodies, oipBodies, sentenceBodies } from './workload.ts'

const rounds = Number(process.argv[2] ?? 9)
const model = (name: string) => benchModels().find(m => m.name === name)!
const sets: Record<string, string[]> = {
  'mlp (256 numbers)': jsonBodies(model('mlp')),
  'mlp through OIP JSON': oipBodies(model('mlp')),
  'tagger (32 integers)': jsonBodies(model('tagger')),
  tiny: jsonBodies(model('tiny')),
  '/ner sentences': sentenceBodies(),
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
// The parser the routes called before (create-app.ts, oip.ts), called as they call it.
const json = Fastify().getDefaultJsonParser('error', 'error')
const full = (b: Buffer) => {
  let out: unknown
  json(undefined as never, b.toString('utf8'), (err, parsed) => { if (err) throw err; out = parsed })
  return out
}
console.log('| Body | bytes | fastify parser ns | fastJson ns | ratio |\n| --- | ---: | ---: | ---: | ---: |')
for (const [name, texts] of Object.entries(sets)) {
  const bodies = texts.map(t => Buffer.from(t))
  for (const b of bodies) {
    if (JSON.stringify(fastJson(b)) !== JSON.stringify(JSON.parse(b.toString()))) throw new Error(`${name}: fastJson differs (or left it: ${String(fastJson(b) === NOT_READ)})`)
  }
  let sink = 0
  const time = (parse: (b: Buffer) => unknown) => {
    const n = 20_000
    const t = process.hrtime.bigint()
    for (let i = 0; i < n; i++) if (parse(bodies[i % bodies.length]) !== undefined) sink++
    return Number(process.hrtime.bigint() - t) / n
  }
  const before: number[] = []
  const after: number[] = []
  for (let r = 0; r < rounds; r++) {
    if (r % 2) { after.push(time(fastJson)); before.push(time(full)) } else { before.push(time(full)); after.push(time(fastJson)) }
  }
  if (sink === 0) throw new Error('nothing parsed')
  console.log(`| ${name} | ${texts[0].length} | ${median(before).toFixed(0)} | ${median(after).toFixed(0)} | ${(median(after) / median(before)).toFixed(2)} |`)
}
