import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SessionStore } from '@clauderon/daemon';
import { cliEnv, runCli, startDaemon, tempHome } from './support/cli.js';

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});
function home(): string {
  const h = tempHome();
  cleanups.push(h.cleanup);
  return h.home;
}

describe('CLI without a daemon', () => {
  test('says how to start the daemon and exits 4', async () => {
    const r = await runCli(['list'], { home: home() });
    assert.equal(r.code, 4);
    assert.match(r.stderr, /no clauderon daemon is answering on .*clauderon\.sock/);
    assert.match(r.stderr, /clauderon daemon --enable-kubernetes-backend/);
  });

  test('--version prints the version without a daemon', async () => {
    const r = await runCli(['--version'], { home: home() });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  test('an unknown command exits 2 with usage help', async () => {
    const r = await runCli(['frobnicate'], { home: home() });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command/);
  });

  test('config paths and config show work without a daemon', async () => {
    const h = home();
    writeFileSync(join(h, 'config.toml'), '[kubernetes]\nnamespace = "team-a"\n');
    const paths = await runCli(['config', 'paths', '-o', 'json'], { home: h });
    assert.equal(paths.code, 0);
    assert.equal(JSON.parse(paths.stdout).socket, join(h, 'clauderon.sock'));
    const show = await runCli(['config', 'show'], { home: h, env: { CLAUDERON_KUBERNETES_IMAGE: 'img:2' } });
    assert.equal(show.code, 0);
    assert.match(show.stdout, /namespace = "team-a" {2}# file/);
    assert.match(show.stdout, /image = "img:2" {2}# env:CLAUDERON_KUBERNETES_IMAGE/);
  });

  test('an invalid config file is reported with every problem and exit code 3', async () => {
    const h = home();
    writeFileSync(
      join(h, 'config.toml'),
      '[kubernetes]\nnamespce = "x"\n[features]\nkubernetes_backend = 1\n',
    );
    const r = await runCli(['config', 'show'], { home: h });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /kubernetes\.namespce: unknown key/);
    assert.match(r.stderr, /features\.kubernetes_backend: expected a boolean/);
  });
});

describe('daemon on its socket', () => {
  test('round trip: CLI → socket → daemon, with 0700 directory and 0600 socket', async () => {
    const h = home();
    const d = await startDaemon({ home: h });
    cleanups.push(() => d.kill());
    assert.equal(statSync(h).mode & 0o777, 0o700);
    const st = lstatSync(d.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    const r = await runCli(['list', '-o', 'json'], { home: h });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { sessions: [] });
    const status = await runCli(['status', 'nope'], { home: h });
    assert.equal(status.code, 6);
    assert.match(status.stderr, /session "nope" not found/);
    assert.equal(await d.stop(), 0);
    assert.equal(existsSync(d.socket), false, 'socket removed on shutdown');
  });

  test('a wide-open CLAUDERON_HOME is tightened to 0700', async () => {
    const h = home();
    mkdirSync(h, { recursive: true, mode: 0o755 });
    const d = await startDaemon({ home: h });
    cleanups.push(() => d.kill());
    assert.equal(statSync(h).mode & 0o777, 0o700);
    await d.stop();
  });

  test('a second daemon on the same home is refused while the first answers', async () => {
    const h = home();
    const first = await startDaemon({ home: h });
    cleanups.push(() => first.kill());
    const second = await runCli(['daemon'], { home: h, timeoutMs: 20_000 });
    assert.equal(second.code, 4);
    assert.match(second.stderr, /already running/);
    const r = await runCli(['list'], { home: h });
    assert.equal(r.code, 0, 'the first daemon still answers');
    await first.stop();
  });

  test('a stale socket file is removed and the daemon starts', async () => {
    const h = home();
    const sock = join(h, 'clauderon.sock');
    // A process that listens on the socket and dies without cleaning up leaves a stale socket file.
    const holder = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`,
    ]);
    await new Promise((r) => holder.stdout.once('data', r));
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    assert.ok(existsSync(sock), 'stale socket file present');
    const d = await startDaemon({ home: h });
    cleanups.push(() => d.kill());
    assert.equal((await runCli(['list'], { home: h })).code, 0);
    await d.stop();
  });

  test('SIGKILLed daemon leaves a stale socket that the next daemon replaces', async () => {
    const h = home();
    const d = await startDaemon({ home: h });
    await d.kill();
    assert.ok(existsSync(d.socket));
    const d2 = await startDaemon({ home: h });
    cleanups.push(() => d2.kill());
    assert.equal((await runCli(['list'], { home: h })).code, 0);
    await d2.stop();
  });

  test('structured logs are written under $CLAUDERON_HOME/logs', async () => {
    const h = home();
    const d = await startDaemon({ home: h });
    cleanups.push(() => d.kill());
    await d.stop();
    const log = readFileSync(join(h, 'logs', 'daemon.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(log.some((l) => l.msg === 'daemon started'));
    assert.ok(log.some((l) => l.msg === 'daemon stopped'));
  });
});

describe('kubernetes backend gate', () => {
  async function health(h: string, args: string[], env: Record<string, string> = {}) {
    const d = await startDaemon({ home: h, args, env });
    cleanups.push(() => d.kill());
    const r = await runCli(['create', '--repo', h, '--prompt', 'hello', '--no-attach'], { home: h });
    await d.stop();
    return r;
  }

  test('off by default: create --backend kubernetes is refused naming all three ways, exit 5', async () => {
    const h = home();
    const r = await health(h, []);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /--enable-kubernetes-backend/);
    assert.match(r.stderr, /CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND=1/);
    assert.match(r.stderr, /kubernetes_backend = true/);
    assert.equal(existsSync(join(h, 'worktrees')), false, 'nothing created');
    assert.equal(existsSync(join(h, 'sessions')), false, 'nothing stored');
  });

  test('explicitly off in the file and env stays off', async () => {
    const h = home();
    writeFileSync(join(h, 'config.toml'), '[features]\nkubernetes_backend = false\n');
    const r = await health(h, [], { CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND: '0' });
    assert.equal(r.code, 5);
  });

  test('the gate is reported by the daemon for flag, env and file', async () => {
    for (const [args, env, file] of [
      [['--enable-kubernetes-backend'], {}, ''],
      [[], { CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND: '1' }, ''],
      [[], {}, '[features]\nkubernetes_backend = true\n'],
    ] as const) {
      const h = home();
      if (file) writeFileSync(join(h, 'config.toml'), file);
      // An unreachable kubeconfig: the gate must turn the backend on without the daemon failing to start.
      const kube = join(h, 'kubeconfig');
      writeFileSync(
        kube,
        JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }),
      );
      const d = await startDaemon({ home: h, args: [...args], env: { ...env, KUBECONFIG: kube } });
      cleanups.push(() => d.kill());
      assert.match(
        d.output(),
        /kubernetes backend: enabled/,
        `enabled via ${JSON.stringify({ args, env, file })}`,
      );
      await d.stop();
    }
  });
});

describe('session store', () => {
  test('survives a restart and ignores a torn temporary file from a crash', async () => {
    const h = home();
    const dir = join(h, 'sessions');
    const spec = {
      name: 's1',
      backend: 'kubernetes' as const,
      namespace: 'ns',
      repo: '/r',
      repoName: 'r',
      branch: 'clauderon/s1',
      baseCommit: 'abc',
      prompt: 'p',
      image: 'i',
      pullPolicy: 'IfNotPresent',
      resources: {},
      storageSize: '1Gi',
      includeUncommitted: true,
      createdAt: new Date().toISOString(),
    };
    await new SessionStore(dir).put({ spec, state: 'ready', updatedAt: '' });
    writeFileSync(join(dir, 's2.json.123.456.tmp'), '{"spec": {"name": "s2"');
    const reopened = new SessionStore(dir);
    assert.deepEqual(
      reopened.list().map((s) => s.spec.name),
      ['s1'],
    );
    assert.equal(reopened.get('s1')?.state, 'ready');
    assert.equal(existsSync(join(dir, 's2.json.123.456.tmp')), false);
    void cliEnv;
  });
});

describe('CLI output', () => {
  test('large JSON output piped to another process arrives whole (the CLI flushes before exiting)', async () => {
    const h = home();
    // config show -o json of a config with a big pod template is a large document on stdout.
    const labels: Record<string, string> = {};
    for (let i = 0; i < 20000; i++) labels[`k${i}`] = 'v'.repeat(20);
    const toml = `[kubernetes.pod_template.metadata.labels]\n${Object.entries(labels)
      .map(([k, v]) => `${k} = "${v}"`)
      .join('\n')}\n`;
    writeFileSync(join(h, 'config.toml'), toml);
    const r = await runCli(['config', 'show', '-o', 'json'], { home: h });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.length > 500_000, `output is large (${r.stdout.length} bytes)`);
    const parsed = JSON.parse(r.stdout);
    assert.equal(Object.keys(parsed.config.kubernetes.pod_template.metadata.labels).length, 20000);
  });
});
