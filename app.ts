// The URL map: every resource and the route it answers on, one line each
// (falcon's add_route). Builds the app without listening; server.ts owns
// host, port, workers and signals.
import { createApp, type App, type AppOptions } from './framework/create-app.ts'
import { openInferenceProtocol } from './framework/oip.ts'
import { EntityRecognizer } from './resources/ner.ts'
import { FeatureScaler } from './resources/feature-scaler.ts'
import { PosTagger } from './resources/pos.ts'

export type { App, AppOptions }

export async function buildApp (options: AppOptions): Promise<App> {
  const app = await createApp(options)

  app.mount('/ner', new EntityRecognizer({ model: 'ner' }))
  app.mount('/pos', new PosTagger({ model: 'pos' }))
  app.mount('/scale', new FeatureScaler({ model: 'scaler' }))
  // Every model in the models directory, over the Open Inference Protocol (/v2/...).
  await app.register(openInferenceProtocol, { repositoryApi: options.repositoryApi, stopOnModelFailure: options.stopOnModelFailure })

  return app
}
