// Runs a proxy in its own process so a test can measure the proxy's memory alone (tests only).
import type { Config } from '@clauderon/config';
import { loadOrCreateCa } from './ca.js';
import { loadSecretSource } from './secrets.js';
import { startProxy } from './server.js';
import { createTokenRegistry } from './tokens.js';

interface Args {
  home: string;
  config: Config['proxy'];
  tokensFile: string;
  env: Record<string, string>;
  auditPath: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const proxy = await startProxy({
  config: args.config,
  home: args.home,
  ca: await loadOrCreateCa(args.home),
  secrets: await loadSecretSource(args.home, args.env),
  tokens: createTokenRegistry(args.tokensFile),
  listen: { host: '127.0.0.1', port: 0 },
  log: () => {},
  auditPath: args.auditPath,
});
process.on('message', (m) => {
  if (m === 'rss') process.send?.({ rss: process.memoryUsage.rss() });
  if (m === 'stop') void proxy.stop().then(() => process.disconnect());
});
process.send?.({ port: proxy.port });
