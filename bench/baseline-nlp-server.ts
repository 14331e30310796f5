// The baseline for /ner and /pos: what a Node user writes by hand with this
// project's NLP library (nlp/: tokenizer, features, Viterbi, entity spans) and
// one onnxruntime-node session. One fastify handler, no batching, no queue,
// no deadlines: each request's text is tokenized, run alone and decoded, and
// answered in the resource's shape ({"entities", "tokens"} or {"tokens"}).
//   node --import tsx bench/baseline-nlp-server.ts <model dir (config.json, model.onnx)> <port>
import Fastify from 'fastify'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadScorer } from '../nlp/ort.ts'
import { entitiesFromBio, tagText, type TaggerConfig } from '../nlp/tagger.ts'

const [dir, port] = process.argv.slice(2)
const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as TaggerConfig
const run = await loadScorer(join(dir, 'model.onnx'), config.input, config.output)
const app = Fastify({ bodyLimit: 16 * 1024 * 1024 })

app.post('/infer', async (request) => {
  const { text } = request.body as { text: string }
  const tokens = await tagText(text, config, run)
  return config.task === 'ner'
    ? { entities: entitiesFromBio(tokens, tokens.map(t => t.tag), text), tokens }
    : { tokens }
})

await app.listen({ port: Number(port), host: '127.0.0.1' })
process.stdout.write('listening\n')
