import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { podProxyEnv } from './pod-env.js';
import { createTokenRegistry } from './tokens.js';

describe('token registry', () => {
  test('issues tokens that survive a restart, stored as hashes in a 0600 file, and revokes them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clauderon-tokens-'));
    try {
      const file = join(dir, 'state', 'tokens.json');
      const reg = createTokenRegistry(file);
      const t = reg.issue('alpha');
      assert.match(t, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.ok(!readFileSync(file, 'utf8').includes(t), 'the token itself is not stored');
      assert.equal(reg.verify('alpha', t), true);
      assert.equal(reg.verify('alpha', `${t}x`), false);
      assert.equal(reg.verify('beta', t), false);

      const restarted = createTokenRegistry(file);
      assert.equal(restarted.verify('alpha', t), true);
      assert.deepEqual(
        restarted.list().map((e) => e.session),
        ['alpha'],
      );
      const revoked: string[] = [];
      restarted.onRevoke((s) => revoked.push(s));
      restarted.revoke('alpha');
      assert.deepEqual(revoked, ['alpha']);
      assert.equal(restarted.verify('alpha', t), false);
      assert.equal(createTokenRegistry(file).verify('alpha', t), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('podProxyEnv', () => {
  test('puts the session credential in every proxy variable and the CA path in every trust variable', () => {
    const env = podProxyEnv({
      proxyUrl: 'http://host.docker.internal:8899',
      session: 'my-session',
      token: 'tok_en-1',
      caPath: '/etc/clauderon/ca-bundle.crt',
      noProxy: ['localhost', '.svc'],
    });
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) {
      assert.equal(env[k], 'http://my-session:tok_en-1@host.docker.internal:8899');
    }
    assert.equal(env.NO_PROXY, 'localhost,.svc');
    assert.equal(env.no_proxy, 'localhost,.svc');
    for (const k of [
      'NODE_EXTRA_CA_CERTS',
      'SSL_CERT_FILE',
      'REQUESTS_CA_BUNDLE',
      'GIT_SSL_CAINFO',
      'CURL_CA_BUNDLE',
    ]) {
      assert.equal(env[k], '/etc/clauderon/ca-bundle.crt');
    }
  });
});
