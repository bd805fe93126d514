import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import type { Emulator } from './index.js';
import { kubectl, raw, startTestEmulator, waitFor } from './test-util.js';

describe('kube-emulator admin API, bookmarks, stream validation and the bin', () => {
  let emu: Emulator;
  let cleanup: () => Promise<void>;
  let core: CoreV1Api;
  let kc: KubeConfig;
  let cache: string;

  before(async () => {
    ({ emu, cleanup } = await startTestEmulator({
      bookmarkIntervalMs: 100,
      failImagePattern: /does-not-exist/,
    }));
    kc = new KubeConfig();
    kc.loadFromFile(emu.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
    cache = mkdtempSync(join(tmpdir(), 'kube-emu-admin-'));
  });
  after(async () => {
    await cleanup();
    rmSync(cache, { recursive: true, force: true });
  });

  test('the HTTP admin API arms faults and reports requests', async () => {
    const unauth = await raw(emu, 'GET', '/emulator/requests', { token: null });
    assert.equal(unauth.status, 401);
    const arm = await raw(emu, 'POST', '/emulator/faults/fail-next', {
      body: {
        verb: 'get',
        resource: 'namespaces',
        name: 'default',
        action: { status: 503, message: 'try later' },
      },
    });
    assert.equal(arm.status, 200);
    const failed = await raw(emu, 'GET', '/api/v1/namespaces/default');
    assert.equal(failed.status, 503);
    assert.equal(JSON.parse(failed.body).message, 'try later');
    assert.equal((await raw(emu, 'GET', '/api/v1/namespaces/default')).status, 200);
    const log = JSON.parse((await raw(emu, 'GET', '/emulator/requests')).body) as {
      requests: Array<Record<string, unknown>>;
    };
    assert.ok(
      log.requests.filter((r) => r.verb === 'get' && r.resource === 'namespaces' && r.name === 'default')
        .length >= 2,
    );
    assert.equal((await raw(emu, 'DELETE', '/emulator/requests')).status, 200);
    assert.equal(emu.faults.requests.length, 0);
    assert.equal(
      (await raw(emu, 'POST', '/emulator/deny', { body: { verb: 'list', resource: 'secrets' } })).status,
      200,
    );
    assert.equal((await raw(emu, 'GET', '/api/v1/namespaces/default/secrets')).status, 403);
    assert.equal((await raw(emu, 'POST', '/emulator/faults/clear')).status, 200);
    assert.equal((await raw(emu, 'GET', '/api/v1/namespaces/default/secrets')).status, 200);
  });

  test('watches get bookmarks when they allow them, and endWatches ends them cleanly', async () => {
    const types: string[] = [];
    let result: unknown = 'open';
    await new Watch(kc).watch(
      '/api/v1/namespaces/default/configmaps',
      { allowWatchBookmarks: true },
      (type) => types.push(type),
      (err) => {
        result = err;
      },
    );
    await waitFor(() => types.includes('BOOKMARK'), 'a bookmark');
    assert.ok(emu.faults.endWatches() >= 1);
    await waitFor(() => result !== 'open', 'the watch to end');
    assert.equal(result, null);
  });

  test('a watch with a Table Accept sends table rows; timeoutSeconds ends it', async () => {
    const res = await raw(emu, 'GET', '/api/v1/namespaces?watch=true&timeoutSeconds=1', {
      headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
    });
    assert.equal(res.status, 200);
    const events = res.body
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            type: string;
            object: { kind: string; columnDefinitions: unknown; rows: unknown[] };
          },
      );
    assert.ok(events.length >= 3);
    assert.equal(events[0]?.object.kind, 'Table');
    assert.ok(Array.isArray(events[0]?.object.columnDefinitions));
    assert.equal(events[1]?.object.columnDefinitions, null);
    assert.equal(events[0]?.object.rows.length, 1);
  });

  test('exec, attach and logs are validated before they reach the kubelet', async () => {
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'broken' },
        spec: { containers: [{ name: 'main', image: 'registry.invalid/does-not-exist:1' }] },
      },
    });
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'two' },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            { name: 'a', image: 'busybox:1.36', command: ['sleep', '3600'] },
            { name: 'b', image: 'busybox:1.36', command: ['sleep', '3600'] },
          ],
        },
      },
    });
    await waitFor(() => {
      const p = emu.store.get('pods', 'default', 'broken');
      const cs = (p?.status as { containerStatuses?: Array<{ state?: { waiting?: { reason?: string } } }> })
        ?.containerStatuses;
      return cs?.[0]?.state?.waiting?.reason?.includes('Image');
    }, 'the image pull to fail');
    const exec = await kubectl(emu, cache, ['exec', 'broken', '--', 'true']);
    assert.notEqual(exec.code, 0);
    assert.match(exec.stderr, /container not found \("main"\)/);
    const invalid = await kubectl(emu, cache, ['exec', 'broken', '-c', 'nope', '--', 'true']);
    assert.match(invalid.stderr, /container nope is not valid for pod broken/);
    const logs = await kubectl(emu, cache, ['logs', 'broken']);
    assert.match(
      logs.stderr,
      /container "main" in pod "broken" is waiting to start: (image can't be pulled|trying and failing to pull image)/,
    );

    const noContainer = await raw(emu, 'GET', '/api/v1/namespaces/default/pods/two/log');
    assert.equal(noContainer.status, 400);
    assert.equal(
      JSON.parse(noContainer.body).message,
      'a container name must be specified for pod two, choose one of: [a b]',
    );
    const missing = await raw(
      emu,
      'GET',
      '/api/v1/namespaces/default/pods/ghost/exec?command=true&stdout=1',
      {
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      },
    );
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body).message, 'pods "ghost" not found');
    await waitFor(async () => {
      const p = emu.store.get('pods', 'default', 'two');
      return (p?.status as { phase?: string })?.phase === 'Running';
    }, 'pod two to run');
    const noStreams = await raw(
      emu,
      'POST',
      '/api/v1/namespaces/default/pods/two/exec?command=true&container=a&stdout=false',
      {
        headers: {
          connection: 'Upgrade',
          upgrade: 'SPDY/3.1',
          'x-stream-protocol-version': 'v4.channel.k8s.io',
        },
      },
    );
    assert.equal(noStreams.status, 400);
    assert.equal(JSON.parse(noStreams.body).message, 'you must specify at least 1 of stdin, stdout, stderr');
    const attachNoName = await raw(emu, 'GET', '/api/v1/namespaces/default/pods/two/attach?stdout=true', {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    });
    assert.equal(attachNoName.status, 400);
    assert.match(JSON.parse(attachNoName.body).message, /a container name must be specified for pod two/);
    assert.ok(emu.faults.count({ verb: 'exec', resource: 'pods' }) >= 3);
    await core.deleteNamespacedPod({ name: 'two', namespace: 'default', gracePeriodSeconds: 0 });
    await core.deleteNamespacedPod({ name: 'broken', namespace: 'default', gracePeriodSeconds: 0 });
  });

  test('the deprecated /api/v1/watch/ paths stream events too', async () => {
    const res = await raw(emu, 'GET', '/api/v1/watch/namespaces/default/serviceaccounts?timeoutSeconds=1');
    assert.equal(res.status, 200);
    const first = JSON.parse(res.body.split('\n')[0] ?? '{}') as { type: string; object: { kind: string } };
    assert.equal(first.type, 'ADDED');
    assert.equal(first.object.kind, 'ServiceAccount');
  });

  test('objects entering and leaving a watch selector produce ADDED and DELETED', async () => {
    emu.store.create('configmaps', 'default', { metadata: { name: 'mover' } });
    const before = emu.faults.count({ verb: 'watch', resource: 'configmaps' });
    const pending = raw(
      emu,
      'GET',
      '/api/v1/namespaces/default/configmaps?watch=1&labelSelector=sel%3Din&timeoutSeconds=1',
    );
    await waitFor(
      () => emu.faults.count({ verb: 'watch', resource: 'configmaps' }) > before,
      'the watch to start',
    );
    const label = (v: string | undefined) =>
      emu.store.update('configmaps', 'default', 'mover', (o) => {
        o.metadata.labels = v ? { sel: v } : {};
        return o;
      });
    label('in');
    label('out');
    label('in');
    emu.store.remove('configmaps', 'default', 'mover');
    const res = await pending;
    const types = res.body
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    assert.deepEqual(types, ['ADDED', 'DELETED', 'ADDED', 'DELETED']);
  });

  test('deletecollection removes the selected objects', async () => {
    for (const n of ['dc-1', 'dc-2', 'dc-3']) {
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: n, labels: { dc: n === 'dc-3' ? 'keep' : 'go' } } },
      });
    }
    await core.deleteCollectionNamespacedConfigMap({ namespace: 'default', labelSelector: 'dc=go' });
    assert.equal(emu.store.get('configmaps', 'default', 'dc-1'), undefined);
    assert.equal(emu.store.get('configmaps', 'default', 'dc-2'), undefined);
    assert.ok(emu.store.get('configmaps', 'default', 'dc-3'));
  });

  test('the kube-emulator bin prints one ready line and exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kube-emu-bin-'));
    const bin = join(dirname(fileURLToPath(import.meta.url)), 'bin.js');
    const kubeconfig = join(dir, 'kc.yaml');
    const child = spawn(
      process.execPath,
      [bin, '--state-dir', join(dir, 'state'), '--kubeconfig', kubeconfig],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      await waitFor(() => out.includes('\n'), 'the ready line');
      assert.match(out, /^kube-emulator ready https:\/\/127\.0\.0\.1:\d+ kubeconfig=.*kc\.yaml\n$/);
      const config = JSON.parse(readFileSync(kubeconfig, 'utf8'));
      assert.equal(config['current-context'], 'kube-emulator');
      assert.ok(config.clusters[0].cluster['certificate-authority-data']);
      assert.equal(config.clusters[0].cluster['insecure-skip-tls-verify'], undefined);
      const code = new Promise<number | null>((ok) => child.on('exit', (c) => ok(c)));
      child.kill('SIGTERM');
      assert.equal(await code, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('kube-emulator protobuf bodies from kubectl typed clients', () => {
  let emu: Emulator;
  let cleanup: () => Promise<void>;
  let cache: string;
  before(async () => {
    ({ emu, cleanup } = await startTestEmulator({
      deny: [{ verb: 'delete', resource: 'pods', namespace: 'locked' }],
    }));
    cache = mkdtempSync(join(tmpdir(), 'kube-emu-pb-'));
  });
  after(async () => {
    await cleanup();
    rmSync(cache, { recursive: true, force: true });
  });

  test('kubectl create configmap|secret|namespace|serviceaccount and auth can-i work', async () => {
    const k = (...args: string[]) => kubectl(emu, cache, args);
    const cm = await k('create', 'configmap', 'imp', '--from-literal=a=b', '--from-literal=c=d');
    assert.equal(cm.code, 0, cm.stderr);
    assert.deepEqual(emu.store.get('configmaps', 'default', 'imp')?.data, { a: 'b', c: 'd' });
    const secret = await k('create', 'secret', 'generic', 's1', '--from-literal=pw=hunter2');
    assert.equal(secret.code, 0, secret.stderr);
    const data = emu.store.get('secrets', 'default', 's1')?.data as Record<string, string>;
    assert.equal(Buffer.from(data.pw ?? '', 'base64').toString(), 'hunter2');
    assert.equal(emu.store.get('secrets', 'default', 's1')?.type, 'Opaque');
    const ns = await k('create', 'namespace', 'locked');
    assert.equal(ns.code, 0, ns.stderr);
    assert.equal(emu.store.get('namespaces', undefined, 'locked')?.metadata.generateName, undefined);
    const sa = await k('create', 'serviceaccount', 'robot');
    assert.equal(sa.code, 0, sa.stderr);
    const yes = await k('auth', 'can-i', 'create', 'pods');
    assert.equal(yes.stdout.trim(), 'yes');
    const no = await k('auth', 'can-i', 'delete', 'pods', '-n', 'locked');
    assert.match(no.stdout, /^no\b/);
    assert.notEqual(no.code, 0);
  });
});
