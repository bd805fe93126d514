import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { KObject } from '../contract.js';
import { mountNamespacesAvailable } from './process.js';
import {
  containerState,
  type Harness,
  type Loose,
  loose,
  phaseOf,
  pod,
  rawExec,
  startHarness,
} from './test-support/harness.js';

/** Where test containers mount volumes (mountpoints are created on the host); removed after the file. */
const MNT = `/tmp/kubelet-test-mnt-${process.pid}`;
after(() => rmSync(MNT, { recursive: true, force: true }));

/** Mount namespaces and uid switching need root that may mount (CI runs as root). */
const NEEDS_ROOT = mountNamespacesAvailable() ? false : 'needs mount namespaces (root with CAP_SYS_ADMIN)';

describe('kubelet with a fake store', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  test('schedules a pod, runs its container and reports Running', async () => {
    h.store.create(
      'pods',
      pod('p1', {
        containers: [
          {
            name: 'main',
            image: 'busybox',
            command: ['sh', '-c', 'echo hello; echo oops >&2; exec sleep 60'],
          },
        ],
      }),
    );
    const p = await h.store.waitFor('pods', 'default', 'p1', (o) => phaseOf(o) === 'Running');
    assert.equal(loose(p?.spec).nodeName, 'emulator-node');
    const st = loose(p?.status);
    assert.match(st.podIP, /^10\.244\./);
    assert.deepEqual(
      st.conditions.map((c: Loose) => `${c.type}=${c.status}`),
      [
        'PodReadyToStartContainers=True',
        'Initialized=True',
        'Ready=True',
        'ContainersReady=True',
        'PodScheduled=True',
      ],
    );
    assert.ok(containerState(p)?.state.running);
    const reasons = h.store.events.map((e) => e.reason);
    for (const r of ['Scheduled', 'Pulling', 'Pulled', 'Created', 'Started'])
      assert.ok(reasons.includes(r), r);
    // The first kubelet status showed ContainerCreating.
    const creating = h.store.history.find(
      (e) =>
        e.resource === 'pods' && containerState(e.object)?.state?.waiting?.reason === 'ContainerCreating',
    );
    assert.ok(creating);
  });

  test('serves logs with timestamps and tailLines', async () => {
    await h.store.waitFor('pods', 'default', 'p1', (o) => phaseOf(o) === 'Running');
    let text = '';
    for (let i = 0; i < 50 && !text.includes('oops'); i++) {
      text = await (
        await fetch(`http://${h.base}/api/v1/namespaces/default/pods/p1/log?container=main`)
      ).text();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(text, 'hello\noops\n');
    const tail = await (
      await fetch(`http://${h.base}/api/v1/namespaces/default/pods/p1/log?tailLines=1&timestamps=true`)
    ).text();
    assert.match(tail, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z oops\n$/);
    const prev = await fetch(`http://${h.base}/api/v1/namespaces/default/pods/p1/log?previous=true`);
    assert.equal(prev.status, 400);
  });

  test('exec over v5 returns output, stdin EOF and exit codes', async () => {
    const r1 = await rawExec(h.base, 'p1', ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(r1.protocol, 'v5.channel.k8s.io');
    assert.equal(r1.stdout.toString(), 'out\n');
    assert.equal(r1.stderr.toString(), 'err\n');
    assert.equal(r1.status?.reason, 'NonZeroExitCode');
    assert.deepEqual(loose(r1.status?.details).causes, [{ reason: 'ExitCode', message: '3' }]);
    assert.equal(r1.closeCode, 1000);
    assert.equal(r1.frames[0], 1);
    const r2 = await rawExec(h.base, 'p1', ['cat'], { input: Buffer.from('abc') });
    assert.equal(r2.stdout.toString(), 'abc');
    assert.deepEqual(r2.status, { metadata: {}, status: 'Success' });
    const r3 = await rawExec(h.base, 'p1', ['sh', '-c', 'echo $HOSTNAME $PATH'], {
      protocols: ['v4.channel.k8s.io'],
    });
    assert.equal(r3.protocol, 'v4.channel.k8s.io');
    assert.equal(r3.stdout.toString(), 'p1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
  });

  test('exec with a tty merges output and honours resize', async () => {
    const r = await rawExec(
      h.base,
      'p1',
      [
        'sh',
        '-c',
        'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do s=$(stty size); [ "$s" = "45 123" ] && break; sleep 0.1; done; echo $s; echo e >&2',
      ],
      {
        tty: true,
        onOpen: (ws) =>
          ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":123,"Height":45}\n')])),
      },
    );
    assert.match(r.stdout.toString(), /45 123\r\ne\r\n/);
    assert.equal(r.stderr.length, 0);
    assert.deepEqual(r.status, { metadata: {}, status: 'Success' });
  });

  test('graceful delete stops the container and removes the pod', async () => {
    h.store.create(
      'pods',
      pod('p2', { containers: [{ name: 'main', image: 'busybox', command: ['sleep', '60'] }] }),
    );
    await h.store.waitFor('pods', 'default', 'p2', (o) => phaseOf(o) === 'Running');
    h.store.delete('pods', 'default', 'p2', 5);
    await h.store.waitFor('pods', 'default', 'p2', (o) => o === undefined);
    assert.ok(h.store.events.some((e) => e.reason === 'Killing' && e.involved === 'Pod/p2'));
  });

  test('restartPolicy Never: Succeeded and Failed', async () => {
    h.store.create(
      'pods',
      pod('ok', { restartPolicy: 'Never', containers: [{ name: 'main', image: 'x', command: ['true'] }] }),
    );
    h.store.create(
      'pods',
      pod('bad', {
        restartPolicy: 'Never',
        containers: [{ name: 'main', image: 'x', command: ['sh', '-c', 'exit 4'] }],
      }),
    );
    const ok = await h.store.waitFor('pods', 'default', 'ok', (o) => phaseOf(o) === 'Succeeded');
    assert.equal(containerState(ok)?.state.terminated.reason, 'Completed');
    const bad = await h.store.waitFor('pods', 'default', 'bad', (o) => phaseOf(o) === 'Failed');
    assert.equal(containerState(bad)?.state.terminated.exitCode, 4);
    assert.equal(containerState(bad)?.state.terminated.reason, 'Error');
  });

  test('CrashLoopBackOff with restartCount and lastState', async () => {
    h.store.create(
      'pods',
      pod('crash', { containers: [{ name: 'main', image: 'x', command: ['sh', '-c', 'echo run; exit 2'] }] }),
    );
    const p = await h.store.waitFor(
      'pods',
      'default',
      'crash',
      (o) => containerState(o)?.state?.waiting?.reason === 'CrashLoopBackOff',
    );
    const cs = containerState(p);
    assert.ok(cs?.restartCount >= 1);
    assert.equal(cs?.lastState.terminated.exitCode, 2);
    assert.match(
      cs?.state.waiting.message,
      /^back-off \d+s restarting failed container=main pod=crash_default\(/,
    );
    const prev = await fetch(`http://${h.base}/api/v1/namespaces/default/pods/crash/log?previous=true`);
    assert.equal(await prev.text(), 'run\n');
    h.store.delete('pods', 'default', 'crash', 1);
  });

  test('init containers, volumes and a failing image', { skip: NEEDS_ROOT }, async () => {
    h.store.create('storageclasses', {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'standard', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'rancher.io/local-path',
      volumeBindingMode: 'WaitForFirstConsumer',
    });
    h.store.create('configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'cm', namespace: 'default' },
      data: { 'a.txt': 'A' },
    });
    h.store.create(
      'pods',
      pod('vol', {
        initContainers: [
          {
            name: 'init',
            image: 'x',
            command: ['sh', '-c', `echo from-init > ${MNT}/work/f`],
            volumeMounts: [{ name: 'data', mountPath: `${MNT}/work` }],
          },
        ],
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sleep', '60'],
            env: [{ name: 'NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
            volumeMounts: [
              { name: 'data', mountPath: `${MNT}/work` },
              { name: 'cfg', mountPath: `${MNT}/cfg` },
              { name: 'scratch', mountPath: '/tmp' },
            ],
          },
        ],
        volumes: [
          { name: 'data', persistentVolumeClaim: { claimName: 'claim' } },
          { name: 'cfg', configMap: { name: 'cm' } },
          { name: 'scratch', emptyDir: {} },
        ],
      }),
    );
    let p = await h.store.waitFor(
      'pods',
      'default',
      'vol',
      (o) => loose(o?.status).conditions?.[0]?.reason === 'Unschedulable',
    );
    assert.equal(loose(p?.status).conditions[0].message, 'persistentvolumeclaim "claim" not found');
    h.store.create('persistentvolumeclaims', {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'claim', namespace: 'default' },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      status: { phase: 'Pending' },
    });
    p = await h.store.waitFor('pods', 'default', 'vol', (o) => phaseOf(o) === 'Running');
    const claim = h.store.get('persistentvolumeclaims', 'default', 'claim');
    assert.equal(loose(claim?.status).phase, 'Bound');
    assert.equal(claim?.metadata.annotations?.['volume.kubernetes.io/selected-node'], 'emulator-node');
    assert.equal(loose(claim?.spec).volumeName, `pvc-${claim?.metadata.uid}`);
    assert.equal(containerState(p, 'init', true)?.state.terminated.reason, 'Completed');
    const r = await rawExec(h.base, 'vol', [
      'sh',
      '-c',
      `cat ${MNT}/cfg/a.txt; echo; ls ${MNT}/work; echo $NAME; touch /tmp/x && echo tmp-ok; touch ${MNT}/cfg/no 2>/dev/null || echo ro`,
    ]);
    // The init container wrote into the claim through another mountPath; the main container sees it at /work.
    assert.equal(
      r.stdout.toString(),
      'A\nf\nvol\ntmp-ok\nro\n',
      `stderr: ${r.stderr} status: ${JSON.stringify(r.status)}`,
    );
    assert.ok(existsSync(`${h.stateDir}/volumes/${claim?.metadata.uid}/f`));
    assert.equal(readFileSync(`${h.stateDir}/volumes/${claim?.metadata.uid}/f`, 'utf8'), 'from-init\n');
    h.store.delete('pods', 'default', 'vol', 1);
  });
});

describe('init container failures and claims', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  test('a failing init container fails the pod with Never and crash-loops with OnFailure', async () => {
    const spec = (policy: string) => ({
      restartPolicy: policy,
      initContainers: [{ name: 'init', image: 'x', command: ['sh', '-c', 'exit 3'] }],
      containers: [{ name: 'main', image: 'x', command: ['sleep', '60'] }],
    });
    h.store.create('pods', pod('init-never', spec('Never')));
    h.store.create('pods', pod('init-loop', spec('OnFailure')));
    const never = await h.store.waitFor('pods', 'default', 'init-never', (o) => phaseOf(o) === 'Failed');
    assert.equal(containerState(never, 'init', true)?.state.terminated.exitCode, 3);
    assert.equal(containerState(never)?.state.waiting.reason, 'PodInitializing');
    const initialized = loose(never?.status).conditions.find((c: Loose) => c.type === 'Initialized');
    assert.equal(initialized.status, 'False');
    assert.equal(initialized.message, 'containers with incomplete status: [init]');
    const loop = await h.store.waitFor(
      'pods',
      'default',
      'init-loop',
      (o) => containerState(o, 'init', true)?.state?.waiting?.reason === 'CrashLoopBackOff',
    );
    assert.equal(phaseOf(loop), 'Pending');
    h.store.delete('pods', 'default', 'init-loop', 1);
  });

  test('exec into a running init container releases it (how a workspace is shipped)', async () => {
    h.store.create(
      'pods',
      pod('ship', {
        initContainers: [
          {
            name: 'workspace',
            image: 'x',
            command: ['sh', '-c', 'while [ ! -f /tmp/go ]; do sleep 0.05; done; sleep 0.3; cat /tmp/go'],
            volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
          },
        ],
        containers: [{ name: 'main', image: 'x', command: ['sleep', '300'] }],
        volumes: [{ name: 'tmp', emptyDir: {} }],
      }),
    );
    await h.store.waitFor(
      'pods',
      'default',
      'ship',
      (o) => containerState(o, 'workspace', true)?.state?.running !== undefined,
    );
    const r = await rawExec(h.base, 'ship', ['sh', '-c', 'cat > /tmp/go.part && mv /tmp/go.part /tmp/go'], {
      container: 'workspace',
      input: Buffer.from('payload'),
    });
    assert.deepEqual(r.status, { metadata: {}, status: 'Success' });
    await h.store.waitFor('pods', 'default', 'ship', (o) => phaseOf(o) === 'Running');
    const log = await (
      await fetch(`http://${h.base}/api/v1/namespaces/default/pods/ship/log?container=workspace`)
    ).text();
    assert.equal(log, 'payload');
    h.store.delete('pods', 'default', 'ship', 1);
  });

  test('ConfigMap changes reach a running container through its volume', { skip: NEEDS_ROOT }, async () => {
    h.store.create('configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'live', namespace: 'default' },
      data: { v: 'one' },
    });
    h.store.create(
      'pods',
      pod('live', {
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sleep', '300'],
            volumeMounts: [{ name: 'c', mountPath: `${MNT}/live` }],
          },
        ],
        volumes: [{ name: 'c', configMap: { name: 'live' } }],
      }),
    );
    await h.store.waitFor('pods', 'default', 'live', (o) => phaseOf(o) === 'Running');
    assert.equal((await rawExec(h.base, 'live', ['cat', `${MNT}/live/v`])).stdout.toString(), 'one');
    h.store.update('configmaps', 'default', 'live', (o) => ({ ...o, data: { v: 'two', w: 'new' } }));
    let out = '';
    for (let i = 0; i < 100 && out !== 'twonew'; i++) {
      out = (await rawExec(h.base, 'live', ['sh', '-c', `cat ${MNT}/live/v ${MNT}/live/w`])).stdout
        .toString()
        .trim();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(out, 'twonew');
    h.store.delete('pods', 'default', 'live', 1);
  });

  test('a pod created on the node binds its claim; deleting the claim removes its data', {
    skip: NEEDS_ROOT,
  }, async () => {
    const claim = h.store.create('persistentvolumeclaims', {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'direct', namespace: 'default' },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '2Gi' } } },
      status: { phase: 'Pending' },
    });
    h.store.create(
      'pods',
      pod('direct', {
        nodeName: 'emulator-node',
        restartPolicy: 'Never',
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sh', '-c', `echo kept > ${MNT}/direct/f`],
            volumeMounts: [{ name: 'd', mountPath: `${MNT}/direct` }],
          },
        ],
        volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'direct' } }],
      }),
    );
    await h.store.waitFor('pods', 'default', 'direct', (o) => phaseOf(o) === 'Succeeded');
    const bound = h.store.get('persistentvolumeclaims', 'default', 'direct');
    assert.equal(loose(bound?.status).phase, 'Bound');
    assert.deepEqual(loose(bound?.status).capacity, { storage: '2Gi' });
    const dir = `${h.stateDir}/volumes/${claim.metadata.uid}`;
    assert.equal(readFileSync(`${dir}/f`, 'utf8'), 'kept\n');
    h.store.remove('persistentvolumeclaims', 'default', 'direct');
    for (let i = 0; i < 100 && existsSync(dir); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(existsSync(dir), false);
  });
});

