import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { defaultConfig } from '@clauderon/config';
import { Annotations, type ClauderonError, Labels, type SessionSpec } from '@clauderon/protocol';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  AGENT_CONTAINER,
  buildCaConfigMap,
  buildPod,
  buildProxySecret,
  buildWorkspaceClaim,
  CA_FILE_PATH,
  INIT_CONTAINER,
  mergeTemplate,
  ownerRefTo,
  planCreate,
  SYNC_MARKER_PATH,
  sessionLabels,
  sessionObjectNames,
  specFromAnnotations,
} from './index.js';

const spec = (over: Partial<SessionSpec> = {}): SessionSpec => ({
  name: 'fix-login',
  backend: 'kubernetes',
  namespace: 'clauderon',
  repo: '/home/u/src/app',
  repoName: 'app',
  branch: 'clauderon/fix-login',
  baseCommit: 'a'.repeat(40),
  prompt: 'fix the login bug',
  image: 'clauderon-agent:0.1.0',
  pullPolicy: 'IfNotPresent',
  resources: { cpuRequest: '500m', memoryRequest: '1Gi' },
  storageSize: '10Gi',
  includeUncommitted: true,
  createdAt: '2026-11-22T05:00:00.000Z',
  ...over,
});

const podOpts = {
  proxySecretName: 'clauderon-fix-login-proxy',
  caConfigMapName: 'clauderon-fix-login-ca',
  proxyEnvNames: ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'],
  plainEnv: { ANTHROPIC_API_KEY: 'clauderon-placeholder' },
  agentCommand: ['claude', '--dangerously-skip-permissions', 'fix the login bug'],
};

/** What the kubelet does to command strings: `$$` is a literal `$` (see escapeExpansion). */
const kubeletExpand = (s: string) => s.replace(/\$\$/g, '$');

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function container(pod: V1Pod, name: string): V1Container {
  const c = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].find((x) => x.name === name);
  assert.ok(c, `container ${name}`);
  return c;
}

describe('names and labels', () => {
  test('derives every object name from the session name, all within 63 characters', () => {
    assert.deepEqual(sessionObjectNames('fix-login'), {
      pod: 'clauderon-fix-login',
      claim: 'clauderon-fix-login-workspace',
      caConfigMap: 'clauderon-fix-login-ca',
      proxySecret: 'clauderon-fix-login-proxy',
    });
    const longest = sessionObjectNames('a'.repeat(40));
    for (const n of Object.values(longest)) assert.ok(n.length <= 63, n);
  });

  test('refuses a name whose derived names would exceed 63 characters', () => {
    assert.throws(() => sessionObjectNames('a'.repeat(60)), { code: 'CLAUDERON_E_INVALID_NAME' });
  });

  test('labels name the app, the manager, the session and the component', () => {
    assert.deepEqual(sessionLabels('s1', 'agent'), {
      'app.kubernetes.io/name': 'clauderon',
      'app.kubernetes.io/managed-by': 'clauderon',
      'app.kubernetes.io/instance': 's1',
      'app.kubernetes.io/component': 'agent',
      'clauderon.dev/session': 's1',
    });
  });
});

describe('buildWorkspaceClaim', () => {
  test('builds the whole claim with size, access mode and no class (cluster default) by default', () => {
    const s = spec();
    assert.deepEqual(buildWorkspaceClaim(s, defaultConfig()), {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'clauderon-fix-login-workspace',
        namespace: 'clauderon',
        labels: sessionLabels('fix-login', 'workspace'),
        annotations: { [Annotations.spec]: JSON.stringify(s), [Annotations.createdAt]: s.createdAt },
      },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } } },
    });
  });

  test('uses the session storage class, else the configured one', () => {
    const cfg = defaultConfig({ kubernetes: { storage_class: 'fast', access_mode: 'ReadWriteOncePod' } });
    const c1 = buildWorkspaceClaim(spec(), cfg);
    assert.equal(c1.spec!.storageClassName, 'fast');
    assert.deepEqual(c1.spec!.accessModes, ['ReadWriteOncePod']);
    assert.equal(buildWorkspaceClaim(spec({ storageClass: 'slow' }), cfg).spec!.storageClassName, 'slow');
  });

  test('the spec annotation round-trips', () => {
    const s = spec({ prompt: 'quote " and newline\n' });
    assert.deepEqual(specFromAnnotations(buildWorkspaceClaim(s, defaultConfig()).metadata!.annotations), s);
  });
});

