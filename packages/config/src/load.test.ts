import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ClauderonError } from '@clauderon/protocol';
import { parse } from 'smol-toml';
import { loadConfig, renderEffectiveConfig, renderExampleConfig } from './index.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function home(toml?: string): string {
  const d = mkdtempSync(join(tmpdir(), 'clauderon-config-'));
  dirs.push(d);
  if (toml !== undefined) writeFileSync(join(d, 'config.toml'), toml);
  return d;
}
function configError(fn: () => unknown): ClauderonError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ClauderonError, `expected ClauderonError, got ${e}`);
    assert.equal(e.code, 'CLAUDERON_E_CONFIG_INVALID');
    return e;
  }
  assert.fail('expected a configuration error');
}

describe('config precedence', () => {
  test('uses defaults when there is no file, env or flag', () => {
    const { config, sources, fileFound } = loadConfig({ env: { CLAUDERON_HOME: home() } });
    assert.equal(fileFound, false);
    assert.equal(config.features.kubernetes_backend, false);
    assert.equal(config.kubernetes.namespace, 'clauderon');
    assert.equal(config.kubernetes.timeouts.pod_start, 600_000);
    assert.equal(sources.get('kubernetes.namespace'), 'default');
  });

  test('flag beats env beats file beats default', () => {
    const h = home('[kubernetes]\nnamespace = "from-file"\nimage = "file-image"\nstorage_size = "20Gi"\n');
    const env = {
      CLAUDERON_HOME: h,
      CLAUDERON_KUBERNETES_NAMESPACE: 'from-env',
      CLAUDERON_KUBERNETES_IMAGE: 'env-image',
    };
    const { config, sources } = loadConfig({ env, flags: { 'kubernetes.namespace': 'from-flag' } });
    assert.equal(config.kubernetes.namespace, 'from-flag');
    assert.equal(sources.get('kubernetes.namespace'), 'flag');
    assert.equal(config.kubernetes.image, 'env-image');
    assert.equal(sources.get('kubernetes.image'), 'env:CLAUDERON_KUBERNETES_IMAGE');
    assert.equal(config.kubernetes.storage_size, '20Gi');
    assert.equal(sources.get('kubernetes.storage_size'), 'file');
  });

  test('the kubernetes backend gate works from file, env and flag, and flag > env > file', () => {
    const on = '[features]\nkubernetes_backend = true\n';
    const off = '[features]\nkubernetes_backend = false\n';
    assert.equal(loadConfig({ env: { CLAUDERON_HOME: home(on) } }).config.features.kubernetes_backend, true);
    assert.equal(
      loadConfig({ env: { CLAUDERON_HOME: home(off) } }).config.features.kubernetes_backend,
      false,
    );
    const envOn = { CLAUDERON_HOME: home(off), CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND: '1' };
    assert.equal(loadConfig({ env: envOn }).config.features.kubernetes_backend, true);
    const envOff = { CLAUDERON_HOME: home(on), CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND: '0' };
    assert.equal(loadConfig({ env: envOff }).config.features.kubernetes_backend, false);
    const flagOn = loadConfig({ env: envOff, flags: { 'features.kubernetes_backend': true } });
    assert.equal(flagOn.config.features.kubernetes_backend, true);
    assert.equal(flagOn.sources.get('features.kubernetes_backend'), 'flag');
  });

  test('the configuration is frozen', () => {
    const { config } = loadConfig({ env: { CLAUDERON_HOME: home() } });
    assert.throws(() => {
      (config.kubernetes as { namespace: string }).namespace = 'x';
    });
  });
});