describe('probes', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ timeScale: 0.005 });
  });
  after(async () => {
    await h.close();
  });

  test('a readiness probe gates Ready; a failing liveness probe restarts the container', async () => {
    const ready = (o: KObject | undefined): string | undefined =>
      loose(o?.status).conditions?.find((c: Loose) => c.type === 'Ready')?.status;
    h.store.create(
      'pods',
      pod('probed', {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sh', '-c', 'touch /tmp/alive; exec sleep 300'],
            volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 },
            livenessProbe: {
              exec: { command: ['test', '-f', '/tmp/alive'] },
              // 100 ms at this timeScale: time for the container to create /tmp/alive first.
              initialDelaySeconds: 20,
              periodSeconds: 1,
              failureThreshold: 2,
            },
          },
        ],
        volumes: [{ name: 'tmp', emptyDir: {} }],
      }),
    );
    const running = await h.store.waitFor('pods', 'default', 'probed', (o) => phaseOf(o) === 'Running');
    assert.equal(ready(running), 'False');
    assert.equal(containerState(running)?.ready, false);
    await rawExec(h.base, 'probed', ['touch', '/tmp/ready']);
    await h.store.waitFor('pods', 'default', 'probed', (o) => ready(o) === 'True');
    await rawExec(h.base, 'probed', ['rm', '/tmp/alive']);
    const restarted = await h.store.waitFor(
      'pods',
      'default',
      'probed',
      (o) => containerState(o)?.restartCount === 1,
    );
    assert.equal(containerState(restarted)?.lastState.terminated.exitCode, 143);
    assert.ok(
      h.store.events.some((e) => e.reason === 'Unhealthy' && e.message.startsWith('Liveness probe failed')),
    );
    assert.ok(
      h.store.events.some((e) => e.message === 'Container main failed liveness probe, will be restarted'),
    );
  });
});

