// The client-node adapter against the project's Kubernetes API emulator (a real HTTPS API server on
// loopback whose kubelet runs containers as local processes). No part of client-node is mocked.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { type Config, type DeepPartial, defaultConfig } from '@clauderon/config';
import { type Emulator, start } from '@clauderon/kube-emulator';
import { type ClauderonError, managedSelector, type SessionSpec, sessionSelector } from '@clauderon/protocol';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import {
  AGENT_CONTAINER,
  ATTACH_COMMAND,
  INIT_CONTAINER,
  ownerRefTo,
  planCreate,
  SYNC_MARKER_PATH,
} from '../builders/index.js';
import { KubeClient } from './kube-client.js';
import { loadKubeConfig } from './kubeconfig.js';
import { isContainerRunning } from './watch.js';

const NS = 'kt';
let emu: Emulator;
let dir: string;
let kc: KubeConfig;
let client: KubeClient;

const cfg = (over: DeepPartial<Config> = {}): Config =>
  defaultConfig({
    ...over,
    kubernetes: { kubeconfig: emu.kubeconfigPath, namespace: NS, ...over.kubernetes },
  });

const spec = (name: string, over: Partial<SessionSpec> = {}): SessionSpec => ({
  name,
  backend: 'kubernetes',
  namespace: NS,
  repo: '/src/app',
  repoName: 'app',
  branch: `clauderon/${name}`,
  baseCommit: 'a'.repeat(40),
  prompt: 'hello',
  image: 'clauderon-agent:0.1.0',
  pullPolicy: 'IfNotPresent',
  resources: {},
  storageSize: '1Gi',
  includeUncommitted: false,
  createdAt: new Date(0).toISOString(),
  ...over,
});

/** A plain pod running `script` (the emulator runs it as a local process). */
const simplePod = (name: string, script = 'sleep 3600', image = 'busybox:1.36'): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS, labels: { test: 'adapter' } },
  spec: {
    restartPolicy: 'Never',
    terminationGracePeriodSeconds: 1,
    containers: [{ name: 'main', image, command: ['sh', '-c', script] }],
  },
});

const running = (p: V1Pod) => p.status?.phase === 'Running';
const signal = () => AbortSignal.timeout(60_000);

async function startPod(name: string, script?: string): Promise<V1Pod> {
  await client.createPod(simplePod(name, script));
  return client.waitForPod(NS, name, running, { signal: signal(), timeoutMs: 30_000 });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kube-adapter-'));
  emu = await start({
    stateDir: dir,
    timeScale: 0,
    failImagePattern: /does-not-exist/,
    watchHistorySize: 20,
  });
  kc = loadKubeConfig(cfg().kubernetes);
  client = new KubeClient(kc);
  await client.core.createNamespace({ body: { metadata: { name: NS } } });
});

