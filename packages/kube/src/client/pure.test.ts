import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { defaultConfig } from '@clauderon/config';
import { ApiException } from '@kubernetes/client-node';
import { mapKubeError } from './errors.js';
import { exitCodeFromStatus } from './exec.js';
import { loadKubeConfig } from './kubeconfig.js';
import { describePod, podProblem } from './watch.js';

const kubeconfigYaml = (contexts: string[], current: string) => `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: http://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: t
contexts:
${contexts.map((c) => `- name: ${c}\n  context:\n    cluster: c\n    user: u\n`).join('')}current-context: ${current}
`;

describe('loadKubeConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kube-kc-'));
  test.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config');
  writeFileSync(file, kubeconfigYaml(['a', 'b'], 'a'));
  const k = (over: { kubeconfig?: string; context?: string }) =>
    defaultConfig({ kubernetes: over }).kubernetes;

  test('reads the configured file and selects the configured context', () => {
    const kc = loadKubeConfig(k({ kubeconfig: file, context: 'b' }), { env: {}, home: dir });
    assert.equal(kc.getCurrentContext(), 'b');
    assert.equal(kc.getCurrentCluster()!.server, 'http://127.0.0.1:1');
  });

  test('falls back to $KUBECONFIG, then ~/.kube/config', () => {
    assert.equal(
      loadKubeConfig(k({}), { env: { KUBECONFIG: file }, home: '/nonexistent' }).getCurrentContext(),
      'a',
    );
    const home = mkdtempSync(join(dir, 'home-'));
    assert.throws(() => loadKubeConfig(k({}), { env: {}, home }), {
      code: 'CLAUDERON_E_KUBECONFIG',
      message: new RegExp(`${home}/.kube/config`),
    });
  });

  test('an unknown context names the known ones', () => {
    assert.throws(
      () => loadKubeConfig(k({ kubeconfig: file, context: 'zz' }), { env: {} }),
      (e: Error & { hint?: string }) => {
        assert.equal((e as { code?: string }).code, 'CLAUDERON_E_KUBECONFIG');
        assert.match(e.hint!, /a, b/);
        return true;
      },
    );
  });

  test('an unreadable file is a KUBECONFIG error', () => {
    const bad = join(dir, 'bad');
    writeFileSync(bad, 'clusters: [ {');
    assert.throws(() => loadKubeConfig(k({ kubeconfig: bad }), { env: {} }), {
      code: 'CLAUDERON_E_KUBECONFIG',
    });
  });
});

describe('mapKubeError', () => {
  const api = (code: number, status: object) => new ApiException(code, 'x', JSON.stringify(status), {});
  test('403 is FORBIDDEN with the server message and a hint', () => {
    const e = mapKubeError(
      api(403, { message: 'pods is forbidden: User "bob" cannot create', reason: 'Forbidden' }),
      {
        action: 'create pod p',
        namespace: 'ns',
      },
    );
    assert.equal(e.code, 'CLAUDERON_E_FORBIDDEN');
    assert.match(e.message, /User "bob" cannot create/);
    assert.ok(e.hint);
  });
  test('404 on the namespace is NAMESPACE_MISSING with the command that fixes it', () => {
    const e = mapKubeError(
      api(404, {
        message: 'namespaces "nope" not found',
        reason: 'NotFound',
        details: { name: 'nope', kind: 'namespaces' },
      }),
      { action: 'create pod p', namespace: 'nope' },
    );
    assert.equal(e.code, 'CLAUDERON_E_NAMESPACE_MISSING');
    assert.equal(e.hint, 'kubectl create namespace nope');
  });
  test('connection refused is CLUSTER_UNREACHABLE; anything else KUBE_API with the server message', () => {
    const refused = new TypeError('fetch failed', {
      cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
    });
    assert.equal(mapKubeError(refused, { action: 'x' }).code, 'CLAUDERON_E_CLUSTER_UNREACHABLE');
    const e = mapKubeError(api(500, { message: 'etcd is sad', reason: 'InternalError' }), {
      action: 'list pods',
    });
    assert.equal(e.code, 'CLAUDERON_E_KUBE_API');
    assert.match(e.message, /etcd is sad/);
  });
});

describe('exec status and pod problems', () => {
  test('the exit code comes from the ExitCode cause of the channel-3 Status', () => {
    assert.equal(exitCodeFromStatus({ status: 'Success' }, 'x'), 0);
    assert.equal(
      exitCodeFromStatus(
        {
          status: 'Failure',
          reason: 'NonZeroExitCode',
          details: { causes: [{ reason: 'ExitCode', message: '7' }] },
        },
        'x',
      ),
      7,
    );
    assert.throws(
      () => exitCodeFromStatus({ status: 'Failure', reason: 'InternalError', message: 'boom' }, 'x'),
      /boom/,
    );
  });

  test('fatal waiting reasons of init and app containers are problems; a pending pod is not', () => {
    assert.equal(podProblem({ status: { phase: 'Pending' } }), undefined);
    const pull = podProblem({
      status: {
        phase: 'Pending',
        initContainerStatuses: [
          {
            name: 'workspace',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "x"' } },
          },
        ],
      },
    });
    assert.deepEqual(pull, {
      key: 'IMAGE_PULL',
      container: 'workspace',
      reason: 'ImagePullBackOff',
      message: 'Back-off pulling image "x"',
    });
    const cfg = podProblem({
      status: {
        containerStatuses: [
          {
            name: 'agent',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'CreateContainerConfigError' } },
          },
        ],
      },
    });
    assert.equal(cfg?.key, 'POD_FAILED');
    assert.equal(podProblem({ status: { phase: 'Failed', reason: 'Evicted' } })?.reason, 'Evicted');
    assert.match(
      describePod({
        status: {
          phase: 'Pending',
          conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }],
        },
      }),
      /Unschedulable/,
    );
  });
});