describe('image pull failures', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ failImagePattern: /does-not-exist/ });
  });
  after(async () => {
    await h.close();
  });

  test('ErrImagePull then ImagePullBackOff with events', async () => {
    h.store.create(
      'pods',
      pod('img', { containers: [{ name: 'main', image: 'example.com/does-not-exist:1' }] }),
    );
    const p = await h.store.waitFor(
      'pods',
      'default',
      'img',
      (o) => containerState(o)?.state?.waiting?.reason === 'ImagePullBackOff',
    );
    assert.equal(
      containerState(p)?.state.waiting.message,
      'Back-off pulling image "example.com/does-not-exist:1"',
    );
    assert.equal(phaseOf(p), 'Pending');
    assert.ok(
      h.store.history.some((e) => containerState(e.object)?.state?.waiting?.reason === 'ErrImagePull'),
    );
    assert.ok(
      h.store.events.some(
        (e) =>
          e.reason === 'Failed' &&
          e.message.startsWith(
            'Failed to pull image "example.com/does-not-exist:1": rpc error: code = NotFound',
          ),
      ),
    );
    assert.ok(h.store.events.some((e) => e.reason === 'BackOff'));
  });

  test('a missing env key is a CreateContainerConfigError', async () => {
    h.store.create(
      'pods',
      pod('cfgerr', {
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sleep', '60'],
            env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k' } } }],
          },
        ],
      }),
    );
    const p = await h.store.waitFor(
      'pods',
      'default',
      'cfgerr',
      (o) => containerState(o)?.state?.waiting?.reason === 'CreateContainerConfigError',
    );
    assert.equal(containerState(p)?.state.waiting.message, 'configmap "nope" not found');
    h.store.create('configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'nope', namespace: 'default' },
      data: { k: 'v' },
    });
    await h.store.waitFor('pods', 'default', 'cfgerr', (o) => phaseOf(o) === 'Running');
  });
});