after(async () => {
  await emu?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('create, get, delete', () => {
  test('creates the planned objects, reads them back, and deletes idempotently', async () => {
    const s = spec('crud');
    const plan = planCreate(s, cfg(), {
      agentCommand: ['sh', '-c', 'sleep 3600'],
      proxy: {
        caBundlePem: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
        env: { HTTPS_PROXY: 'http://t@p:1' },
      },
    });
    for (const p of plan.filter((x) => x.kind !== 'Pod')) await client.createPlanned(p);
    const claim = await client.getClaim(NS, 'clauderon-crud-workspace');
    assert.equal(claim?.spec?.resources?.requests?.storage, '1Gi');
    const secret = await client.getSecret(NS, 'clauderon-crud-proxy');
    assert.equal(Buffer.from(secret!.data!.HTTPS_PROXY!, 'base64').toString(), 'http://t@p:1');

    await assert.rejects(client.createPlanned(plan[1]!), { code: 'CLAUDERON_E_SESSION_EXISTS' });
    const reused = await client.createPlanned(plan[1]!, { ifExists: 'reuse' });
    assert.equal(reused.metadata?.name, 'clauderon-crud-ca');

    const managed = await client.listManaged(NS, sessionSelector('crud'));
    assert.equal(managed.claims.length, 1);
    assert.equal(managed.configMaps.length, 1);
    assert.equal(managed.secrets.length, 1);
    assert.equal(managed.pods.length, 0);

    assert.equal(await client.deleteConfigMap(NS, 'clauderon-crud-ca'), true);
    assert.equal(await client.deleteConfigMap(NS, 'clauderon-crud-ca'), false);
    assert.equal(await client.getConfigMap(NS, 'clauderon-crud-ca'), undefined);
    await client.deleteSecret(NS, 'clauderon-crud-proxy');
    await client.deleteClaim(NS, 'clauderon-crud-workspace');
    await client.waitForGone('PersistentVolumeClaim', NS, 'clauderon-crud-workspace', {
      signal: signal(),
      timeoutMs: 20_000,
      timeoutKey: 'kubernetes.timeouts.delete',
    });
    assert.equal((await client.listManaged(NS, managedSelector)).claims.length, 0);
  });

  test('sets the pod as owner of the CA ConfigMap', async () => {
    const s = spec('owned');
    const plan = planCreate(s, cfg(), {
      agentCommand: ['true'],
      proxy: {
        caBundlePem: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
        env: { HTTPS_PROXY: 'x' },
      },
    });
    await client.createPlanned(plan[1]!);
    const pod = await client.createPod(simplePod('owner-pod'));
    await client.setOwner('ConfigMap', NS, 'clauderon-owned-ca', ownerRefTo(pod));
    const cm = await client.getConfigMap(NS, 'clauderon-owned-ca');
    assert.equal(cm?.metadata?.ownerReferences?.[0]?.uid, pod.metadata!.uid);
    assert.equal(cm?.metadata?.ownerReferences?.[0]?.kind, 'Pod');
  });
});

describe('error mapping', () => {
  test('a missing namespace is NAMESPACE_MISSING with the command that creates it', async () => {
    await assert.rejects(
      client.createPod({ ...simplePod('x'), metadata: { name: 'x', namespace: 'nowhere' } }),
      {
        code: 'CLAUDERON_E_NAMESPACE_MISSING',
        hint: 'kubectl create namespace nowhere',
      },
    );
  });

  test('a 500 from the server is KUBE_API carrying the server message', async () => {
    emu.faults.failNext({
      verb: 'create',
      resource: 'configmaps',
      action: { status: 500, message: 'etcd is on fire' },
    });
    await assert.rejects(
      client.createConfigMap({ metadata: { name: 'boom', namespace: NS } }),
      (e: ClauderonError) => e.code === 'CLAUDERON_E_KUBE_API' && /etcd is on fire/.test(e.message),
    );
  });

  test('a denied request is FORBIDDEN', async (t) => {
    emu.faults.deny({ verb: 'create', resource: 'secrets' });
    t.after(() => emu.faults.clear());
    await assert.rejects(client.createSecret({ metadata: { name: 's', namespace: NS } }), {
      code: 'CLAUDERON_E_FORBIDDEN',
    });
  });

  test('a server that is not there is CLUSTER_UNREACHABLE', async () => {
    const port = await closedPort();
    const dead = new KubeConfig();
    dead.loadFromOptions({
      clusters: [{ name: 'c', server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await assert.rejects(new KubeClient(dead).getPod(NS, 'p'), { code: 'CLAUDERON_E_CLUSTER_UNREACHABLE' });
  });
});

describe('watchPod and waitForPod', () => {
  test('keeps watching across a server-side watch end and ends on DELETED', async () => {
    await startPod('w1');
    const ac = new AbortController();
    const it = client.watchPod(NS, 'w1', ac.signal);
    const first = await it.next();
    assert.equal(first.value?.type, 'SYNC');
    const before = emu.faults.count({ resource: 'pods', watch: true });
    const pending = it.next(); // starts the watch
    await until(() => emu.faults.count({ resource: 'pods', watch: true }) > before);
    assert.ok(emu.faults.endWatches() >= 1);
    await until(() => emu.faults.count({ resource: 'pods', watch: true }) > before + 1);
    await client.deletePod(NS, 'w1', { gracePeriodSeconds: 0 });
    const types: string[] = [];
    let r = await pending;
    while (!r.done) {
      types.push(r.value.type);
      r = await it.next();
    }
    assert.equal(types.at(-1), 'DELETED');
  });

  test('re-watches after the client-side inactivity timeout', async () => {
    await startPod('w2');
    const quick = new KubeClient(kc, { watchInactivityMs: 150 });
    const ac = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const ev of quick.watchPod(NS, 'w2', ac.signal)) seen.push(ev.type);
    })();
    const before = emu.faults.count({ resource: 'pods', watch: true });
    await until(() => emu.faults.count({ resource: 'pods', watch: true }) >= before + 3);
    await client.deletePod(NS, 'w2', { gracePeriodSeconds: 0 });
    await done;
    assert.equal(seen[0], 'SYNC');
    assert.equal(seen.at(-1), 'DELETED');
  });

  test('re-lists when its resourceVersion has expired (410 Gone)', async () => {
    await startPod('w3');
    const ac = new AbortController();
    const it = client.watchPod(NS, 'w3', ac.signal);
    assert.equal((await it.next()).value?.type, 'SYNC');
    // More changes than the emulator's watch history (20) make our resourceVersion too old.
    for (let i = 0; i < 30; i++)
      await client.createConfigMap({ metadata: { name: `churn-${i}`, namespace: NS } });
    const next = await it.next();
    assert.equal(next.value?.type, 'SYNC');
    assert.equal(next.value?.pod.metadata?.name, 'w3');
    ac.abort();
    assert.equal((await it.next()).done, true);
  });

  test('fails fast on an image that cannot be pulled, quoting the Events', async () => {
    await client.createPod(simplePod('bad-image', 'true', 'registry.example/does-not-exist:1'));
    await assert.rejects(
      client.waitForPod(NS, 'bad-image', running, { signal: signal(), timeoutMs: 30_000 }),
      (e: ClauderonError) => {
        assert.equal(e.code, 'CLAUDERON_E_IMAGE_PULL');
        assert.match(e.message, /Events:/);
        assert.match(e.message, /Failed to pull image "registry.example\/does-not-exist:1"/);
        assert.match(e.hint!, /kubernetes.image/);
        return true;
      },
    );
  });

  test('a deadline is TIMEOUT naming the config key', async () => {
    await startPod('slow');
    await assert.rejects(
      client.waitForPod(NS, 'slow', () => false, {
        signal: signal(),
        timeoutMs: 300,
        timeoutKey: 'kubernetes.timeouts.command_start',
      }),
      (e: ClauderonError) =>
        e.code === 'CLAUDERON_E_TIMEOUT' && /kubernetes\.timeouts\.command_start/.test(e.hint ?? ''),
    );
  });

  test('an abort is CANCELLED', async () => {
    const ac = new AbortController();
    const p = client.waitForPod(NS, 'slow', () => false, { signal: ac.signal, timeoutMs: 30_000 });
    setImmediate(() => ac.abort());
    await assert.rejects(p, { code: 'CLAUDERON_E_CANCELLED' });
  });
});

describe('exec', () => {
  before(async () => {
    await startPod('ex');
  });

  test('sends a few MB of stdin with backpressure and returns output and a non-zero exit code', async () => {
    const data = randomBytes(4 * 1024 * 1024 + 123);
    let progress = 0;
    const r = await client.exec({
      namespace: NS,
      pod: 'ex',
      container: 'main',
      command: ['sh', '-c', 'wc -c; echo to-stderr >&2; exit 3'],
      stdin: Readable.from(chunks(data, 64 * 1024)),
      stdinSize: data.length,
      onStdinProgress: (n) => {
        progress = n;
      },
      signal: signal(),
    });
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout.toString().trim(), String(data.length));
    assert.equal(r.stderr.toString(), 'to-stderr\n');
    assert.equal(progress, data.length);
  });

  test('execStream delivers stdout as a stream, byte for byte', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const s = await client.execStream({
      namespace: NS,
      pod: 'ex',
      container: 'main',
      command: ['cat'],
      stdin: Readable.from(chunks(data, 100_000)),
      signal: signal(),
    });
    const hash = createHash('sha256');
    for await (const c of s.stdout) hash.update(c as Buffer);
    const { exitCode } = await s.done;
    assert.equal(exitCode, 0);
    assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  });

  test('a stream killed before the status arrives is an error, not success', async () => {
    const p = client.exec({
      namespace: NS,
      pod: 'ex',
      container: 'main',
      command: ['sleep', '30'],
      signal: signal(),
    });
    await until(() => emu.faults.killStreams(NS, 'ex') > 0);
    await assert.rejects(
      p,
      (e: ClauderonError) => e.code === 'CLAUDERON_E_KUBE_API' && /without an exit status/.test(e.message),
    );
  });

  test('an abort closes the stream and is CANCELLED', async () => {
    const ac = new AbortController();
    const p = client.exec({
      namespace: NS,
      pod: 'ex',
      container: 'main',
      command: ['sleep', '30'],
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(p, { code: 'CLAUDERON_E_CANCELLED' });
  });

  test('exec into a missing container is an error', async () => {
    await assert.rejects(
      client.exec({ namespace: NS, pod: 'ex', container: 'nope', command: ['true'], signal: signal() }),
      { code: 'CLAUDERON_E_KUBE_API' },
    );
  });
});

describe('openTerminal', () => {
  test('sends the initial size and resizes through the tty', async () => {
    await startPod('tty');
    const term = await client.openTerminal({
      namespace: NS,
      pod: 'tty',
      container: 'main',
      command: ['sh', '-c', 'stty size; while read -r line; do [ "$line" = q ] && exit 5; stty size; done'],
      cols: 100,
      rows: 30,
      signal: signal(),
    });
    let out = '';
    term.onData((b) => {
      out += b.toString();
    });
    // The first `stty size` may run before the initial size reached the pty (as on a real kubelet), so
    // each check asks again.
    await until(() => {
      term.write('\n');
      return out.includes('30 100');
    });
    term.resize(120, 40);
    await until(() => {
      term.write('\n');
      return out.includes('40 120');
    });
    term.write('q\n');
    const closed = await term.closed;
    assert.equal(closed.exitCode, 5);
    assert.equal(closed.error, undefined);
  });
});

describe('terminal keepalive', () => {
  test('a stream that stops answering pings is closed with an error', async () => {
    await startPod('tty-dead');
    const term = await client.openTerminal({
      namespace: NS,
      pod: 'tty-dead',
      container: 'main',
      command: ['sh', '-c', 'sleep 3600'],
      cols: 80,
      rows: 24,
      signal: signal(),
      pingIntervalMs: 50,
      pongTimeoutMs: 300,
    });
    // Stop reading the socket: pongs no longer arrive, exactly as with a silently dropped connection.
    term.ws.pause();
    const closed = await term.closed;
    assert.equal(closed.exitCode, null);
    assert.equal((closed.error as ClauderonError).code, 'CLAUDERON_E_CLUSTER_UNREACHABLE');
  });
});

// The session pod mounts its claim at /workspace: the emulator's kubelet can do that only as root (mount
// namespaces); the agent needs tmux on this machine.
const podRunnable =
  process.getuid?.() === 0 &&
  ['/usr/bin/unshare', '/usr/bin/nsenter', '/usr/bin/setpriv'].every((f) => existsSync(f)) &&
  hasCommand('tmux');

describe('the session pod in the emulator', {
  skip: !podRunnable && 'needs root (mount namespaces) and tmux',
}, () => {
  test('waits for the sync, then runs the agent under tmux, attachable with ATTACH_COMMAND', async () => {
    const s = spec('e2e');
    const plan = planCreate(s, cfg(), {
      agentCommand: ['sh', '-c', 'echo "AGENT-UP $1 in $(pwd)"; sleep 3600', 'x', 'the prompt $(HOME)'],
      plainEnv: { ANTHROPIC_API_KEY: 'placeholder' },
      proxy: {
        caBundlePem: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
        env: { HTTPS_PROXY: 'http://t@p:1' },
      },
    });
    let pod: V1Pod | undefined;
    for (const p of plan) {
      const made = await client.createPlanned(p);
      if (p.kind === 'Pod') pod = made as V1Pod;
    }
    await client.setOwner('Secret', NS, 'clauderon-e2e-proxy', ownerRefTo(pod!));
    const opts = { signal: signal(), timeoutMs: 30_000 };
    await client.waitForPod(NS, 'clauderon-e2e', isContainerRunning(INIT_CONTAINER), opts);
    // The daemon's sync runs in the init container; here it only builds the repo dir and writes the marker.
    const sync = await client.exec({
      namespace: NS,
      pod: 'clauderon-e2e',
      container: INIT_CONTAINER,
      command: [
        'sh',
        '-c',
        `mkdir -p /workspace/app /workspace/.clauderon && touch ${SYNC_MARKER_PATH} && id -u`,
      ],
      signal: signal(),
    });
    assert.equal(sync.exitCode, 0, sync.stderr.toString());
    await client.waitForPod(NS, 'clauderon-e2e', isContainerRunning(AGENT_CONTAINER), opts);
    const term = await client.openTerminal({
      namespace: NS,
      pod: 'clauderon-e2e',
      container: AGENT_CONTAINER,
      command: [...ATTACH_COMMAND],
      cols: 80,
      rows: 24,
      signal: signal(),
    });
    let out = '';
    term.onData((b) => {
      out += b.toString();
    });
    await until(() => out.includes('AGENT-UP the prompt $(HOME) in /workspace/app')).catch((e) => {
      throw new Error(`${e}\noutput: ${JSON.stringify(out)}`);
    });
    term.write('\x02d'); // tmux prefix + d: detach, the agent keeps running
    const closed = await term.closed;
    assert.equal(closed.exitCode, 0);
    const still = await client.getPod(NS, 'clauderon-e2e');
    assert.equal(still?.status?.phase, 'Running');
    await client.deletePod(NS, 'clauderon-e2e');
    await client.waitForGone('Pod', NS, 'clauderon-e2e', {
      ...opts,
      timeoutKey: 'kubernetes.timeouts.delete',
    });
  });
});

describe('preflight', () => {
  test('passes in a ready namespace', async () => {
    await client.preflight(spec('pf'), cfg());
  });

  test('reports each missing prerequisite with its fix', async () => {
    await assert.rejects(client.preflight(spec('pf', { namespace: 'absent' }), cfg()), {
      code: 'CLAUDERON_E_NAMESPACE_MISSING',
      hint: 'kubectl create namespace absent',
    });
    await assert.rejects(client.preflight(spec('pf', { storageClass: 'gold' }), cfg()), {
      code: 'CLAUDERON_E_STORAGE_CLASS_MISSING',
    });
    await assert.rejects(client.preflight(spec('pf'), cfg({ kubernetes: { service_account: 'agents' } })), {
      code: 'CLAUDERON_E_SERVICE_ACCOUNT_MISSING',
      hint: `kubectl -n ${NS} create serviceaccount agents`,
    });
    await assert.rejects(
      client.preflight(spec('pf'), cfg({ kubernetes: { image_pull_secrets: ['regcred'] } })),
      {
        code: 'CLAUDERON_E_PULL_SECRET_MISSING',
      },
    );
  });

  test('a denied access review is FORBIDDEN naming the verb and resource', async (t) => {
    emu.faults.deny({ verb: 'create', resource: 'pods/exec' });
    t.after(() => emu.faults.clear());
    await assert.rejects(client.preflight(spec('pf'), cfg()), (e: ClauderonError) => {
      assert.equal(e.code, 'CLAUDERON_E_FORBIDDEN');
      assert.match(e.message, /create pods\/exec/);
      return true;
    });
  });
});

function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

function* chunks(b: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** Polls a condition (state in the emulator, not a duration) until it holds; gives up after 20 s. */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + 20_000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`condition not reached: ${cond.toString()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
