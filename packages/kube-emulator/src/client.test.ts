import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  ApiException,
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  Observable,
  PatchStrategy,
  type RequestContext,
  setHeaderOptions,
  type V1Pod,
  Watch,
} from '@kubernetes/client-node';
import type { Emulator } from './index.js';
import { startTestEmulator, waitFor } from './test-util.js';

function clientFor(emu: Emulator): { kc: KubeConfig; core: CoreV1Api; authz: AuthorizationV1Api } {
  const kc = new KubeConfig();
  kc.loadFromFile(emu.kubeconfigPath);
  return { kc, core: kc.makeApiClient(CoreV1Api), authz: kc.makeApiClient(AuthorizationV1Api) };
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiException, `expected ApiException, got ${String(err)}`);
    return { code: err.code, body: JSON.parse(String(err.body)) };
  }
  assert.fail('expected the call to fail');
}

const pod = (name: string, extra: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { name },
  spec: {
    terminationGracePeriodSeconds: 1,
    containers: [{ name: 'main', image: 'busybox:1.36', command: ['sleep', '3600'] }],
    ...extra,
  },
});

describe('kube-emulator with the real client-node', () => {
  let emu: Emulator;
  let cleanup: () => Promise<void>;
  let core: CoreV1Api;
  let authz: AuthorizationV1Api;
  let kc: KubeConfig;

  before(async () => {
    ({ emu, cleanup } = await startTestEmulator({ deny: [{ verb: 'patch', resource: 'nodes' }] }));
    ({ kc, core, authz } = clientFor(emu));
  });
  after(() => cleanup());

  test('creates, reads, lists, replaces and deletes a configmap', async () => {
    const created = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'crud', labels: { tier: 'a' } }, data: { k: 'v' } },
    });
    assert.ok(created.metadata?.uid);
    assert.ok(created.metadata?.creationTimestamp instanceof Date);
    const read = await core.readNamespacedConfigMap({ name: 'crud', namespace: 'default' });
    assert.equal(read.data?.k, 'v');
    read.data = { k: 'w' };
    const replaced = await core.replaceNamespacedConfigMap({
      name: 'crud',
      namespace: 'default',
      body: read,
    });
    assert.equal(replaced.data?.k, 'w');
    assert.ok(Number(replaced.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
    const list = await core.listNamespacedConfigMap({ namespace: 'default' });
    assert.ok(list.metadata?.resourceVersion);
    assert.ok(list.items.some((c) => c.metadata?.name === 'crud'));
    const status = await core.deleteNamespacedConfigMap({ name: 'crud', namespace: 'default' });
    assert.equal(status.status, 'Success');
    const gone = await apiError(core.readNamespacedConfigMap({ name: 'crud', namespace: 'default' }));
    assert.equal(gone.code, 404);
  });

  test('answers 404, 409 and 422 with Status bodies', async () => {
    const nf = await apiError(core.readNamespacedPod({ name: 'ghost', namespace: 'default' }));
    assert.equal(nf.code, 404);
    assert.equal(nf.body.reason, 'NotFound');
    assert.equal(nf.body.message, 'pods "ghost" not found');
    assert.deepEqual(nf.body.details, { name: 'ghost', kind: 'pods' });

    await core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'dup' }, stringData: { a: 'b' } },
    });
    const dup = await apiError(
      core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'dup' } } }),
    );
    assert.equal(dup.code, 409);
    assert.equal(dup.body.reason, 'AlreadyExists');
    assert.equal(dup.body.message, 'secrets "dup" already exists');

    const bad = await apiError(
      core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'Bad_Name' } } }),
    );
    assert.equal(bad.code, 422);
    assert.equal(bad.body.reason, 'Invalid');
    assert.match(
      String(bad.body.message),
      /^ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/,
    );
    const details = bad.body.details as { kind: string; causes: Array<{ reason: string; field: string }> };
    assert.equal(details.kind, 'ConfigMap');
    assert.equal(details.causes[0]?.reason, 'FieldValueInvalid');
    assert.equal(details.causes[0]?.field, 'metadata.name');

    const noContainers = await apiError(
      core.createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'empty' }, spec: { containers: [] } },
      }),
    );
    assert.equal(noContainers.code, 422);
    assert.match(String(noContainers.body.message), /spec.containers: Required value/);

    const pvc = await apiError(
      core.createNamespacedPersistentVolumeClaim({
        namespace: 'default',
        body: { metadata: { name: 'nospec' }, spec: {} },
      }),
    );
    assert.equal(pvc.code, 422);
  });

  test('requires the namespace to exist and the service account to exist', async () => {
    const ns = await apiError(
      core.createNamespacedConfigMap({ namespace: 'nowhere', body: { metadata: { name: 'x' } } }),
    );
    assert.equal(ns.code, 404);
    assert.equal(ns.body.message, 'namespaces "nowhere" not found');
    const sa = await apiError(
      core.createNamespacedPod({
        namespace: 'default',
        body: pod('sa-less', { serviceAccountName: 'robot' }),
      }),
    );
    assert.equal(sa.code, 403);
    assert.equal(
      sa.body.message,
      'pods "sa-less" is forbidden: error looking up service account default/robot: serviceaccount "robot" not found',
    );
  });

  test('generateName appends five characters from the Kubernetes alphabet', async () => {
    const a = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { generateName: 'gen-' } },
    });
    const b = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { generateName: 'gen-' } },
    });
    assert.match(a.metadata?.name ?? '', /^gen-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    assert.notEqual(a.metadata?.name, b.metadata?.name);
    const long = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { generateName: `${'x'.repeat(70)}` } },
    });
    assert.equal(long.metadata?.name?.length, 63);
  });

  test('label and field selectors filter lists; a bad field is a 400', async () => {
    for (const [name, labels] of [
      ['sel-a', { app: 'web', env: 'prod' }],
      ['sel-b', { app: 'web', env: 'dev' }],
      ['sel-c', { app: 'db' }],
    ] as const) {
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name, labels: { ...labels } } },
      });
    }
    const names = async (q: { labelSelector?: string; fieldSelector?: string }) =>
      (await core.listNamespacedConfigMap({ namespace: 'default', ...q })).items
        .map((c) => c.metadata?.name)
        .filter((n) => n?.startsWith('sel-'))
        .sort();
    assert.deepEqual(await names({ labelSelector: 'app=web' }), ['sel-a', 'sel-b']);
    assert.deepEqual(await names({ labelSelector: 'app=web,env!=prod' }), ['sel-b']);
    assert.deepEqual(await names({ labelSelector: 'env in (prod, dev)' }), ['sel-a', 'sel-b']);
    assert.deepEqual(await names({ labelSelector: 'env notin (prod),app' }), ['sel-b', 'sel-c']);
    assert.deepEqual(await names({ labelSelector: '!env' }), ['sel-c']);
    assert.deepEqual(await names({ fieldSelector: 'metadata.name=sel-c' }), ['sel-c']);
    assert.deepEqual(
      await names({ fieldSelector: 'metadata.name!=sel-c,metadata.namespace=default', labelSelector: 'app' }),
      ['sel-a', 'sel-b'],
    );
    const bad = await apiError(
      core.listNamespacedConfigMap({ namespace: 'default', fieldSelector: 'data.x=1' }),
    );
    assert.equal(bad.code, 400);
    assert.equal(bad.body.message, 'field label not supported: data.x');
    const badLabel = await apiError(
      core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'a in (b' }),
    );
    assert.equal(badLabel.code, 400);
    await core.createNamespacedPod({ namespace: 'default', body: pod('phase-pod') });
    const pending = await core.listNamespacedPod({
      namespace: 'default',
      fieldSelector: 'metadata.name=phase-pod,spec.restartPolicy=Always',
    });
    assert.equal(pending.items.length, 1);
    await core.deleteNamespacedPod({ name: 'phase-pod', namespace: 'default', gracePeriodSeconds: 0 });
  });

  test('rejects a stale resourceVersion with 409 Conflict and merge-patches', async () => {
    const cm = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'occ' }, data: { n: '1' } },
    });
    await core.replaceNamespacedConfigMap({
      name: 'occ',
      namespace: 'default',
      body: { ...cm, data: { n: '2' } },
    });
    const stale = await apiError(
      core.replaceNamespacedConfigMap({
        name: 'occ',
        namespace: 'default',
        body: { ...cm, data: { n: '3' } },
      }),
    );
    assert.equal(stale.code, 409);
    assert.equal(stale.body.reason, 'Conflict');
    assert.match(
      String(stale.body.message),
      /the object has been modified; please apply your changes to the latest version and try again/,
    );
    const patched = await core.patchNamespacedConfigMap(
      {
        name: 'occ',
        namespace: 'default',
        body: { metadata: { labels: { p: 'q' } }, data: { m: 'x', n: null } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    assert.deepEqual(patched.data, { m: 'x' });
    assert.equal(patched.metadata?.labels?.p, 'q');
    const jsonPatched = await core.patchNamespacedConfigMap({
      name: 'occ',
      namespace: 'default',
      body: [{ op: 'add', path: '/data/j', value: 'y' }],
    });
    assert.deepEqual(jsonPatched.data, { m: 'x', j: 'y' });
    const smp = await core
      .patchNamespacedPod(
        { name: 'nonexistent', namespace: 'default', body: {} },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      )
      .catch((e: unknown) => e);
    assert.ok(smp instanceof ApiException && smp.code === 404);
  });

  test('pod spec updates are restricted; status goes through /status', async () => {
    const p = await core.createNamespacedPod({ namespace: 'default', body: pod('immut') });
    assert.equal(p.status?.phase, 'Pending');
    assert.equal(p.status?.qosClass, 'BestEffort');
    const bad = await apiError(
      core.patchNamespacedPod(
        {
          name: 'immut',
          namespace: 'default',
          body: { spec: { containers: [{ name: 'main', command: ['sleep', '5'] }] } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
    );
    assert.equal(bad.code, 422);
    assert.match(String(bad.body.message), /pod updates may not change fields other than/);
    const img = await core.patchNamespacedPod(
      {
        name: 'immut',
        namespace: 'default',
        body: { spec: { containers: [{ name: 'main', image: 'busybox:1.37' }] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    assert.equal(img.spec?.containers[0]?.image, 'busybox:1.37');
    assert.deepEqual(img.spec?.containers[0]?.command, ['sleep', '3600']);
    const ignored = await core.patchNamespacedPod(
      { name: 'immut', namespace: 'default', body: { status: { message: 'via main resource' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    assert.notEqual(ignored.status?.message, 'via main resource');
    const viaStatus = await core.patchNamespacedPodStatus(
      { name: 'immut', namespace: 'default', body: { status: { message: 'via status' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    assert.equal(viaStatus.status?.message, 'via status');
    await core.deleteNamespacedPod({ name: 'immut', namespace: 'default', gracePeriodSeconds: 0 });
  });

  test('Watch delivers ADDED, MODIFIED and DELETED, and 410 for a too-old resourceVersion', async () => {
    const watch = new Watch(kc);
    const seen: string[] = [];
    let done: unknown = 'pending';
    const list = await core.listNamespacedConfigMap({ namespace: 'default' });
    const ctrl = await watch.watch(
      '/api/v1/namespaces/default/configmaps',
      { resourceVersion: list.metadata?.resourceVersion, labelSelector: 'w=1' },
      (type, obj: { metadata: { name: string } }) => seen.push(`${type} ${obj.metadata.name}`),
      (err) => {
        done = err;
      },
    );
    await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'watched', labels: { w: '1' } } },
    });
    await core.patchNamespacedConfigMap(
      { name: 'watched', namespace: 'default', body: { data: { a: 'b' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'unwatched' } } });
    await core.deleteNamespacedConfigMap({ name: 'watched', namespace: 'default' });
    await waitFor(() => seen.length >= 3, 'three watch events');
    assert.deepEqual(seen, ['ADDED watched', 'MODIFIED watched', 'DELETED watched']);
    ctrl.abort();
    await waitFor(() => done !== 'pending', 'the watch to end');

    const { emu: small, cleanup: stopSmall } = await startTestEmulator({ watchHistorySize: 3 });
    try {
      const c2 = clientFor(small);
      for (let i = 0; i < 5; i++)
        await c2.core.createNamespacedConfigMap({
          namespace: 'default',
          body: { metadata: { name: `h${i}` } },
        });
      const events: Array<{ type: string; obj: { code?: number; reason?: string } }> = [];
      let ended = false;
      await new Watch(c2.kc).watch(
        '/api/v1/namespaces/default/configmaps',
        { resourceVersion: '1' },
        (type, obj) => events.push({ type, obj }),
        () => {
          ended = true;
        },
      );
      await waitFor(() => ended, 'the expired watch to end');
      assert.equal(events.length, 1);
      assert.equal(events[0]?.type, 'ERROR');
      assert.equal(events[0]?.obj.code, 410);
      assert.equal(events[0]?.obj.reason, 'Expired');
    } finally {
      await stopSmall();
    }
  });

  test('a PVC keeps its protection finalizer while a pod uses it, then goes', async () => {
    const claim = await core.createNamespacedPersistentVolumeClaim({
      namespace: 'default',
      body: {
        metadata: { name: 'claim' },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      },
    });
    assert.deepEqual(claim.metadata?.finalizers, ['kubernetes.io/pvc-protection']);
    assert.equal(claim.spec?.storageClassName, 'standard');
    await core.createNamespacedPod({
      namespace: 'default',
      body: pod('user', {
        volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'claim' } }],
      }),
    });
    const deleting = await core.deleteNamespacedPersistentVolumeClaim({
      name: 'claim',
      namespace: 'default',
    });
    assert.ok(deleting.metadata?.deletionTimestamp);
    await new Promise((r) => setTimeout(r, 200));
    const still = await core.readNamespacedPersistentVolumeClaim({ name: 'claim', namespace: 'default' });
    assert.deepEqual(still.metadata?.finalizers, ['kubernetes.io/pvc-protection']);
    await core.deleteNamespacedPod({ name: 'user', namespace: 'default', gracePeriodSeconds: 0 });
    await waitFor(() => !emu.store.get('persistentvolumeclaims', 'default', 'claim'), 'the claim to go');
  });

  test('garbage collection deletes a configmap owned by a deleted pod; Orphan keeps it', async () => {
    const owner = await core.createNamespacedPod({ namespace: 'default', body: pod('owner') });
    const ref = { apiVersion: 'v1', kind: 'Pod', name: 'owner', uid: owner.metadata!.uid! };
    await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'owned', ownerReferences: [ref] } },
    });
    await core.deleteNamespacedPod({ name: 'owner', namespace: 'default', gracePeriodSeconds: 0 });
    await waitFor(() => !emu.store.get('configmaps', 'default', 'owned'), 'the dependent to be collected');

    const owner2 = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'owner2' } },
    });
    const ref2 = { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner2', uid: owner2.metadata!.uid! };
    await core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'orphan', ownerReferences: [ref2] } },
    });
    await core.deleteNamespacedConfigMap({
      name: 'owner2',
      namespace: 'default',
      propagationPolicy: 'Orphan',
    });
    await waitFor(() => !emu.store.get('configmaps', 'default', 'owner2'), 'the owner to go');
    const orphan = await core.readNamespacedSecret({ name: 'orphan', namespace: 'default' });
    assert.equal(orphan.metadata?.ownerReferences, undefined);

    const owner3 = await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'owner3' } },
    });
    const ref3 = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      name: 'owner3',
      uid: owner3.metadata!.uid!,
      blockOwnerDeletion: true,
    };
    await core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'fg', ownerReferences: [ref3] } },
    });
    await core.deleteNamespacedConfigMap({
      name: 'owner3',
      namespace: 'default',
      propagationPolicy: 'Foreground',
    });
    await waitFor(
      () => !emu.store.get('configmaps', 'default', 'owner3') && !emu.store.get('secrets', 'default', 'fg'),
      'foreground deletion',
    );
  });

  test('namespaces terminate: contents go, creates are forbidden, then the namespace goes', async () => {
    await core.createNamespace({ body: { metadata: { name: 'doomed' } } });
    await waitFor(() => emu.store.get('serviceaccounts', 'doomed', 'default'), 'the default service account');
    await core.createNamespacedConfigMap({
      namespace: 'doomed',
      body: { metadata: { name: 'inside' }, data: { a: 'b' } },
    });
    emu.store.update('configmaps', 'doomed', 'inside', (o) => ({
      ...o,
      metadata: { ...o.metadata, finalizers: ['test/hold'] },
    }));
    await core.deleteNamespace({ name: 'doomed' }).catch(() => undefined);
    const ns = await core.readNamespace({ name: 'doomed' });
    assert.equal(ns.status?.phase, 'Terminating');
    const forbidden = await apiError(
      core.createNamespacedConfigMap({ namespace: 'doomed', body: { metadata: { name: 'late' } } }),
    );
    assert.equal(forbidden.code, 403);
    assert.match(String(forbidden.body.message), /because it is being terminated/);
    await core.patchNamespacedConfigMap({
      name: 'inside',
      namespace: 'doomed',
      body: [{ op: 'remove', path: '/metadata/finalizers' }],
    });
    await waitFor(() => !emu.store.get('namespaces', undefined, 'doomed'), 'the namespace to go');
  });

  test('SelfSubjectAccessReview allows by default and honours deny rules', async () => {
    const review = (verb: string, resource: string, namespace = 'default') =>
      authz.createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { verb, resource, namespace } } },
      });
    assert.equal((await review('create', 'pods')).status?.allowed, true);
    const no = await review('patch', 'nodes', '');
    assert.equal(no.status?.allowed, false);
    assert.ok(no.status?.reason);
    emu.faults.deny({ verb: 'get', resource: 'secrets', namespace: 'default' });
    assert.equal((await review('get', 'secrets')).status?.allowed, false);
    assert.equal((await review('get', 'secrets', 'other')).status?.allowed, true);
    const denied = await apiError(core.readNamespacedSecret({ name: 'dup', namespace: 'default' }));
    assert.equal(denied.code, 403);
    emu.faults.clear();
  });

  test('fault injection: a 500, a connection reset and a hanging request', async () => {
    emu.faults.failNext({ verb: 'create', resource: 'pods', action: { status: 500, message: 'boom' } });
    const e500 = await apiError(core.createNamespacedPod({ namespace: 'default', body: pod('faulty') }));
    assert.equal(e500.code, 500);
    assert.equal(e500.body.message, 'boom');
    const ok = await core.createNamespacedPod({ namespace: 'default', body: pod('faulty') });
    assert.equal(ok.metadata?.name, 'faulty');
    await core.deleteNamespacedPod({ name: 'faulty', namespace: 'default', gracePeriodSeconds: 0 });

    emu.faults.failNext({ verb: 'get', resource: 'configmaps', name: 'x', action: { reset: true } });
    const reset = await core
      .readNamespacedConfigMap({ name: 'x', namespace: 'default' })
      .catch((e: unknown) => e);
    assert.ok(reset instanceof Error && !(reset instanceof ApiException), String(reset));

    emu.faults.failNext({ verb: 'list', resource: 'configmaps', action: { timeout: true } });
    const abortAfter = {
      middleware: [
        {
          pre: (ctx: RequestContext) => {
            ctx.setSignal(AbortSignal.timeout(300));
            return new Observable(Promise.resolve(ctx));
          },
          post: <T>(r: T) => new Observable(Promise.resolve(r)),
        },
      ],
      middlewareMergeStrategy: 'append' as const,
    };
    const hung = await core
      .listNamespacedConfigMap({ namespace: 'default' }, abortAfter)
      .catch((e: unknown) => e);
    assert.ok(hung instanceof Error, String(hung));
    assert.ok(emu.faults.count({ verb: 'list', resource: 'configmaps' }) >= 1);
    const fine = await core.listNamespacedConfigMap({ namespace: 'default' });
    assert.ok(fine.items.length > 0);
  });

  test('a pod is scheduled, reaches Running and deleting it waits for the kubelet', async () => {
    await core.createNamespacedPod({ namespace: 'default', body: pod('runner') });
    const running = await waitFor(async () => {
      const p = await core.readNamespacedPod({ name: 'runner', namespace: 'default' });
      return p.status?.phase === 'Running' ? p : undefined;
    }, 'the pod to run');
    assert.ok(running.spec?.nodeName);
    assert.equal(running.status?.containerStatuses?.[0]?.ready, true);
    const deleting = await core.deleteNamespacedPod({ name: 'runner', namespace: 'default' });
    assert.ok(deleting.metadata?.deletionTimestamp);
    assert.equal(deleting.metadata?.deletionGracePeriodSeconds, 1);
    await waitFor(() => !emu.store.get('pods', 'default', 'runner'), 'the kubelet to remove the pod');
  });

  test('objects, token and CA survive a restart with the same state directory', async () => {
    const { emu: first, dir } = await startTestEmulator();
    const c1 = clientFor(first);
    await c1.core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'kept' }, data: { v: '1' } },
    });
    const rv = (await c1.core.listNamespacedConfigMap({ namespace: 'default' })).metadata?.resourceVersion;
    await first.stop();
    const { emu: second, cleanup: stop2 } = await startTestEmulator({ stateDir: dir });
    try {
      assert.equal(second.token, first.token);
      assert.equal(second.caPem, first.caPem);
      assert.equal(second.url, first.url);
      const c2 = clientFor(second);
      const kept = await c2.core.readNamespacedConfigMap({ name: 'kept', namespace: 'default' });
      assert.equal(kept.data?.v, '1');
      const created = await c2.core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'after' } },
      });
      assert.ok(Number(created.metadata?.resourceVersion) > Number(rv));
    } finally {
      await stop2();
    }
  });
});
