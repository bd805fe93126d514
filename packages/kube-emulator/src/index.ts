import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join, resolve } from 'node:path';
import type { KObject, Kubelet } from './contract.js';
import { type DenyRule, Faults } from './faults.js';
import { startKubelet } from './kubelet/index.js';
import { ApiServer } from './server.js';
import { now, ObjectStore } from './store.js';
import { loadOrCreateTls, writeAtomic } from './tls.js';

export type { KObject, Kubelet, Resource, Store, StoreEvent } from './contract.js';
export type { DenyRule, FailNextSpec, FaultAction, FaultMatch, RequestRecord, Verb } from './faults.js';
export { Faults } from './faults.js';
export { ObjectStore } from './store.js';

export interface StartOptions {
  /** Directory for the CA, token, port and objects; reused on restart. */
  stateDir: string;
  /** TCP port (default: the port used last time with this stateDir, else a free one). */
  port?: number;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Bearer token (default: the stored one, else random). */
  token?: string;
  /** Where to write the kubeconfig (default `${stateDir}/kubeconfig`). */
  kubeconfigPath?: string;
  /** Images matching this fail to pull (passed to the kubelet). */
  failImagePattern?: RegExp;
  /** Multiplies simulated kubelet delays; 0 makes them immediate. */
  timeScale?: number;
  /** Permissions SelfSubjectAccessReview denies (and requests get 403 for). */
  deny?: DenyRule[];
  /** Interval of BOOKMARK events on watches that allow them (default 60 000 ms). */
  bookmarkIntervalMs?: number;
  /** Number of changes kept for watches; older resourceVersions get 410 Expired (default 1000). */
  watchHistorySize?: number;
  log?: (m: string) => void;
}

/** A running emulator. */
export interface Emulator {
  /** `https://127.0.0.1:PORT` */
  url: string;
  kubeconfigPath: string;
  token: string;
  /** PEM of the CA that signed the server certificate. */
  caPem: string;
  store: ObjectStore;
  faults: Faults;
  stop(): Promise<void>;
}

interface SavedState {
  token?: string;
  port?: number;
}

function readState(dir: string): SavedState {
  const p = join(dir, 'state.json');
  if (!existsSync(p)) return {};
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as SavedState;
  } catch {
    return {};
  }
}

function bootstrap(store: ObjectStore, nodeName: string): void {
  for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
    if (!store.get('namespaces', undefined, ns))
      store.create('namespaces', undefined, { metadata: { name: ns } });
    store.ensureDefaultServiceAccount(ns);
  }
  if (!store.get('storageclasses', undefined, 'standard')) {
    store.create('storageclasses', undefined, {
      metadata: { name: 'standard', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'rancher.io/local-path',
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'WaitForFirstConsumer',
      allowVolumeExpansion: false,
    });
  }
  const ts = now();
  const node: KObject = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: nodeName,
      labels: {
        'kubernetes.io/hostname': nodeName,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
        'node-role.kubernetes.io/control-plane': '',
      },
    },
    spec: {},
    status: {
      conditions: [
        {
          type: 'MemoryPressure',
          status: 'False',
          reason: 'KubeletHasSufficientMemory',
          message: 'kubelet has sufficient memory available',
          lastHeartbeatTime: ts,
          lastTransitionTime: ts,
        },
        {
          type: 'DiskPressure',
          status: 'False',
          reason: 'KubeletHasNoDiskPressure',
          message: 'kubelet has no disk pressure',
          lastHeartbeatTime: ts,
          lastTransitionTime: ts,
        },
        {
          type: 'PIDPressure',
          status: 'False',
          reason: 'KubeletHasSufficientPID',
          message: 'kubelet has sufficient PID available',
          lastHeartbeatTime: ts,
          lastTransitionTime: ts,
        },
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
          lastHeartbeatTime: ts,
          lastTransitionTime: ts,
        },
      ],
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: nodeName },
      ],
      capacity: { cpu: '8', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      allocatable: { cpu: '8', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      nodeInfo: {
        kubeletVersion: 'v1.32.4',
        kubeProxyVersion: 'v1.32.4',
        osImage: 'kube-emulator',
        kernelVersion: process.version,
        containerRuntimeVersion: 'emulator://1.0',
        operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    },
  };
  const existing = store.get('nodes', undefined, nodeName);
  if (!existing) store.create('nodes', undefined, node);
  else store.updateStatus('nodes', undefined, nodeName, () => node.status);
}