describe('buildCaConfigMap and buildProxySecret', () => {
  test('the ConfigMap holds only the certificate bundle', () => {
    const cm = buildCaConfigMap(spec(), PEM);
    assert.deepEqual(cm.data, { 'ca.crt': PEM });
    assert.equal(cm.metadata!.name, 'clauderon-fix-login-ca');
    assert.equal(cm.metadata!.labels![Labels.component], 'ca');
    assert.throws(() => buildCaConfigMap(spec(), `${PEM}-----BEGIN EC PRIVATE KEY-----\nx\n`));
  });

  test('the Secret holds the proxy env, base64-encoded', () => {
    const sec = buildProxySecret(spec(), { HTTPS_PROXY: 'http://s:tok@10.0.0.1:8899' });
    assert.equal(sec.metadata!.name, 'clauderon-fix-login-proxy');
    assert.equal(sec.type, 'Opaque');
    assert.equal(Buffer.from(sec.data!.HTTPS_PROXY!, 'base64').toString(), 'http://s:tok@10.0.0.1:8899');
    assert.equal(sec.metadata!.annotations![Annotations.spec], JSON.stringify(spec()));
  });
});

describe('buildPod', () => {
  test('satisfies the restricted Pod Security Standard, field by field, on every container', () => {
    const pod = buildPod(spec(), defaultConfig(), podOpts);
    const ps = pod.spec!.securityContext!;
    assert.equal(ps.runAsNonRoot, true);
    assert.equal(ps.runAsUser, 1000);
    assert.equal(ps.runAsGroup, 1000);
    assert.equal(ps.fsGroup, 1000);
    assert.deepEqual(ps.seccompProfile, { type: 'RuntimeDefault' });
    assert.equal(pod.spec!.hostNetwork, undefined);
    assert.equal(pod.spec!.hostPID, undefined);
    assert.equal(pod.spec!.hostIPC, undefined);
    const all = [...pod.spec!.initContainers!, ...pod.spec!.containers];
    assert.deepEqual(
      all.map((c) => c.name),
      [INIT_CONTAINER, AGENT_CONTAINER],
    );
    for (const c of all) {
      const sc = c.securityContext!;
      assert.equal(sc.allowPrivilegeEscalation, false, c.name);
      assert.equal(sc.privileged, false, c.name);
      assert.deepEqual(sc.capabilities, { drop: ['ALL'] }, c.name);
      assert.equal(sc.runAsNonRoot, true, c.name);
      assert.equal(sc.readOnlyRootFilesystem, true, c.name);
      assert.deepEqual(sc.seccompProfile, { type: 'RuntimeDefault' }, c.name);
      assert.equal(c.ports, undefined);
      // read-only root: /tmp must be a writable emptyDir
      assert.ok(
        c.volumeMounts!.some((m) => m.mountPath === '/tmp' && m.name === 'tmp'),
        c.name,
      );
    }
    for (const v of pod.spec!.volumes!) assert.equal(v.hostPath, undefined);
    assert.deepEqual(
      pod.spec!.volumes!.find((v) => v.name === 'tmp'),
      { name: 'tmp', emptyDir: {} },
    );
  });

  test('wires the claim, the CA and the proxy env without any secret value in the spec', () => {
    const pod = buildPod(spec(), defaultConfig(), podOpts);
    assert.equal(pod.metadata!.name, 'clauderon-fix-login');
    assert.equal(pod.metadata!.annotations!['kubectl.kubernetes.io/default-container'], 'agent');
    assert.equal(pod.metadata!.labels![Labels.session], 'fix-login');
    assert.equal(pod.spec!.restartPolicy, 'Never');
    assert.equal(pod.spec!.automountServiceAccountToken, false);
    assert.equal(pod.spec!.serviceAccountName, undefined);
    assert.equal(pod.spec!.imagePullSecrets, undefined);
    assert.ok(pod.spec!.terminationGracePeriodSeconds! <= 15);
    const agent = container(pod, 'agent');
    const env = Object.fromEntries(agent.env!.map((e) => [e.name, e]));
    for (const n of [
      'NODE_EXTRA_CA_CERTS',
      'SSL_CERT_FILE',
      'REQUESTS_CA_BUNDLE',
      'GIT_SSL_CAINFO',
      'CURL_CA_BUNDLE',
    ]) {
      assert.deepEqual(env[n], { name: n, value: CA_FILE_PATH });
    }
    for (const n of podOpts.proxyEnvNames) {
      assert.deepEqual(env[n], {
        name: n,
        valueFrom: { secretKeyRef: { name: 'clauderon-fix-login-proxy', key: n } },
      });
    }
    assert.equal(env.HOME!.value, '/workspace/.home');
    assert.equal(env.TMUX_TMPDIR!.value, '/tmp');
    assert.equal(env.CLAUDERON_REPO_DIR!.value, '/workspace/app');
    assert.equal(env.ANTHROPIC_API_KEY!.value, 'clauderon-placeholder');
    assert.equal(env.NO_PROXY!.value, 'localhost,127.0.0.1,::1,.svc,.cluster.local');
    assert.deepEqual(
      agent.volumeMounts!.find((m) => m.mountPath === '/etc/clauderon/ca'),
      { name: 'ca', mountPath: '/etc/clauderon/ca', readOnly: true },
    );
    assert.deepEqual(
      pod.spec!.volumes!.find((v) => v.name === 'workspace'),
      { name: 'workspace', persistentVolumeClaim: { claimName: 'clauderon-fix-login-workspace' } },
    );
    assert.deepEqual(
      pod.spec!.volumes!.find((v) => v.name === 'ca'),
      { name: 'ca', configMap: { name: 'clauderon-fix-login-ca', defaultMode: 0o444 } },
    );
    assert.deepEqual(agent.command!.slice(-3).map(kubeletExpand), podOpts.agentCommand);
    assert.equal(agent.image, 'clauderon-agent:0.1.0');
    assert.equal(agent.imagePullPolicy, 'IfNotPresent');
    const init = container(pod, 'workspace');
    assert.equal(init.image, agent.image);
    assert.ok(init.command!.join(' ').includes(SYNC_MARKER_PATH));
    assert.ok(!init.env!.some((e) => e.valueFrom), 'the init container gets no proxy credential');
  });

  test('resources come from the session, empty ones are left out', () => {
    const p1 = buildPod(spec(), defaultConfig(), podOpts);
    assert.deepEqual(container(p1, 'agent').resources, { requests: { cpu: '500m', memory: '1Gi' } });
    const p2 = buildPod(spec({ resources: { memoryLimit: '8Gi' } }), defaultConfig(), podOpts);
    assert.deepEqual(container(p2, 'agent').resources, { limits: { memory: '8Gi' } });
    const p3 = buildPod(spec({ resources: { cpuRequest: '' } }), defaultConfig(), podOpts);
    assert.equal(container(p3, 'agent').resources, undefined);
    assert.equal(container(p3, 'workspace').resources, undefined);
  });

  test('service account, token automount and pull secrets follow the config', () => {
    const cfg = defaultConfig({
      kubernetes: {
        service_account: 'agents',
        automount_service_account_token: true,
        image_pull_secrets: ['regcred'],
      },
    });
    const pod = buildPod(spec(), cfg, podOpts);
    assert.equal(pod.spec!.serviceAccountName, 'agents');
    assert.equal(pod.spec!.automountServiceAccountToken, true);
    assert.deepEqual(pod.spec!.imagePullSecrets, [{ name: 'regcred' }]);
  });

  test('without the proxy there is no CA mount, no Secret env and no CA env', () => {
    const pod = buildPod(spec(), defaultConfig(), {
      proxyEnvNames: [],
      plainEnv: {},
      agentCommand: ['claude'],
    });
    const agent = container(pod, 'agent');
    assert.ok(
      !agent.env!.some((e) => e.valueFrom || e.name === 'NODE_EXTRA_CA_CERTS' || e.name === 'NO_PROXY'),
    );
    assert.ok(!pod.spec!.volumes!.some((v) => v.name === 'ca'));
  });

  test('pod_template merges in, containers by name, while our security fields win', () => {
    const cfg = defaultConfig({
      kubernetes: {
        pod_template: {
          metadata: { labels: { team: 'x', [Labels.session]: 'hijack' }, annotations: { a: 'b' } },
          spec: {
            nodeSelector: { pool: 'agents' },
            tolerations: [{ key: 'k', operator: 'Exists' }],
            hostNetwork: true,
            restartPolicy: 'Always',
            securityContext: { runAsUser: 0, supplementalGroups: [5] },
            containers: [
              {
                name: 'agent',
                image: 'evil',
                resources: { limits: { memory: '2Gi' } },
                securityContext: {
                  privileged: true,
                  allowPrivilegeEscalation: true,
                  capabilities: { add: ['NET_ADMIN'] },
                },
                env: [
                  { name: 'EXTRA', value: '1' },
                  { name: 'HOME', value: '/root' },
                ],
              },
              { name: 'sidecar', image: 'busybox' },
            ],
          },
        },
      },
    });
    const pod = buildPod(spec(), cfg, podOpts);
    assert.equal(pod.metadata!.labels!.team, 'x');
    assert.equal(pod.metadata!.labels![Labels.session], 'fix-login');
    assert.equal(pod.metadata!.annotations!.a, 'b');
    assert.deepEqual(pod.spec!.nodeSelector, { pool: 'agents' });
    assert.deepEqual(pod.spec!.tolerations, [{ key: 'k', operator: 'Exists' }]);
    assert.equal(pod.spec!.hostNetwork, undefined);
    assert.equal(pod.spec!.restartPolicy, 'Never');
    assert.equal(pod.spec!.securityContext!.runAsUser, 1000);
    assert.deepEqual(pod.spec!.securityContext!.supplementalGroups, [5]);
    const agent = container(pod, 'agent');
    assert.equal(agent.image, 'clauderon-agent:0.1.0');
    assert.deepEqual(agent.resources, {
      requests: { cpu: '500m', memory: '1Gi' },
      limits: { memory: '2Gi' },
    });
    assert.equal(agent.securityContext!.privileged, false);
    assert.equal(agent.securityContext!.allowPrivilegeEscalation, false);
    assert.deepEqual(agent.securityContext!.capabilities, { drop: ['ALL'] });
    const env = Object.fromEntries(agent.env!.map((e) => [e.name, e.value]));
    assert.equal(env.EXTRA, '1');
    assert.equal(env.HOME, '/workspace/.home');
    const sidecar = container(pod, 'sidecar');
    assert.equal(sidecar.securityContext!.readOnlyRootFilesystem, true);
    assert.equal(pod.spec!.containers.length, 2);
  });

  test('a prompt mentioning $(VAR) is not expanded by Kubernetes', () => {
    const pod = buildPod(spec(), defaultConfig(), {
      ...podOpts,
      agentCommand: ['claude', 'print $(HOME) and $$'],
    });
    assert.equal(container(pod, 'agent').command!.at(-1), 'print $$(HOME) and $$$$');
  });

  test('refuses a prompt argument longer than the kernel accepts', () => {
    assert.throws(
      () => buildPod(spec(), defaultConfig(), { ...podOpts, agentCommand: ['claude', 'x'.repeat(200_000)] }),
      (e: ClauderonError) => e.code === 'CLAUDERON_E_INVALID_INPUT',
    );
  });

  test('the agent script runs the command in the repository under tmux and exits with its code', async (t) => {
    // Run the real script with a fake tmux that runs the session command in the foreground, and the pod's
    // paths rewritten to a temporary directory: checks argument passing (quotes, newlines) and the exit code.
    const dir = mkdtempSync(join(tmpdir(), 'kube-pod-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pod = buildPod(spec(), defaultConfig(), {
      ...podOpts,
      agentCommand: ['sh', '-c', 'printf "%s|%s" "$1" "$(pwd)" > "$OUT"; exit 7', 'x', 'it\'s "quoted"\n\n'],
    });
    const cmd = container(pod, 'agent').command!;
    const script = kubeletExpand(cmd[2]!)
      .replaceAll('/workspace', `${dir}/ws`)
      .replaceAll('/tmp/clauderon', `${dir}/tmp`);
    execFileSync('mkdir', ['-p', `${dir}/ws/app`, `${dir}/bin`]);
    const fakeTmux = `#!/bin/sh
case "$*" in
  *new-session*) for last; do :; done; sh -c "$last"; echo done > "${dir}/ran"; exit 0;;
  *has-session*) exit 1;;
esac
exit 0
`;
    execFileSync('sh', ['-c', `cat > ${dir}/bin/tmux && chmod +x ${dir}/bin/tmux`], { input: fakeTmux });
    let code = 0;
    try {
      execFileSync('sh', ['-c', script, ...cmd.slice(3).map(kubeletExpand)], {
        env: {
          PATH: `${dir}/bin:${process.env.PATH}`,
          HOME: `${dir}/ws/.home`,
          CLAUDERON_REPO_DIR: `${dir}/ws/app`,
          OUT: `${dir}/out`,
        },
        stdio: 'pipe',
      });
    } catch (e) {
      code = (e as { status: number }).status;
    }
    assert.equal(code, 7);
    assert.equal(readFileSync(`${dir}/out`, 'utf8'), `it's "quoted"\n\n|${dir}/ws/app`);
    assert.equal(readFileSync(`${dir}/ws/.clauderon/agent-exit`, 'utf8'), '7\n');
  });
});

