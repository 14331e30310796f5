// The OpenAPI document describes the infer routes' binary tensor data
// extension: binary requests and answers, and Inference-Header-Content-Length.
import t from 'tap'
import { oipApp } from '../fixtures/oip.ts'

t.test('/openapi.json describes binary infer requests and answers, with Inference-Header-Content-Length', async t => {
  const { app } = await oipApp(t, {})
  const doc = (await app.inject({ url: '/openapi.json' })).json()
  for (const path of ['/v2/models/{name}/infer', '/v2/models/{name}/versions/{version}/infer']) {
    const post = doc.paths[path]?.post
    const request = post?.requestBody?.content ?? {}
    t.ok(request['application/json']?.schema?.properties?.inputs, `${path}: the JSON request as before`)
    t.match(request['application/octet-stream']?.schema, { type: 'string', format: 'binary' }, `${path}: a binary request`)
    t.match(request['application/octet-stream']?.schema?.description, /Inference-Header-Content-Length/i, `${path}: what a binary request holds`)
    const header = (post?.parameters ?? []).find((p: { in: string, name: string }) => p.in === 'header' && p.name.toLowerCase() === 'inference-header-content-length')
    t.ok(header, `${path}: the request header is a parameter`)
    t.notOk(header?.required, `${path}: ... an optional one (JSON requests have none)`)
    const ok = post?.responses?.['200'] ?? {}
    t.ok(ok.content?.['application/json']?.schema?.properties?.outputs, `${path}: the JSON answer as before`)
    t.match(ok.content?.['application/octet-stream']?.schema, { type: 'string', format: 'binary' }, `${path}: a binary answer`)
    const answerHeader = Object.entries(ok.headers ?? {}).find(([name]) => name.toLowerCase() === 'inference-header-content-length')
    t.ok(answerHeader, `${path}: the answer's header`)
    t.ok(post?.responses?.['4XX']?.content?.['application/json'], `${path}: errors as before`)
  }
  // The documentation only: a JSON request is still validated against the schema.
  const res = await app.inject({ method: 'POST', url: '/v2/models/x/infer', payload: { inputs: 1 } })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'VALIDATION_FAILED')
})
