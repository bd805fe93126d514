import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Resource } from '@clauderon/kube-emulator';
import { makeRepo, startCluster, type TestCluster } from './support/cluster.js';
import { NODE_CONNECT_CLIENT, PodExec } from './support/proxy-pod.js';
import { podReadableDir, serveGit, startUpstream, type Upstream } from './support/proxy-upstream.js';

const run = promisify(execFile);

// The real credentials live only in the daemon's environment (and one in $CLAUDERON_HOME/secrets/).
const ANTHROPIC_KEY = 'sk-ant-test-REAL-anthropic-key-7f3a91';
const GH_TOKEN = 'ghp_REAL_github_token_4c2e8d10';
const CUSTOM_SECRET = 'custom-REAL-file-secret-93b1';
const REAL_SECRETS = [ANTHROPIC_KEY, GH_TOKEN, CUSTOM_SECRET];

/** Shell: P = host:port of the proxy from the pod's HTTPS_PROXY, without the session credentials. */
const PROXY_ADDR = `P="\${HTTPS_PROXY##*@}"`;

const ALL_RESOURCES: Resource[] = [
  'namespaces',
  'pods',
  'persistentvolumeclaims',
  'persistentvolumes',
  'configmaps',
  'secrets',
  'serviceaccounts',
  'events',
  'storageclasses',
  'nodes',
];

/** Every form a secret could be stored in: as is, base64 (Secret data), base64 of the git Basic credential. */
function secretForms(s: string): string[] {
  return [s, Buffer.from(s).toString('base64'), Buffer.from(`x-access-token:${s}`).toString('base64')];
}

function assertNoRealSecret(where: string, text: string): void {
  for (const s of REAL_SECRETS) {
    for (const form of secretForms(s)) assert.ok(!text.includes(form), `${where} contains a real secret`);
  }
}

function readTree(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...readTree(path));
    else if (st.isFile() && st.size < 8 * 1024 * 1024) out.push({ path, text: readFileSync(path, 'latin1') });
  }
  return out;
}

/** The proxy environment a session's Secret holds, decoded. */
function proxySecretEnv(c: TestCluster, session: string): Record<string, string> {
  const secret = c.emu.store
    .list('secrets', 'clauderon')
    .find((s) => s.metadata.name === `clauderon-${session}-proxy`) as
    | { data?: Record<string, string> }
    | undefined;
  assert.ok(secret?.data, `Secret clauderon-${session}-proxy exists`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret.data)) env[k] = Buffer.from(v, 'base64').toString('utf8');
  return env;
}