const hasTmux = (() => {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('the agent container script with real tmux', { skip: !hasTmux && 'tmux is not installed' }, () => {
  test('lives as long as the tmux session and exits with the agent exit code', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kube-tmux-'));
    t.after(() => {
      try {
        execFileSync('tmux', ['kill-server'], {
          env: { ...process.env, TMUX_TMPDIR: `${dir}/tmux` },
          stdio: 'ignore',
        });
      } catch {
        // already gone: the normal case
      }
      rmSync(dir, { recursive: true, force: true });
    });
    const pod = buildPod(spec(), defaultConfig(), {
      ...podOpts,
      agentCommand: ['sh', '-c', 'printf "%s" "$1" > "$OUT"; sleep 1; exit 3', 'x', 'multi word prompt'],
    });
    const cmd = container(pod, 'agent').command!;
    const script = kubeletExpand(cmd[2]!)
      .replaceAll('/workspace', `${dir}/ws`)
      .replaceAll('/tmp/clauderon', `${dir}/tmp`);
    execFileSync('mkdir', ['-p', `${dir}/ws/app`, `${dir}/tmux`]);
    const { spawn } = await import('node:child_process');
    const child = spawn('sh', ['-c', script, ...cmd.slice(3).map(kubeletExpand)], {
      env: {
        PATH: process.env.PATH,
        HOME: `${dir}/ws/.home`,
        TMUX_TMPDIR: `${dir}/tmux`,
        TERM: 'xterm-256color',
        CLAUDERON_REPO_DIR: `${dir}/ws/app`,
        OUT: `${dir}/out`,
      },
      stdio: 'ignore',
    });
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 3);
    assert.equal(readFileSync(`${dir}/out`, 'utf8'), 'multi word prompt');
    assert.equal(readFileSync(`${dir}/ws/.clauderon/agent-exit`, 'utf8'), '3\n');
  });
});

