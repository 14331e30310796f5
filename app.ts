// The URL map: every resource and the route it answers on, one line each
// (falcon's add_route). Builds the app without listening; server.ts owns
// host, port, workers and signals.
import { createApp, type App, type AppOptions } from './framework/create-app.ts'
import { FeatureScaler } from './resources/feature-scaler.ts'

export type { App, AppOptions }

export async function buildApp (options: AppOptions): Promise<App> {
  const app = await createApp(options)

  app.mount('/scale', new FeatureScaler({ model: 'scaler' }))

  return app
}