/** Waits until `check` holds (polling), for state other processes write asynchronously. */
async function eventually<T>(what: string, get: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface AuditLine {
  session: string | null;
  method: string;
  host: string;
  path: string;
  status: number;
  injected: boolean;
  tunnelled: boolean;
}

function auditLines(c: TestCluster): AuditLine[] {
  let text = '';
  try {
    text = readFileSync(join(c.home, 'logs', 'proxy-audit.jsonl'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as AuditLine);
}

/** A gate an upstream handler waits on until the test opens it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('credential proxy end to end (pod processes → proxy → real HTTPS upstreams)', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  let pods: PodExec;
  let upstream: Upstream;
  let foreign: Upstream;
  let files: ReturnType<typeof podReadableDir>;
  let scratch: string;
  let sseGate = gate();

  const handler = (req: IncomingMessage, res: ServerResponse, sni: string) => {
    const json = (status: number, body: unknown) => {
      req.resume();
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const path = new URL(req.url ?? '/', 'https://upstream.invalid').pathname;
    if (sni === 'api.anthropic.com' && path === '/v1/messages') {
      return json(req.headers['x-api-key'] === ANTHROPIC_KEY ? 200 : 401, { type: 'message', id: 'msg_e2e' });
    }
    if (sni === 'api.anthropic.com' && path === '/v1/stream') {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('event: message_start\ndata: {"n":1}\n\n');
      void sseGate.promise.then(() => res.end('event: message_stop\ndata: {"n":2}\n\n'));
      return;
    }
    if (sni === 'api.github.com' && path === '/user') {
      return json(req.headers.authorization === `Bearer ${GH_TOKEN}` ? 200 : 401, { login: 'octo' });
    }
    if (sni === 'github.com') {
      const expected = `Basic ${Buffer.from(`x-access-token:${GH_TOKEN}`).toString('base64')}`;
      if (req.headers.authorization !== expected) return json(401, { message: 'Bad credentials' });
      return serveGit(join(scratch, 'srv'), req, res);
    }
    if (sni === 'custom.example.test') {
      return json(req.headers['x-custom-auth'] === `Token ${CUSTOM_SECRET}` ? 200 : 401, { custom: true });
    }
    json(404, { error: 'no such route' });
  };

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'clauderon-proxy-e2e-'));
    // The repository github.com serves.
    const bare = join(scratch, 'srv', 'octo', 'demo.git');
    mkdirSync(join(scratch, 'srv', 'octo'), { recursive: true });
    await run('git', ['init', '-q', '--bare', '-b', 'main', bare]);
    const seed = join(scratch, 'seed');
    await run('git', ['init', '-q', '-b', 'main', seed]);
    writeFileSync(join(seed, 'README'), 'served by the stand-in\n');
    const gitEnv = {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@t',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@t',
    };
    await run('git', ['-C', seed, 'add', '.'], { env: gitEnv });
    await run('git', ['-C', seed, 'commit', '-qm', 'seed commit'], { env: gitEnv });
    await run('git', ['-C', seed, 'push', '-q', bare, 'main'], { env: gitEnv });

    upstream = await startUpstream(handler);
    // A host without a rule, with a CA the proxy's bundle does not hold: only a tunnel can reach it verified.
    foreign = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('foreign ok\n');
    });
    files = podReadableDir();
    files.put('foreign-ca.pem', foreign.caPem);
    const upstreamCa = join(scratch, 'upstream-ca.pem');
    writeFileSync(upstreamCa, upstream.caPem);
    const at = `127.0.0.1:${upstream.port}`;
    c = await startCluster({
      configToml: [
        '[proxy]',
        `upstream_ca_file = "${upstreamCa}"`,
        `host_overrides = { "api.anthropic.com" = "${at}", "api.github.com" = "${at}", "github.com" = "${at}", "custom.example.test" = "${at}", "foreign.example.test" = "127.0.0.1:${foreign.port}" }`,
        '[[proxy.rules]]',
        'host = "custom.example.test"',
        'header = "X-Custom-Auth"',
        'value = "Token {secret}"',
        'secret_file = "custom_token"',
        '',
      ].join('\n'),
      env: { ANTHROPIC_API_KEY: ANTHROPIC_KEY, GH_TOKEN },
    });
    // A secret file, read by the proxy when a request needs it (0600, as the proxy insists).
    mkdirSync(join(c.home, 'secrets'), { mode: 0o700 });
    writeFileSync(join(c.home, 'secrets', 'custom_token'), `${CUSTOM_SECRET}\n`, { mode: 0o600 });
    chmodSync(join(c.home, 'secrets', 'custom_token'), 0o600);
    pods = new PodExec(c.env.KUBECONFIG!);
    repo = await makeRepo();
    for (const name of ['px-a', 'px-b']) {
      const r = await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', name, '--no-attach']);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  after(async () => {
    sseGate.open();
    await c?.stop();
    await upstream?.stop();
    await foreign?.stop();
    pods?.cleanup();
    files?.cleanup();
    repo?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test('the pod holds placeholders, the proxy URL from its Secret and the CA bundle path; no real credential', async () => {
    const r = await pods.run('px-a', ['env']);
    assert.equal(r.code, 0, r.stderr);
    const env = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.match(env.ANTHROPIC_API_KEY ?? '', /^clauderon-placeholder/);
    assert.match(env.GH_TOKEN ?? '', /^clauderon-placeholder/);
    assert.equal(env.HTTPS_PROXY, proxySecretEnv(c, 'px-a').HTTPS_PROXY);
    assert.match(env.HTTPS_PROXY ?? '', /^http:\/\/px-a:[^@]+@127\.0\.0\.1:\d+$/);
    for (const k of ['CURL_CA_BUNDLE', 'NODE_EXTRA_CA_CERTS', 'GIT_SSL_CAINFO', 'SSL_CERT_FILE']) {
      assert.equal(env[k], '/etc/clauderon/ca/ca.crt', k);
    }
    const ca = await pods.run('px-a', ['cat', '/etc/clauderon/ca/ca.crt']);
    assert.ok(ca.stdout.includes(readFileSync(join(c.home, 'proxy', 'ca.crt'), 'utf8').trim()));
    assertNoRealSecret('pod env', r.stdout);
  });

  test('curl reaches api.anthropic.com through the proxy; the upstream gets the real key, the pod sent a placeholder', async () => {
    const before = upstream.seen.length;
    const r = await pods.sh(
      'px-a',
      'curl -sS -w " %{http_code}" https://api.anthropic.com/v1/messages?beta=1 -H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" -d "{}"',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"id":"msg_e2e".* 200$/);
    const got = upstream.seen.slice(before);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.sni, 'api.anthropic.com');
    assert.equal(got[0]!.headers.host, 'api.anthropic.com');
    assert.equal(got[0]!.headers['x-api-key'], ANTHROPIC_KEY);
    const entry = await eventually('the audit entry', () =>
      auditLines(c).find((l) => l.method === 'POST' && l.path === '/v1/messages' && l.session === 'px-a'),
    );
    assert.deepEqual(
      { host: entry.host, status: entry.status, injected: entry.injected, tunnelled: entry.tunnelled },
      { host: 'api.anthropic.com', status: 200, injected: true, tunnelled: false },
    );
  });

  test('curl reaches api.github.com with the real token', async () => {
    const before = upstream.seen.length;
    const r = await pods.sh(
      'px-a',
      'curl -sS -w " %{http_code}" https://api.github.com/user -H "authorization: token $GH_TOKEN"',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"login":"octo".* 200$/);
    assert.equal(upstream.seen.at(-1)!.headers.authorization, `Bearer ${GH_TOKEN}`);
    assert.equal(upstream.seen.length, before + 1);
  });

  test('node (system Node 20, its own CONNECT from HTTPS_PROXY, trust from NODE_EXTRA_CA_CERTS) gets through', async () => {
    const r = await pods.run('px-a', [
      'node',
      '-e',
      NODE_CONNECT_CLIENT,
      'api.anthropic.com',
      'POST',
      '/v1/messages',
      'x-api-key',
      'ANTHROPIC_API_KEY',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^200 .*"msg_e2e"/);
    assert.equal(upstream.seen.at(-1)!.headers['x-api-key'], ANTHROPIC_KEY);
    // Without the extra CA the interception certificate is not trusted: the trust really comes from the env.
    const bare = await pods.run('px-a', [
      'env',
      '-u',
      'NODE_EXTRA_CA_CERTS',
      'node',
      '-e',
      NODE_CONNECT_CLIENT,
      'api.anthropic.com',
      'GET',
      '/v1/messages',
    ]);
    assert.equal(bare.code, 3, bare.stdout + bare.stderr);
    assert.match(bare.stderr, /tls: .*(certificate|issuer)/i);
  });

  test('git ls-remote and clone github.com through the proxy with only the pod environment', async () => {
    const before = upstream.seen.length;
    const r = await pods.sh(
      'px-a',
      'export GIT_TERMINAL_PROMPT=0; git ls-remote https://github.com/octo/demo.git && ' +
        'git clone -q https://github.com/octo/demo.git "$TMPDIR/demo" && git -C "$TMPDIR/demo" log --format=%s',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[0-9a-f]{40}\s+refs\/heads\/main$/m);
    assert.match(r.stdout, /^seed commit$/m);
    const git = upstream.seen.slice(before);
    assert.ok(git.length >= 2);
    for (const s of git) {
      assert.equal(s.sni, 'github.com');
      assert.equal(
        s.headers.authorization,
        `Basic ${Buffer.from(`x-access-token:${GH_TOKEN}`).toString('base64')}`,
      );
    }
  });

  test('a user rule whose secret is a $CLAUDERON_HOME/secrets file is injected', async () => {
    const r = await pods.sh(
      'px-a',
      'curl -sS -w " %{http_code}" https://custom.example.test/x -H "x-custom-auth: forged"',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, / 200$/);
    assert.equal(upstream.seen.at(-1)!.headers['x-custom-auth'], `Token ${CUSTOM_SECRET}`);
  });

  test('SSE arrives incrementally: the first event reaches the pod client before the upstream sends the rest', async () => {
    sseGate = gate();
    const child = pods.spawn('px-a', [
      'sh',
      '-c',
      'curl -sS -N https://api.anthropic.com/v1/stream -H "x-api-key: $ANTHROPIC_API_KEY"',
    ]);
    child.stdin.end();
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      await eventually(
        'the first event in the pod',
        () => (out.includes('"n":1') ? true : undefined),
        30_000,
      );
      assert.ok(!out.includes('message_stop'), 'the upstream has not sent the second event yet');
      sseGate.open();
      assert.equal(await exited, 0, err);
      assert.match(out, /event: message_start\ndata: \{"n":1\}\n\nevent: message_stop\ndata: \{"n":2\}/);
    } finally {
      sseGate.open();
      child.kill();
    }
  });

  test('a host without a rule is tunnelled: the client sees the upstream’s own certificate and nothing is injected', async () => {
    const caFile = join(files.dir, 'foreign-ca.pem');
    const before = foreign.seen.length;
    const r = await pods.sh(
      'px-a',
      `curl -sS --cacert ${caFile} https://foreign.example.test/hello -H "x-api-key: $ANTHROPIC_API_KEY"`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'foreign ok\n');
    const seen = foreign.seen.slice(before);
    assert.equal(seen.length, 1);
    assert.match(String(seen[0]!.headers['x-api-key']), /^clauderon-placeholder/);
    assert.equal(seen[0]!.headers.authorization, undefined);
    // The pod's bundle (system roots + our CA) does not vouch for it: no certificate of ours was minted.
    const mitm = await pods.sh('px-a', 'curl -sS https://foreign.example.test/hello');
    assert.equal(mitm.code, 60, mitm.stdout + mitm.stderr);
    const entry = await eventually('the tunnel audit entry', () =>
      auditLines(c).find((l) => l.host === 'foreign.example.test' && l.tunnelled),
    );
    assert.deepEqual(
      { session: entry.session, method: entry.method, injected: entry.injected, status: entry.status },
      { session: 'px-a', method: 'CONNECT', injected: false, status: 200 },
    );
  });

  test('407 without the proxy credentials, and with another session’s token', async () => {
    const noAuth = await pods.sh(
      'px-a',
      `${PROXY_ADDR}; unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy; ` +
        'curl -sS -o /dev/null -w "%{http_connect}" -x "http://$P" https://api.anthropic.com/v1/messages',
    );
    assert.equal(noAuth.code, 56, noAuth.stderr);
    assert.equal(noAuth.stdout, '407');
    const plain = await pods.sh(
      'px-a',
      `${PROXY_ADDR}; curl -sS -o /dev/null -w "%{http_code}" -x "http://$P" http://plain.example.test/`,
    );
    assert.equal(plain.stdout, '407', plain.stderr);

    const tokenB = new URL(proxySecretEnv(c, 'px-b').HTTPS_PROXY!).password;
    const tokenA = new URL(proxySecretEnv(c, 'px-a').HTTPS_PROXY!).password;
    assert.notEqual(tokenA, tokenB);
    for (const [session, token] of [
      ['px-a', tokenB],
      ['px-b', tokenA],
    ] as const) {
      const r = await pods.sh(
        'px-a',
        `${PROXY_ADDR}; curl -sS -o /dev/null -w "%{http_connect}" -x "http://${session}:${token}@$P" https://api.anthropic.com/v1/messages`,
      );
      assert.equal(r.code, 56, `${session}: ${r.stderr}`);
      assert.equal(r.stdout, '407');
    }
    assert.ok(auditLines(c).some((l) => l.status === 407 && l.session === 'px-a'));
  });

  test('no real secret anywhere in the cluster, the pod environment, the process environment or the home', async () => {
    // Every object of every kind the emulator holds.
    for (const r of ALL_RESOURCES) {
      for (const o of c.emu.store.list(r)) {
        assertNoRealSecret(`${r}/${o.metadata.name}`, JSON.stringify(o));
        const data = (o as { data?: Record<string, string> }).data;
        if (r === 'secrets' && data) {
          for (const v of Object.values(data)) {
            assertNoRealSecret(`${r}/${o.metadata.name} (decoded)`, Buffer.from(v, 'base64').toString());
          }
        }
      }
    }
    // The per-session proxy token is expected in the session Secret, and in no other object (the pod reads it
    // with secretKeyRef, so not even the pod spec holds it).
    for (const session of ['px-a', 'px-b']) {
      const secretName = `clauderon-${session}-proxy`;
      const token = new URL(proxySecretEnv(c, session).HTTPS_PROXY!).password;
      assert.ok(token.length >= 32);
      for (const r of ALL_RESOURCES) {
        for (const o of c.emu.store.list(r)) {
          if (r === 'secrets' && o.metadata.name === secretName) continue;
          const text = JSON.stringify(o);
          assert.ok(!text.includes(token), `${r}/${o.metadata.name} holds the proxy token of ${session}`);
        }
      }
    }
    // The environment of exec'd processes and of the container's own processes.
    for (const session of ['px-a', 'px-b']) {
      const env = await pods.run(session, ['env']);
      assertNoRealSecret(`${session} exec env`, env.stdout);
      const own = await pods.sh(
        session,
        `for p in /proc/[0-9]*; do e=$(tr '\\0' '\\n' < $p/environ 2>/dev/null) || continue; ` +
          `case "$e" in *"CLAUDERON_SESSION=${session}"*) echo "== $p"; echo "$e";; esac; done`,
      );
      assert.equal(own.code, 0, own.stderr);
      assert.match(own.stdout, /^== \/proc\/\d+/m, 'found the container processes');
      assert.match(own.stdout, /ANTHROPIC_API_KEY=clauderon-placeholder/);
      assertNoRealSecret(`${session} /proc/*/environ`, own.stdout);
    }
    // What the emulator persists (objects.json) and the kubelet's pod data (volumes, logs) in its state dir.
    const stateFiles = readTree(dirname(c.emu.kubeconfigPath));
    assert.ok(
      stateFiles.some((f) => f.path.endsWith('objects.json') && f.text.includes('clauderon-px-a-proxy')),
      'the persisted objects were scanned',
    );
    for (const f of stateFiles) assertNoRealSecret(f.path, f.text);
    // The daemon's log, and every file in its home but the secrets directory.
    assertNoRealSecret('daemon output', c.daemon.output());
    for (const f of readTree(c.home)) {
      if (f.path.startsWith(join(c.home, 'secrets'))) continue;
      assertNoRealSecret(f.path, f.text);
    }
  });

  test('the audit log records each request without credentials, query strings or proxy tokens', () => {
    const text = readFileSync(join(c.home, 'logs', 'proxy-audit.jsonl'), 'utf8');
    assertNoRealSecret('audit log', text);
    for (const s of ['px-a', 'px-b']) {
      assert.ok(!text.includes(new URL(proxySecretEnv(c, s).HTTPS_PROXY!).password), 'no proxy token');
    }
    assert.ok(!text.includes('beta=1'), 'no query string');
    const lines = auditLines(c);
    for (const [host, path] of [
      ['api.github.com', '/user'],
      ['github.com', '/octo/demo.git/info/refs'],
      ['custom.example.test', '/x'],
      ['api.anthropic.com', '/v1/stream'],
    ]) {
      assert.ok(
        lines.some(
          (l) => l.session === 'px-a' && l.host === host && l.path === path && l.injected && l.status === 200,
        ),
        `${host}${path} audited as injected`,
      );
    }
  });

  test('delete revokes the session’s proxy URL: its open stream is cut and new requests get 407 (it worked just before)', async () => {
    const url = proxySecretEnv(c, 'px-b').HTTPS_PROXY!;
    const caFile = join(c.home, 'proxy', 'ca.crt');
    const curl = () =>
      run(
        'curl',
        [
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{http_connect} %{http_code}',
          '--cacert',
          caFile,
          '-x',
          url,
          'https://api.anthropic.com/v1/messages',
        ],
        {
          env: { PATH: process.env.PATH },
        },
      ).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
      );
    const beforeDelete = await curl();
    assert.deepEqual(beforeDelete, { code: 0, stdout: '200 200' });
    // A stream the session holds open when it is deleted is cut, not left to run on the revoked token.
    sseGate = gate();
    const stream = spawn(
      'curl',
      ['-sS', '-N', '--cacert', caFile, '-x', url, 'https://api.anthropic.com/v1/stream'],
      { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let streamed = '';
    stream.stdout.on('data', (d) => {
      streamed += d;
    });
    const streamExit = new Promise<number | null>((r) => stream.on('close', (code) => r(code)));
    try {
      await eventually('the first event', () => (streamed.includes('"n":1') ? true : undefined));
      const del = await c.cli(['delete', 'px-b', '--force']);
      assert.equal(del.code, 0, del.stderr);
      assert.notEqual(await streamExit, 0, 'the open stream was closed by the revoke');
      assert.ok(!streamed.includes('message_stop'));
    } finally {
      sseGate.open();
      stream.kill();
    }
    const afterDelete = await curl();
    assert.deepEqual(afterDelete, { code: 56, stdout: '407 000' });
  });
});

describe('credential proxy with [proxy] allow', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  let pods: PodExec;
  let upstream: Upstream;
  let files: ReturnType<typeof podReadableDir>;
  let scratch: string;

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'clauderon-proxy-allow-'));
    upstream = await startUpstream((req, res, sni) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${sni} ok key=${req.headers['x-api-key'] === ANTHROPIC_KEY ? 'real' : 'other'}\n`);
    });
    files = podReadableDir();
    files.put('upstream-ca.pem', upstream.caPem);
    const upstreamCa = join(scratch, 'upstream-ca.pem');
    writeFileSync(upstreamCa, upstream.caPem);
    const at = `127.0.0.1:${upstream.port}`;
    c = await startCluster({
      configToml: [
        '[proxy]',
        'allow = ["allowed.example.test"]',
        `upstream_ca_file = "${upstreamCa}"`,
        `host_overrides = { "api.anthropic.com" = "${at}", "allowed.example.test" = "${at}", "refused.example.test" = "${at}" }`,
        '',
      ].join('\n'),
      env: { ANTHROPIC_API_KEY: ANTHROPIC_KEY },
    });
    pods = new PodExec(c.env.KUBECONFIG!);
    repo = await makeRepo();
    const r = await c.cli([
      'create',
      '--repo',
      repo.dir,
      '--prompt',
      'p',
      '--name',
      'px-allow',
      '--no-attach',
    ]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    await c?.stop();
    await upstream?.stop();
    pods?.cleanup();
    files?.cleanup();
    repo?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test('a host outside the allow list is refused with 403; listed hosts and hosts with a rule pass', async () => {
    const ca = join(files.dir, 'upstream-ca.pem');
    const refused = await pods.sh(
      'px-allow',
      `curl -sS -o /dev/null -w "%{http_connect}" --cacert ${ca} https://refused.example.test/`,
    );
    assert.equal(refused.code, 56, refused.stderr);
    assert.equal(refused.stdout, '403');
    const plain = await pods.sh(
      'px-allow',
      'curl -sS -o /dev/null -w "%{http_code}" http://refused.example.test/',
    );
    assert.equal(plain.stdout, '403', plain.stderr);
    assert.ok(!upstream.seen.some((s) => s.sni === 'refused.example.test'), 'nothing reached the upstream');

    const allowed = await pods.sh('px-allow', `curl -sS --cacert ${ca} https://allowed.example.test/`);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stdout, 'allowed.example.test ok key=other\n');
    const ruled = await pods.sh(
      'px-allow',
      'curl -sS https://api.anthropic.com/v1/messages -H "x-api-key: $ANTHROPIC_API_KEY"',
    );
    assert.equal(ruled.code, 0, ruled.stderr);
    assert.equal(ruled.stdout, 'api.anthropic.com ok key=real\n');
    const entry = await eventually('the refusal audit entry', () =>
      auditLines(c).find((l) => l.host === 'refused.example.test' && l.method === 'CONNECT'),
    );
    assert.deepEqual(
      { session: entry.session, status: entry.status, injected: entry.injected },
      { session: 'px-allow', status: 403, injected: false },
    );
  });
});
