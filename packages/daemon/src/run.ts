import { chmodSync, rmSync } from 'node:fs';
import { type ClauderonPaths, type Config, loadConfig } from '@clauderon/config';
import { VERSION } from '@clauderon/protocol';
import type { Logger } from 'pino';
import { buildApp, InflightTracker } from './app.js';
import type { SessionBackend } from './backend.js';
import { disabledBackend } from './disabled-backend.js';
import { createLogger } from './logger.js';
import { prepareSocketPath } from './socket.js';

export interface DaemonOptions {
  env: NodeJS.ProcessEnv;
  /** Command-line flags as dotted config keys (e.g. features.kubernetes_backend). */
  flags?: Record<string, unknown>;
  /** Resolves to stop the daemon (tests); SIGTERM and SIGINT also stop it. */
  stop?: Promise<unknown>;
  /** Called once the socket accepts connections. */
  onReady?: (info: { socket: string }) => void;
  handleSignals?: boolean;
}

export interface BackendContext {
  config: Config;
  paths: ClauderonPaths;
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

async function makeBackend(ctx: BackendContext): Promise<SessionBackend> {
  if (!ctx.config.features.kubernetes_backend) return disabledBackend();
  // Loaded only when enabled, so a disabled daemon never imports client-node or reads a kubeconfig.
  const { createKubernetesBackend } = await import('./kubernetes/backend.js');
  return createKubernetesBackend(ctx);
}

/** Runs the daemon until stopped; resolves to the process exit code. */
export async function runDaemon(opts: DaemonOptions): Promise<number> {
  // Stop requests are listened for before anything is announced, so a SIGTERM right after the ready line
  // always gets the ordered shutdown rather than the default "die at once".
  const stopSignals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];
  const stopped = new Promise<string>((resolve) => {
    if (opts.handleSignals !== false) for (const s of stopSignals) process.once(s, () => resolve(s));
    opts.stop?.then(() => resolve('stop'));
  });
  const { config, paths } = loadConfig({ env: opts.env, ...(opts.flags ? { flags: opts.flags } : {}) });
  await prepareSocketPath(paths.socket);
  const logger = createLogger(paths.logs, config.daemon.log_level, opts.env);
  const inflight = new InflightTracker();
  const backend = await makeBackend({ config, paths, logger, env: opts.env });
  const app = buildApp({ backend, logger, inflight, kubernetesBackend: config.features.kubernetes_backend });

  // The directory is already 0700; the umask also keeps the socket 0600 from the moment it exists.
  const oldMask = process.umask(0o177);
  try {
    await app.listen({ path: paths.socket });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(paths.socket, 0o600);

  const lifetime = new AbortController();
  logger.info(
    { socket: paths.socket, version: VERSION, kubernetesBackend: config.features.kubernetes_backend },
    'daemon started',
  );
  process.stderr.write(
    `clauderon daemon ${VERSION} listening on ${paths.socket} (kubernetes backend: ${config.features.kubernetes_backend ? 'enabled' : 'disabled'})\n`,
  );
  backend.start(lifetime.signal).catch((err) => logger.error({ err }, 'startup reconcile failed'));
  opts.onReady?.({ socket: paths.socket });

  const why = await stopped;
  logger.info({ why }, 'shutting down');

  // Ordered shutdown: stop taking work, let in-flight work finish (or abort it, which records its state
  // for recovery), close terminals and the listener, stop the backend, remove the socket.
  const aborted = await inflight.drain(config.daemon.shutdown_timeout);
  if (aborted.length > 0) logger.warn({ aborted }, 'aborted in-flight operations at shutdown');
  lifetime.abort();
  await app.close();
  await backend.stop();
  rmSync(paths.socket, { force: true });
  logger.info('daemon stopped');
  await new Promise<void>((r) => logger.flush(() => r()));
  for (const s of stopSignals) process.removeAllListeners(s);
  return 0;
}
