import assert from 'node:assert/strict';
import { test } from 'node:test';

// Guards the project's own runtime: client-node 2.x (through undici 8) crashes at import on Node < 22.19.
test('runs on the project-local Node >= 22.19', () => {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  assert.ok(major > 22 || (major === 22 && minor >= 19), `running on ${process.version}`);
});

test('@kubernetes/client-node imports and builds an API client', async () => {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: false }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const api = kc.makeApiClient(k8s.CoreV1Api);
  assert.equal(typeof api.listNamespacedPod, 'function');
});
