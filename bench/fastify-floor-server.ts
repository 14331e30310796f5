// The fastify floor: what fastify alone costs per request on top of
// node:http, with no model. One route takes an OIP binary request (the
// octet-stream body read whole into a Buffer, as the framework reads it) and
// answers a fixed binary body of mlp's answer's size, with the header that
// says where its JSON part ends. Any server on fastify pays at least this,
// so the benchmark measures it beside the node:http floor, to show how much
// of mlp's OIP binary budget is left for the framework's own work.
//   node --import tsx bench/fastify-floor-server.ts <port>
import Fastify from 'fastify'

const app = Fastify({ bodyLimit: 16 * 1024 * 1024 })
app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))
const header = Buffer.from('{"model_name":"mlp","outputs":[{"name":"y","datatype":"FP32","shape":[1,16],"parameters":{"binary_data_size":64}}]}')
const answer = Buffer.concat([header, Buffer.alloc(64)])

app.post('/v2/models/:name/infer', async (_request, reply) => {
  reply.header('content-type', 'application/octet-stream')
  reply.header('inference-header-content-length', header.length)
  return answer
})

await app.listen({ port: Number(process.argv[2]), host: '127.0.0.1' })
process.stdout.write('listening\n')
