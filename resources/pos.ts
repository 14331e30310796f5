// PosTagger: part-of-speech tagging with the 17 Universal POS tags.
// Model: models/pos (an averaged structured perceptron trained on UD English
// EWT by `npm run train`; see models/pos/README.md). Input int64 features
// [batch, tokens, features], output float32 scores [batch, tokens, 17];
// Viterbi over the scores and the tag transitions in config.json.
//
//   POST /pos {"text": "I love Paris."}
//   -> {"tokens": [{"text": "I", "start": 0, "end": 1, "tag": "PRON"},
//                  {"text": "love", "start": 2, "end": 6, "tag": "VERB"},
//                  {"text": "Paris", "start": 7, "end": 12, "tag": "PROPN"},
//                  {"text": ".", "start": 12, "end": 13, "tag": "PUNCT"}]}
//
// Also {"tokens": [...]} (pre-tokenized) and {"texts": [...]} -> {"results": [...]}.
import { Type } from '@sinclair/typebox'
import { responder } from '../framework/resource.ts'
import { TaggedTokenSchema, TaggerDescription, taggingInput, TaggingResource, type TaggingOptions } from '../nlp/service.ts'

const Tagged = Type.Object({ tokens: Type.Array(TaggedTokenSchema) })

export class PosTagger extends TaggingResource {
  constructor (options: TaggingOptions) {
    super(options, 'pos')
  }

  onPost = responder({
    summary: 'Tag the parts of speech of a text, a token list, or several texts',
    schema: {
      // The limits of this instance, for the OpenAPI document.
      body: taggingInput(this.limits),
      response: { 200: Type.Union([Tagged, Type.Object({ results: Type.Array(Tagged) })]) },
    },
    handler: async (request, reply) => {
      const { form, tagged } = await this.tag(request.body, request.deadline)
      const result = (i: number) => ({ tokens: tagged[i] })
      return form === 'texts' ? this.sendResults(reply, tagged.length, result) : result(0)
    },
  })

  onGet = responder({
    summary: 'Describe the POS model: version, labels, measured accuracy, limits',
    schema: { response: { 200: TaggerDescription } },
    handler: async () => this.description(),
  })
}