describe('planCreate and ownerRefTo', () => {
  test('creates claim, CA, Secret, then the pod that refers to them', () => {
    const plan = planCreate(spec(), defaultConfig(), {
      agentCommand: ['claude', 'hi'],
      plainEnv: { ANTHROPIC_API_KEY: 'placeholder' },
      proxy: { caBundlePem: PEM, env: { HTTPS_PROXY: 'http://fix-login:s3cret@proxy:8899' } },
    });
    assert.deepEqual(
      plan.map((p) => [p.step, p.kind, p.name]),
      [
        ['claim', 'PersistentVolumeClaim', 'clauderon-fix-login-workspace'],
        ['ca', 'ConfigMap', 'clauderon-fix-login-ca'],
        ['secret', 'Secret', 'clauderon-fix-login-proxy'],
        ['pod', 'Pod', 'clauderon-fix-login'],
      ],
    );
    for (const p of plan) assert.equal(p.body.metadata!.name, p.name);
    const pod = plan[3]!.body;
    assert.ok(!JSON.stringify(pod).includes('s3cret'), 'no secret value in the pod');
    assert.throws(() =>
      planCreate(spec(), defaultConfig(), {
        agentCommand: ['claude'],
        plainEnv: { LEAK: 'http://fix-login:s3cret@proxy:8899' },
        proxy: { caBundlePem: PEM, env: { HTTPS_PROXY: 'http://fix-login:s3cret@proxy:8899' } },
      }),
    );
  });

  test('without the proxy only the claim and the pod are planned', () => {
    const plan = planCreate(spec(), defaultConfig(), { agentCommand: ['claude'] });
    assert.deepEqual(
      plan.map((p) => p.kind),
      ['PersistentVolumeClaim', 'Pod'],
    );
  });

  test('ownerRefTo points at the created pod', () => {
    assert.deepEqual(ownerRefTo({ metadata: { name: 'p', uid: 'u1' } }), {
      apiVersion: 'v1',
      kind: 'Pod',
      name: 'p',
      uid: 'u1',
      controller: false,
      blockOwnerDeletion: false,
    });
    assert.throws(() => ownerRefTo({ metadata: { name: 'p' } }));
  });
});

describe('mergeTemplate', () => {
  test('merges named arrays by name, replaces others, null removes', () => {
    const out = mergeTemplate(
      { a: [{ name: 'x', v: 1 }], b: [1, 2], c: { d: 1, e: 2 } },
      { a: [{ name: 'x', w: 2 }, { name: 'y' }], b: [3], c: { e: null } },
    );
    assert.deepEqual(out, { a: [{ name: 'x', v: 1, w: 2 }, { name: 'y' }], b: [3], c: { d: 1 } });
  });
});
