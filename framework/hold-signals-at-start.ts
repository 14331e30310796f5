// Holds the server's signals as it is evaluated (signal-hold.ts): imported
// first by server.ts, and passed to node with --import by scripts/start.sh,
// which evaluates it before server.js's module graph is even loaded. Nothing
// else here: what this imports is loaded before the hold is in place.
import { holdSignals } from './signal-hold.ts'

holdSignals()
