// EntityRecognizer: named entities (PER, ORG, LOC) with offsets into the text.
// Model: models/ner (an averaged structured perceptron trained on UNER
// English-EWT, the Broad Twitter Corpus and WNUT17 by `npm run train`; see
// models/ner/README.md). Input int64 features [batch, tokens, features],
// output float32 scores [batch, tokens, 7] over BIO tags; Viterbi decoding.
//
//   POST /ner {"text": "Barack Obama visited Paris."}
//   -> {"entities": [{"text": "Barack Obama", "label": "PER", "start": 0, "end": 12},
//                    {"text": "Paris", "label": "LOC", "start": 21, "end": 26}],
//       "tokens": [{"text": "Barack", "start": 0, "end": 6, "tag": "B-PER"}, ...]}
//
// Also {"tokens": [...]} (pre-tokenized; offsets then refer to the tokens
// joined by single spaces) and {"texts": [...]} -> {"results": [...]}.
import { Type } from '@sinclair/typebox'
import { responder } from '../framework/resource.ts'
import { entitiesFromBio } from '../nlp/tagger.ts'
import { TaggedTokenSchema, TaggerDescription, taggingInput, TaggingResource, type TaggingOptions } from '../nlp/service.ts'

const Recognized = Type.Object({
  entities: Type.Array(Type.Object({
    text: Type.String(),
    label: Type.String({ description: 'PER, ORG or LOC' }),
    start: Type.Integer(),
    end: Type.Integer(),
  })),
  tokens: Type.Array(TaggedTokenSchema),
})

export class EntityRecognizer extends TaggingResource {
  constructor (options: TaggingOptions) {
    super(options, 'ner')
  }

  onPost = responder({
    summary: 'Find the people, organizations and locations in a text, a token list, or several texts',
    schema: {
      // The limits of this instance, for the OpenAPI document.
      body: taggingInput(this.limits),
      response: { 200: Type.Union([Recognized, Type.Object({ results: Type.Array(Recognized) })]) },
    },
    handler: async (request, reply) => {
      const { form, texts, tagged } = await this.tag(request.body, request.deadline)
      const result = (i: number) => ({
        entities: entitiesFromBio(tagged[i], tagged[i].map(t => t.tag), texts[i]),
        tokens: tagged[i],
      })
      return form === 'texts' ? this.sendResults(reply, tagged.length, result) : result(0)
    },
  })

  onGet = responder({
    summary: 'Describe the NER model: version, labels, measured accuracy, limits',
    schema: { response: { 200: TaggerDescription } },
    handler: async () => this.description(),
  })
}
