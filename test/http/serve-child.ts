// A server process for e2e tests that need a real child (zero-copy probe, signals): configured
// from the environment exactly like `pixtable serve`, it prints one line `LISTENING <url>` when ready.
import { loadConfig } from '../../src/config/env.js';
import { startServer } from '../../src/http/server.js';

const { config, warnings } = loadConfig(process.env);
for (const w of warnings) console.error(w);
const s = await startServer(config, { logger: { level: config.logLevel } });
process.stdout.write(`LISTENING ${s.url}\n`);