describe('config errors', () => {
  test('an unknown key is named by its dotted path and line, with a suggestion', () => {
    const e = configError(() =>
      loadConfig({ env: { CLAUDERON_HOME: home('[kubernetes]\nimage = "x"\nnamespce = "y"\n') } }),
    );
    assert.match(e.message, /kubernetes\.namespce: unknown key \(did you mean "kubernetes\.namespace"\?\)/);
    assert.match(e.message, /config\.toml:3\)/);
  });

  test('a wrong type is named by its dotted path and line', () => {
    const e = configError(() =>
      loadConfig({ env: { CLAUDERON_HOME: home('\n[features]\nkubernetes_backend = "yes"\n') } }),
    );
    assert.match(e.message, /features\.kubernetes_backend: expected a boolean/);
    assert.match(e.message, /:3\)/);
  });

  test('bad TOML reports the line and column', () => {
    const e = configError(() =>
      loadConfig({ env: { CLAUDERON_HOME: home('[kubernetes]\nnamespace = \n') } }),
    );
    assert.match(e.message, /config\.toml:2:\d+: invalid TOML/);
    assert.equal((e.details as { line: number }).line, 2);
  });

  test('every problem is reported at once', () => {
    const toml =
      '[kubernetes]\nbogus = 1\nstorage_size = "8g"\n[daemon]\nlog_level = "loud"\nshutdown_timeout = "soon"\n[nope]\n';
    const e = configError(() => loadConfig({ env: { CLAUDERON_HOME: home(toml) } }));
    assert.match(e.message, /5 problems/);
    assert.match(e.message, /kubernetes\.bogus: unknown key/);
    assert.match(e.message, /kubernetes\.storage_size: .*Docker-style.*8Gi/);
    assert.match(e.message, /daemon\.log_level: must be one of/);
    assert.match(e.message, /daemon\.shutdown_timeout: expected a duration/);
    assert.match(e.message, /nope: unknown key/);
  });

  test('a bad environment value names the variable', () => {
    const e = configError(() =>
      loadConfig({ env: { CLAUDERON_HOME: home(), CLAUDERON_KUBERNETES_TIMEOUTS_SYNC: 'forever' } }),
    );
    assert.match(
      e.message,
      /kubernetes\.timeouts\.sync \(from CLAUDERON_KUBERNETES_TIMEOUTS_SYNC\): expected a duration/,
    );
  });

  test('proxy rules are validated field by field', () => {
    const toml =
      '[[proxy.rules]]\nhost = "a.example"\nheader = "x"\nvalue = "no placeholder"\nsecret_env = "A"\nextra = 1\n';
    const e = configError(() => loadConfig({ env: { CLAUDERON_HOME: home(toml) } }));
    assert.match(e.message, /proxy\.rules\[0\]\.extra: unknown key/);
    assert.match(e.message, /proxy\.rules\[0\]\.value: must contain \{secret\}/);
  });
});

describe('config.example.toml', () => {
  const example = readFileSync(new URL('../../../config.example.toml', import.meta.url), 'utf8');

  test('matches the schema it is generated from (run npm run gen:example-config)', () => {
    assert.equal(example, renderExampleConfig());
  });

  test('loads without error and yields exactly the defaults', () => {
    const h = home(example);
    const fromExample = loadConfig({ env: { CLAUDERON_HOME: h } });
    const defaults = loadConfig({ env: { CLAUDERON_HOME: home() } });
    assert.deepEqual(fromExample.config, defaults.config);
    const doc = parse(example) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc).sort(), [
      'agent',
      'attach',
      'daemon',
      'features',
      'kubernetes',
      'proxy',
    ]);
  });

  test('config show prints each value with its source', () => {
    const h = home('[kubernetes]\nnamespace = "team"\n');
    const text = renderEffectiveConfig(
      loadConfig({ env: { CLAUDERON_HOME: h, CLAUDERON_KUBERNETES_IMAGE: 'img:1' } }),
    );
    assert.match(text, /namespace = "team" {2}# file/);
    assert.match(text, /image = "img:1" {2}# env:CLAUDERON_KUBERNETES_IMAGE/);
    assert.match(text, /pod_start = "10m" {2}# default/);
  });
});
