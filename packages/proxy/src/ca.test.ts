import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { caBundlePem, loadOrCreateCa } from './ca.js';

describe('proxy CA', () => {
  test('is created once per home with a 0600 key in a 0700 directory, and reloaded after', async () => {
    const home = mkdtempSync(join(tmpdir(), 'clauderon-ca-'));
    try {
      const ca = await loadOrCreateCa(home);
      assert.equal(statSync(join(home, 'proxy', 'ca.key')).mode & 0o777, 0o600);
      assert.equal(statSync(join(home, 'proxy')).mode & 0o777, 0o700);
      const again = await loadOrCreateCa(home);
      assert.equal(again.certPem, ca.certPem);
      const root = new X509Certificate(ca.certPem);
      assert.equal(root.ca, true);
      // A leaf minted by the reloaded CA chains to the stored certificate.
      const leaf = new X509Certificate((await again.leafFor('api.anthropic.com')).certPem);
      assert.ok(leaf.verify(root.publicKey));
      assert.equal(leaf.subjectAltName, 'DNS:api.anthropic.com');
      assert.equal(leaf.ca, false);
      assert.ok(new Date(leaf.validTo).getTime() - Date.now() < 8 * 86400_000, 'leaves are short-lived');
      assert.ok(leaf.checkHost('api.anthropic.com'));
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('mints IP leaves with an IP SAN and caches leaves in memory', async () => {
    const home = mkdtempSync(join(tmpdir(), 'clauderon-ca-'));
    try {
      const ca = await loadOrCreateCa(home);
      const ip = new X509Certificate((await ca.leafFor('10.1.2.3')).certPem);
      assert.equal(ip.subjectAltName, 'IP Address:10.1.2.3');
      const [a, b] = await Promise.all([ca.leafFor('x.example.org'), ca.leafFor('X.example.org')]);
      assert.equal(a.certPem, b.certPem);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('refuses a CA key readable by others', async () => {
    const home = mkdtempSync(join(tmpdir(), 'clauderon-ca-'));
    try {
      await loadOrCreateCa(home);
      chmodSync(join(home, 'proxy', 'ca.key'), 0o644);
      await assert.rejects(loadOrCreateCa(home), (e: Error & { code?: string; hint?: string }) => {
        assert.equal(e.code, 'CLAUDERON_E_PROXY');
        assert.match(e.hint ?? '', /chmod 600/);
        return true;
      });
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('the bundle holds the system roots followed by our CA', async () => {
    const home = mkdtempSync(join(tmpdir(), 'clauderon-ca-'));
    try {
      const ca = await loadOrCreateCa(home);
      const system = join(home, 'system.crt');
      writeFileSync(system, '-----BEGIN CERTIFICATE-----\nSYSTEM\n-----END CERTIFICATE-----');
      const bundle = caBundlePem(ca, system);
      assert.ok(bundle.startsWith('-----BEGIN CERTIFICATE-----\nSYSTEM\n-----END CERTIFICATE-----\n'));
      assert.ok(bundle.endsWith(ca.certPem));
      assert.equal(caBundlePem(ca, join(home, 'missing.crt')), ca.certPem);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
