// The app the benchmark serves: the real app (app.ts: its resources and OIP)
// plus /bench/{tiny,mlp,tagger} through the generic RowsModel resource.
// Served with `node --import tsx server.ts --app bench/app.ts --models-dir <dir>`.
import { buildApp as buildRealApp, type App, type AppOptions } from '../app.ts'
import { RowsModel } from './rows-resource.ts'
import { benchModels } from './models.ts'

export async function buildApp (options: AppOptions): Promise<App> {
  const app = await buildRealApp(options)
  for (const m of benchModels()) {
    app.mount(`/bench/${m.name}`, new RowsModel({ model: m.name, input: m.input, output: m.output, type: m.type, width: m.width }))
  }
  return app
}