function kubeconfig(url: string, caPem: string, token: string): string {
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'kube-emulator',
          cluster: { server: url, 'certificate-authority-data': Buffer.from(caPem).toString('base64') },
        },
      ],
      users: [{ name: 'kube-emulator', user: { token } }],
      contexts: [
        {
          name: 'kube-emulator',
          context: { cluster: 'kube-emulator', user: 'kube-emulator', namespace: 'default' },
        },
      ],
      'current-context': 'kube-emulator',
      preferences: {},
    },
    null,
    2,
  )}\n`;
}

async function listen(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const onError = (err: Error) => fail(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      ok();
    });
  });
}

/** Starts the API server and its kubelet; resolves once it accepts connections. */
export async function start(opts: StartOptions): Promise<Emulator> {
  const stateDir = resolve(opts.stateDir);
  await mkdir(stateDir, { recursive: true });
  const log = opts.log ?? (() => {});
  const saved = readState(stateDir);
  const token = opts.token ?? saved.token ?? randomBytes(24).toString('base64url');
  const host = opts.host ?? '127.0.0.1';
  const tls = await loadOrCreateTls(join(stateDir, 'pki'));
  const store = new ObjectStore({
    stateDir,
    log,
    ...(opts.watchHistorySize ? { historySize: opts.watchHistorySize } : {}),
  });

  let kubelet: Kubelet | undefined;
  const sockets = new Set<Socket>();
  let api: ApiServer | undefined;
  const faults = new Faults({ endWatches: () => api?.endWatches() ?? 0, kubelet: () => kubelet?.faults });
  const server = createServer({ key: tls.keyPem, cert: tls.certPem, ca: tls.caPem });
  let url = '';
  api = new ApiServer({
    store,
    faults,
    kubelet: () => kubelet,
    token,
    serverAddress: () => url.replace(/^https:\/\//, ''),
    bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
    deny: opts.deny ?? [],
    log,
  });
  server.on('request', api.handle);
  server.on('upgrade', api.handleUpgrade);
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  server.keepAliveTimeout = 4 * 3600_000;
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;

  let port = opts.port ?? saved.port ?? 0;
  try {
    await listen(server, port, host);
  } catch (err) {
    if (opts.port !== undefined || port === 0) throw err;
    port = 0;
    await listen(server, port, host);
  }
  port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  url = `https://${urlHost}:${port}`;
  await writeAtomic(join(stateDir, 'state.json'), JSON.stringify({ token, port }));
  const kubeconfigPath = resolve(opts.kubeconfigPath ?? join(stateDir, 'kubeconfig'));
  await writeAtomic(kubeconfigPath, kubeconfig(url, tls.caPem, token));

  try {
    kubelet = startKubelet({
      store,
      stateDir,
      ...(opts.failImagePattern ? { failImagePattern: opts.failImagePattern } : {}),
      ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
      log,
    });
    store.nodeName = kubelet.nodeName;
    bootstrap(store, kubelet.nodeName);
  } catch (err) {
    await kubelet?.stop().catch(() => {});
    server.close();
    store.close();
    throw err;
  }
  log(`kube-emulator listening on ${url}`);

  let stopping: Promise<void> | undefined;
  return {
    url,
    kubeconfigPath,
    token,
    caPem: tls.caPem,
    store,
    faults,
    stop() {
      stopping ??= (async () => {
        api?.closeAll();
        await kubelet
          ?.stop()
          .catch((err: unknown) => log(`kube-emulator: kubelet stop failed: ${String(err)}`));
        await new Promise<void>((ok) => {
          server.close(() => ok());
          server.closeAllConnections();
          for (const s of sockets) s.destroy();
        });
        store.close();
      })();
      return stopping;
    },
  };
}