describe('logs and shutdown', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  test('follow streams new lines and ends when the container exits', async () => {
    h.store.create(
      'pods',
      pod('f', {
        restartPolicy: 'Never',
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sh', '-c', 'echo one; sleep 0.3; echo two; sleep 0.3; echo three'],
          },
        ],
      }),
    );
    await h.store.waitFor('pods', 'default', 'f', (o) => phaseOf(o) === 'Running');
    const res = await fetch(`http://${h.base}/api/v1/namespaces/default/pods/f/log?follow=true`);
    assert.equal(res.headers.get('content-type'), 'text/plain');
    assert.equal(await res.text(), 'one\ntwo\nthree\n');
    const limited = await (
      await fetch(`http://${h.base}/api/v1/namespaces/default/pods/f/log?limitBytes=6`)
    ).text();
    assert.equal(limited, 'one\ntw');
    const since = await (
      await fetch(`http://${h.base}/api/v1/namespaces/default/pods/f/log?sinceSeconds=100`)
    ).text();
    assert.equal(since, 'one\ntwo\nthree\n');
  });

  test('processes that escape the process group go with the container', { skip: NEEDS_ROOT }, async () => {
    const { execFileSync } = await import('node:child_process');
    const count = (arg: string): number => {
      try {
        return execFileSync('pgrep', ['-f', `^sleep ${arg}$`])
          .toString()
          .trim()
          .split('\n').length;
      } catch {
        return 0;
      }
    };
    h.store.create(
      'pods',
      pod('escape', {
        restartPolicy: 'Never',
        containers: [
          { name: 'main', image: 'x', command: ['sh', '-c', 'setsid sleep 3014 & sleep 0.3; exit 0'] },
        ],
      }),
    );
    await h.store.waitFor('pods', 'default', 'escape', (o) => phaseOf(o) === 'Running');
    for (let i = 0; i < 100 && count('3014') === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(count('3014'), 1);
    await h.store.waitFor('pods', 'default', 'escape', (o) => phaseOf(o) === 'Succeeded');
    for (let i = 0; i < 100 && count('3014') > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(count('3014'), 0);
  });

  test('a second, shorter delete cuts the grace period of a container that ignores SIGTERM', async () => {
    h.store.create(
      'pods',
      pod('stubborn', {
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sh', '-c', "trap '' TERM; echo trapped; while :; do sleep 0.1; done"],
          },
        ],
      }),
    );
    await h.store.waitFor('pods', 'default', 'stubborn', (o) => phaseOf(o) === 'Running');
    // The signal must not beat the trap.
    let log = '';
    for (let i = 0; i < 200 && !log.includes('trapped'); i++) {
      log = await (await fetch(`http://${h.base}/api/v1/namespaces/default/pods/stubborn/log`)).text();
      await new Promise((r) => setTimeout(r, 10));
    }
    h.store.delete('pods', 'default', 'stubborn', 300);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(h.store.get('pods', 'default', 'stubborn'), 'still terminating within its grace period');
    h.store.delete('pods', 'default', 'stubborn', 1);
    await h.store.waitFor('pods', 'default', 'stubborn', (o) => o === undefined, 10_000);
  });

  test('a pod removed from the store is killed at once; stop() ends everything', async () => {
    h.store.create(
      'pods',
      pod('gone', { containers: [{ name: 'main', image: 'x', command: ['sleep', '3007'] }] }),
    );
    h.store.create(
      'pods',
      pod('left', { containers: [{ name: 'main', image: 'x', command: ['sleep', '3011'] }] }),
    );
    await h.store.waitFor('pods', 'default', 'gone', (o) => phaseOf(o) === 'Running');
    await h.store.waitFor('pods', 'default', 'left', (o) => phaseOf(o) === 'Running');
    const { execFileSync } = await import('node:child_process');
    const count = (arg: string): number => {
      try {
        return execFileSync('pgrep', ['-f', `^sleep ${arg}$`])
          .toString()
          .trim()
          .split('\n').length;
      } catch {
        return 0;
      }
    };
    assert.equal(count('3007'), 1);
    h.store.remove('pods', 'default', 'gone');
    for (let i = 0; i < 200 && count('3007') > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(count('3007'), 0);
    assert.equal(count('3011'), 1);
    await h.kubelet.stop();
    assert.equal(count('3011'), 0);
  });
});
