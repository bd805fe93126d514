import { join } from 'node:path';
import { CA_FILE_PATH, KubeClient, loadKubeConfig } from '@clauderon/kube';
import { ClauderonError } from '@clauderon/protocol';
import {
  caBundlePem,
  createTokenRegistry,
  loadOrCreateCa,
  loadSecretSource,
  type ProxyServer,
  placeholderEnv,
  podProxyEnv,
  startProxy,
} from '@clauderon/proxy';
import type { SessionBackend } from '../backend.js';
import type { BackendContext } from '../run.js';
import { SessionStore } from '../store.js';
import { KubernetesSessions, type SessionProxy } from './manager.js';

const PROXY_URL_KEYS = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'];

/** Starts the proxy the session pods go through, and returns how sessions get their credentials. */
async function startSessionProxy(ctx: BackendContext): Promise<{ proxy: SessionProxy; server: ProxyServer }> {
  const { config, paths, logger, env } = ctx;
  const ca = await loadOrCreateCa(paths.home);
  const secrets = await loadSecretSource(paths.home, env);
  const tokens = createTokenRegistry(join(paths.proxy, 'tokens.json'));
  const [host, port] = [
    config.proxy.listen.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''),
    Number(/:(\d+)$/.exec(config.proxy.listen)?.[1]),
  ];
  let server: ProxyServer;
  try {
    server = await startProxy({
      config: config.proxy,
      home: paths.home,
      ca,
      secrets,
      tokens,
      listen: { host, port },
      log: (obj, msg) => logger.child({ component: 'proxy' }).info(obj, msg),
      auditPath: join(paths.logs, 'proxy-audit.jsonl'),
    });
  } catch (e) {
    throw new ClauderonError(
      'PROXY',
      `the credential proxy cannot listen on ${config.proxy.listen}: ${(e as Error).message}`,
      {
        hint: 'set [proxy] listen to a free host:port (or CLAUDERON_PROXY_LISTEN), or stop what uses it',
      },
    );
  }
  const podUrl = config.proxy.pod_url || server.url;
  const bundle = caBundlePem(ca);
  const placeholders = placeholderEnv({ config: config.proxy, secrets });
  const proxy: SessionProxy = {
    async issue(session) {
      const token = tokens.issue(session);
      const all = podProxyEnv({
        proxyUrl: podUrl,
        session,
        token,
        caPath: CA_FILE_PATH,
        noProxy: config.proxy.no_proxy,
      });
      const secretEnv: Record<string, string> = {};
      const plainEnv: Record<string, string> = { ...placeholders };
      for (const [k, v] of Object.entries(all)) {
        if (PROXY_URL_KEYS.includes(k) || v.includes(token)) secretEnv[k] = v;
        else plainEnv[k] = v;
      }
      return { secretEnv, plainEnv, caBundlePem: bundle };
    },
    async revoke(session) {
      tokens.revoke(session);
    },
    caPem: ca.certPem,
    localUrl: server.url,
    podUrl,
  };
  logger.info({ listen: server.url, podUrl }, 'credential proxy listening');
  return { proxy, server };
}

/** The Kubernetes session backend. The kubeconfig is read on first use, so a daemon with a broken one starts and says why on the first command. */
export async function createKubernetesBackend(ctx: BackendContext): Promise<SessionBackend> {
  const { config, env } = ctx;
  let client: KubeClient | undefined;
  const kube = () => {
    client ??= new KubeClient(loadKubeConfig(config.kubernetes, { env }));
    return client;
  };
  const started = config.proxy.enabled ? await startSessionProxy(ctx) : undefined;
  const sessions = new KubernetesSessions({
    config,
    paths: ctx.paths,
    logger: ctx.logger,
    store: new SessionStore(ctx.paths.sessions),
    kube,
    ...(started ? { proxy: started.proxy } : {}),
  });
  const stop = sessions.stop.bind(sessions);
  sessions.stop = async () => {
    await stop();
    await started?.server.stop();
  };
  return sessions;
}
