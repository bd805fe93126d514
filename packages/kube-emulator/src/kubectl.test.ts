import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Emulator } from './index.js';
import { kubectl, raw, startTestEmulator, waitFor } from './test-util.js';

describe('kube-emulator with the real kubectl', () => {
  let emu: Emulator;
  let cleanup: () => Promise<void>;
  let work: string;
  const k = (...args: string[]) => kubectl(emu, join(work, 'cache'), args);

  before(async () => {
    ({ emu, cleanup } = await startTestEmulator());
    work = mkdtempSync(join(tmpdir(), 'kube-emu-kubectl-'));
  });
  after(async () => {
    await cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  test('answers 401 with a Status body when the token is missing or wrong', async () => {
    for (const token of [null, 'wrong']) {
      const res = await raw(emu, 'GET', '/api/v1/namespaces', { token });
      assert.equal(res.status, 401);
      assert.match(String(res.headers['content-type']), /application\/json/);
      const body = JSON.parse(res.body);
      assert.equal(body.kind, 'Status');
      assert.equal(body.reason, 'Unauthorized');
      assert.equal(body.code, 401);
    }
  });

  test('serves discovery: version 1.32, core and group resource lists', async () => {
    const version = JSON.parse((await raw(emu, 'GET', '/version')).body);
    assert.equal(version.major, '1');
    assert.equal(version.minor, '32');
    const api = JSON.parse((await raw(emu, 'GET', '/api')).body);
    assert.deepEqual(api.versions, ['v1']);
    const v1 = JSON.parse((await raw(emu, 'GET', '/api/v1')).body);
    const names = v1.resources.map((r: { name: string }) => r.name);
    for (const n of [
      'pods',
      'pods/exec',
      'pods/log',
      'pods/attach',
      'pods/status',
      'persistentvolumeclaims',
      'configmaps',
      'secrets',
      'serviceaccounts',
      'events',
      'namespaces',
      'nodes',
    ]) {
      assert.ok(names.includes(n), `missing ${n}`);
    }
    const pods = v1.resources.find((r: { name: string }) => r.name === 'pods');
    assert.deepEqual(pods.shortNames, ['po']);
    assert.deepEqual(pods.categories, ['all']);
    const apis = JSON.parse((await raw(emu, 'GET', '/apis')).body);
    assert.deepEqual(apis.groups.map((g: { name: string }) => g.name).sort(), [
      'authorization.k8s.io',
      'storage.k8s.io',
    ]);
    const storage = JSON.parse((await raw(emu, 'GET', '/apis/storage.k8s.io/v1')).body);
    assert.equal(storage.resources[0].name, 'storageclasses');
    assert.equal((await raw(emu, 'GET', '/openapi/v2')).status, 404);
    assert.equal((await raw(emu, 'GET', '/healthz')).body, 'ok');
    const r = await k('version', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).serverVersion.minor, '32');
  });

  test('kubectl create -f, get (table, wide, json, -l), describe and delete', async () => {
    const file = join(work, 'objs.yaml');
    writeFileSync(
      file,
      `apiVersion: v1
kind: ConfigMap
metadata: {name: cm1, labels: {app: demo}}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data1}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: demo}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, "3600"]
`,
    );
    const created = await k('create', '-f', file, '--validate=false');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /configmap\/cm1 created/);
    assert.match(created.stdout, /persistentvolumeclaim\/data1 created/);
    assert.match(created.stdout, /pod\/web created/);

    const pods = await k('get', 'pods');
    assert.equal(pods.code, 0, pods.stderr);
    assert.match(pods.stdout, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE/);
    assert.match(pods.stdout, /\nweb\s+\d\/1\s+\w+/);

    const wide = await k('get', 'pods', '-o', 'wide');
    assert.match(wide.stdout, /IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES/);

    const cms = await k('get', 'configmaps', '-l', 'app=demo');
    assert.match(cms.stdout, /^NAME\s+DATA\s+AGE/);
    assert.match(cms.stdout, /\ncm1\s+2\s+/);
    const none = await k('get', 'configmaps', '-l', 'app=other');
    assert.match(none.stderr, /No resources found/);

    const json = await k('get', 'pod', 'web', '-o', 'json');
    const pod = JSON.parse(json.stdout);
    assert.equal(pod.kind, 'Pod');
    assert.equal(pod.spec.restartPolicy, 'Always');
    assert.equal(pod.spec.containers[0].imagePullPolicy, 'IfNotPresent');
    assert.equal(pod.spec.serviceAccountName, 'default');
    assert.match(pod.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const pvc = await k('get', 'pvc');
    assert.match(pvc.stdout, /^NAME\s+STATUS\s+VOLUME\s+CAPACITY\s+ACCESS MODES\s+STORAGECLASS/);

    emu.store.recordEvent(
      emu.store.get('pods', 'default', 'web')!,
      'Normal',
      'Testing',
      'an event from the test',
      'test',
    );
    const desc = await k('describe', 'pod', 'web');
    assert.equal(desc.code, 0, desc.stderr);
    assert.match(desc.stdout, /Name:\s+web/);
    assert.match(desc.stdout, /Events:/);
    assert.match(desc.stdout, /Testing\s+.*an event from the test/);

    const delCm = await k('delete', 'configmap', 'cm1');
    assert.equal(delCm.code, 0, delCm.stderr);
    assert.match(delCm.stdout, /configmap "cm1" deleted/);
    assert.equal(emu.store.get('configmaps', 'default', 'cm1'), undefined);

    const delPod = await k('delete', 'pod', 'web');
    assert.equal(delPod.code, 0, delPod.stderr);
    assert.match(delPod.stdout, /pod "web" deleted/);
    assert.equal(emu.store.get('pods', 'default', 'web'), undefined);

    const delPvc = await k('delete', 'pvc', 'data1');
    assert.equal(delPvc.code, 0, delPvc.stderr);
    assert.equal(emu.store.get('persistentvolumeclaims', 'default', 'data1'), undefined);
  });

  test('kubectl get -w prints a row for a change', async () => {
    const child = spawn('kubectl', ['get', 'configmaps', '-w', '--no-headers'], {
      env: {
        KUBECONFIG: emu.kubeconfigPath,
        KUBECACHEDIR: join(work, 'cache'),
        PATH: process.env.PATH ?? '',
        HOME: work,
      },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    try {
      await waitFor(
        () => emu.faults.count({ verb: 'watch', resource: 'configmaps' }) > 0,
        'kubectl to start watching',
      );
      emu.store.create('configmaps', 'default', { metadata: { name: 'watched' }, data: { x: 'y' } });
      await waitFor(() => /watched\s+1\s+/.test(out), 'the watched row');
    } finally {
      child.kill('SIGTERM');
    }
  });

  test('kubectl apply (client-side and --server-side) creates and then updates', async () => {
    const file = join(work, 'applied.yaml');
    for (const [mode, value] of [
      ['--server-side', '1'],
      ['--server-side', '2'],
      ['', '3'],
    ] as const) {
      writeFileSync(
        file,
        `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {v: "${value}"}\n`,
      );
      const r = await k('apply', ...(mode ? [mode] : []), '-f', file, '--validate=false');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(emu.store.get('configmaps', 'default', 'applied')?.data, { v: value });
    }
  });

  test('kubectl explains errors from the server', async () => {
    const r = await k('get', 'pod', 'nope');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error from server \(NotFound\): pods "nope" not found/);
    const ns = await k('get', 'pods', '-n', 'missing-ns');
    assert.match(ns.stderr, /No resources found in missing-ns namespace/);
  });
});
