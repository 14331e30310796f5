// The floor: what Node's HTTP server alone costs per request, with no
// framework and no model. node:http reads the body and answers a fixed small
// JSON body. Nothing that serves requests over node:http can go faster on the
// same core, so the benchmark measures it to show how much of a goal's budget
// per request is left for everything else.
//   node --import tsx bench/floor-server.ts <port>
import { createServer } from 'node:http'

const body = '{"outputs":[[0]]}'
createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
}).listen(Number(process.argv[2]), '127.0.0.1')
