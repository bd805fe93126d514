import assert from 'node:assert/strict';
import { fork, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultConfig } from '@clauderon/config';
import { type Ca, caBundlePem, loadOrCreateCa } from './ca.js';
import { podProxyEnv } from './pod-env.js';
import { placeholderEnv } from './rules.js';
import { loadSecretSource, type SecretSource } from './secrets.js';
import { type ProxyServer, startProxy } from './server.js';
import {
  closeServer,
  connectVia,
  gate,
  listen,
  makeUpstreamTls,
  type Reply,
  requestVia,
  tlsVia,
} from './test-support.js';
import { createTokenRegistry, type TokenRegistry } from './tokens.js';

const ANTHROPIC_SECRET = 'sk-ant-REAL-anthropic-7f3a9c';
const GH_SECRET = 'ghp_REAL_github_91b2e4';
const CUSTOM_SECRET = 'custom-REAL-secret-d00d';
const SECRETS = [
  ANTHROPIC_SECRET,
  GH_SECRET,
  CUSTOM_SECRET,
  Buffer.from(`x-access-token:${GH_SECRET}`).toString('base64'),
];

interface Seen {
  host: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

describe('credential-injecting proxy', () => {
  let home: string;
  let upstreamCa: string;
  let upstream: https.Server;
  let upstreamPort: number;
  let plainHttp: http.Server;
  let ca: Ca;
  let secrets: SecretSource;
  let tokens: TokenRegistry;
  let proxy: ProxyServer;
  let token: string;
  let otherToken: string;
  const seen: Seen[] = [];
  const logs: { obj: Record<string, unknown>; msg: string }[] = [];
  let sseGate = gate();
  let auth: string;
  let proxyConfig: ReturnType<typeof defaultConfig>['proxy'];

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'clauderon-proxy-'));
    const up = await makeUpstreamTls([
      'api.anthropic.com',
      'api.github.com',
      'github.com',
      'plain.test',
      'api.custom.test',
    ]);
    upstreamCa = up.caPem;
    writeFileSync(join(home, 'upstream-ca.pem'), up.caPem);
    upstream = https.createServer({ key: up.keyPem, cert: up.certPem });
    upstream.on('request', (req, res) => {
      const host = String(req.headers.host);
      const path = req.url ?? '';
      seen.push({ host, path, headers: req.headers });
      if (path.startsWith('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: one\n\n');
        void sseGate.promise.then(() => res.end('data: two\n\n'));
        return;
      }
      if (path.startsWith('/upload')) {
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          bytes += c.length;
        });
        req.on('end', () => res.end(JSON.stringify({ bytes })));
        return;
      }
      if (path.startsWith('/download')) {
        const total = Number(new URL(path, 'https://x').searchParams.get('n'));
        const chunk = Buffer.alloc(64 * 1024, 7);
        let sent = 0;
        res.writeHead(200, { 'content-length': total });
        const pump = () => {
          while (sent < total) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ host, path, headers: req.headers }));
      });
    });
    upstream.on('upgrade', (req, socket) => {
      seen.push({ host: String(req.headers.host), path: req.url ?? '', headers: req.headers });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d) => socket.write(`echo:${d}`));
    });
    upstreamPort = await listen(upstream);
    plainHttp = http.createServer((req, res) => {
      seen.push({ host: String(req.headers.host), path: req.url ?? '', headers: req.headers });
      req.resume();
      res.end('plain');
    });
    const plainPort = await listen(plainHttp);

    mkdirSync(join(home, 'secrets'), { mode: 0o700 });
    writeFileSync(join(home, 'secrets', 'anthropic_api_key'), `${ANTHROPIC_SECRET}\n`, { mode: 0o600 });
    secrets = await loadSecretSource(home, { GH_TOKEN: GH_SECRET, CUSTOM_SECRET });
    ca = await loadOrCreateCa(home);
    tokens = createTokenRegistry(join(home, 'proxy', 'tokens.json'));
    token = tokens.issue('alpha');
    otherToken = tokens.issue('beta');
    auth = `alpha:${token}`;
    const target = `127.0.0.1:${upstreamPort}`;
    proxyConfig = defaultConfig({
      proxy: {
        upstream_ca_file: join(home, 'upstream-ca.pem'),
        host_overrides: {
          'api.anthropic.com': target,
          'api.github.com': target,
          'github.com': target,
          'plain.test': target,
          'api.custom.test': target,
          'web.test': `127.0.0.1:${plainPort}`,
        },
        rules: [
          {
            host: '*.custom.test',
            header: 'X-Custom-Auth',
            value: 'Token {secret}',
            secret_env: 'CUSTOM_SECRET',
          },
        ],
      },
    }).proxy;
    proxy = await startProxy({
      config: proxyConfig,
      home,
      ca,
      secrets,
      tokens,
      listen: { host: '127.0.0.1', port: 0 },
      log: (obj, msg) => logs.push({ obj, msg }),
      auditPath: join(home, 'logs', 'proxy-audit.jsonl'),
    });
  });

  after(async () => {
    await proxy?.stop();
    if (upstream) await closeServer(upstream);
    if (plainHttp) await closeServer(plainHttp);
    rmSync(home, { recursive: true, force: true });
  });

  const lastSeen = (path: string): Seen => {
    const s = seen.filter((x) => x.path.startsWith(path)).at(-1);
    assert.ok(s, `upstream saw ${path}`);
    return s;
  };

  test('health answers without auth', async () => {
    const res = await fetch(`${proxy.url}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
  });

  test('upstream receives the real Anthropic key while the client sent a placeholder', async () => {
    const placeholder = placeholderEnv({ secrets }).ANTHROPIC_API_KEY!;
    assert.match(placeholder, /^clauderon-placeholder/);
    const r = await requestVia(proxy.port, auth, [ca.certPem], {
      host: 'api.anthropic.com',
      path: '/v1/messages?beta=true&key=QUERYSECRET',
      method: 'POST',
      headers: {
        'x-api-key': placeholder,
        authorization: 'Bearer also-placeholder',
        'content-type': 'text/plain',
      },
      body: 'hello',
    });
    assert.equal(r.status, 200);
    const s = lastSeen('/v1/messages');
    assert.equal(s.headers['x-api-key'], ANTHROPIC_SECRET);
    assert.equal(s.headers.authorization, undefined, 'the placeholder authorization header is stripped');
    assert.equal(s.headers.host, 'api.anthropic.com');
    assert.equal(s.headers['proxy-authorization'], undefined);
  });

  test('GitHub API gets a bearer token and git over HTTPS gets x-access-token basic auth', async () => {
    await requestVia(proxy.port, auth, [ca.certPem], {
      host: 'api.github.com',
      path: '/user',
      headers: { authorization: 'token clauderon-placeholder-gh-token' },
    });
    assert.equal(lastSeen('/user').headers.authorization, `Bearer ${GH_SECRET}`);
    await requestVia(proxy.port, auth, [ca.certPem], { host: 'github.com', path: '/o/r.git/info/refs' });
    const basic = Buffer.from(`x-access-token:${GH_SECRET}`).toString('base64');
    assert.equal(lastSeen('/o/r.git/info/refs').headers.authorization, `Basic ${basic}`);
  });

  test('a configured *.suffix rule sets its header from its template', async () => {
    await requestVia(proxy.port, auth, [ca.certPem], {
      host: 'api.custom.test',
      path: '/custom',
      headers: { 'x-custom-auth': 'Token clauderon-placeholder-custom-secret' },
    });
    assert.equal(lastSeen('/custom').headers['x-custom-auth'], `Token ${CUSTOM_SECRET}`);
    assert.equal(
      placeholderEnv({ config: proxyConfig, secrets }).CUSTOM_SECRET,
      'clauderon-placeholder-custom-secret',
    );
  });

  test('plain HTTP is forwarded with the proxy credential removed and nothing injected', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get(
          {
            host: '127.0.0.1',
            port: proxy.port,
            path: 'http://web.test/page?x=1',
            headers: {
              'proxy-authorization': `Basic ${Buffer.from(auth).toString('base64')}`,
              'x-api-key': 'mine',
            },
          },
          (res) => {
            let body = '';
            res.on('data', (d) => {
              body += d;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        )
        .on('error', reject);
    });
    assert.deepEqual(r, { status: 200, body: 'plain' });
    const s = lastSeen('/page');
    assert.equal(s.path, '/page?x=1');
    assert.equal(s.host, 'web.test');
    assert.equal(s.headers['proxy-authorization'], undefined);
    assert.equal(s.headers['x-api-key'], 'mine');
  });

  test('the client trusts our CA and rejects the intercepted host without it', async () => {
    const t = await tlsVia(proxy.port, 'api.anthropic.com', auth, [ca.certPem]);
    assert.equal(t.authorized, true);
    assert.equal(t.getPeerCertificate().subjectaltname, 'DNS:api.anthropic.com');
    t.destroy();
    await assert.rejects(
      tlsVia(proxy.port, 'api.anthropic.com', auth, undefined),
      (e: NodeJS.ErrnoException) => /certificate|self.signed|issuer/i.test(`${e.code} ${e.message}`),
    );
  });

  test('curl with only the pod environment gets through with the real credential', async () => {
    const bundle = join(home, 'bundle.crt');
    writeFileSync(bundle, caBundlePem(ca));
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      ...podProxyEnv({
        proxyUrl: proxy.url,
        session: 'alpha',
        token,
        caPath: bundle,
        noProxy: ['localhost'],
      }),
      ...placeholderEnv({ secrets }),
    };
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(
        'sh',
        [
          '-c',
          'curl -sS --max-time 20 -H "x-api-key: $ANTHROPIC_API_KEY" https://api.anthropic.com/curl?q=1',
        ],
        { env },
      );
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => {
        stdout += d;
      });
      p.stderr.on('data', (d) => {
        stderr += d;
      });
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).path, '/curl?q=1');
    assert.equal(lastSeen('/curl').headers['x-api-key'], ANTHROPIC_SECRET);
  });

  test('SSE arrives incrementally: the first event reaches the client before the upstream finishes', {
    timeout: 20_000,
  }, async () => {
    sseGate = gate();
    const socket = await tlsVia(proxy.port, 'api.anthropic.com', auth, [ca.certPem]);
    const events: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: 'api.anthropic.com', path: '/sse', createConnection: () => socket },
        (res) => {
          assert.equal(res.headers['content-type'], 'text/event-stream');
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            events.push(chunk);
            // The upstream is still blocked on the gate here, so this chunk cannot have been buffered to the end.
            if (events.length === 1) {
              assert.equal(chunk, 'data: one\n\n');
              sseGate.open();
            }
          });
          res.on('end', resolve);
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(events.join(''), 'data: one\n\ndata: two\n\n');
  });

  test('WebSocket upgrades through an intercepted host carry the credential and pipe both ways', {
    timeout: 20_000,
  }, async () => {
    const socket = await tlsVia(proxy.port, 'api.anthropic.com', auth, [ca.certPem]);
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = http.request({
        host: 'api.anthropic.com',
        path: '/ws',
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'x-api-key': 'placeholder' },
        createConnection: () => socket,
      });
      req.on('upgrade', (res, s) => {
        assert.equal(res.statusCode, 101);
        s.once('data', (d) => {
          resolve(String(d));
          s.destroy();
        });
        s.write('ping');
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(echoed, 'echo:ping');
    assert.equal(lastSeen('/ws').headers['x-api-key'], ANTHROPIC_SECRET);
  });

  test('407 without a token, with another session token, and with a wrong token', async () => {
    const none = await connectVia(proxy.port, 'api.anthropic.com:443');
    assert.equal(none.status, 407);
    assert.equal(none.headers['proxy-authenticate'], 'Basic realm="clauderon"');
    none.socket.destroy();
    const crossed = await connectVia(proxy.port, 'api.anthropic.com:443', `alpha:${otherToken}`);
    assert.equal(crossed.status, 407);
    crossed.socket.destroy();
    const wrong = await connectVia(proxy.port, 'plain.test:443', 'alpha:nope');
    assert.equal(wrong.status, 407);
    wrong.socket.destroy();
    const plain = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: proxy.port, path: 'http://plain.test/' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
    assert.equal(plain, 407);
  });

  test('a host without a rule is tunnelled untouched: the client sees the upstream TLS, headers unchanged', async () => {
    const t = await tlsVia(proxy.port, 'plain.test', auth, [upstreamCa]);
    assert.equal(t.authorized, true);
    assert.equal(t.getPeerCertificate().issuer.CN, 'upstream test CA');
    t.destroy();
    const r = await requestVia(proxy.port, auth, [upstreamCa], {
      host: 'plain.test',
      path: '/mine',
      headers: { authorization: 'Bearer client-own' },
    });
    assert.equal(r.status, 200);
    assert.equal(lastSeen('/mine').headers.authorization, 'Bearer client-own');
  });

  test('loopback destinations are refused unless host_overrides names them', async () => {
    const r = await connectVia(proxy.port, `127.0.0.1:${upstreamPort}`, auth);
    assert.equal(r.status, 403);
    r.socket.destroy();
  });

  test('big bodies stream both ways without the proxy RSS growing by more than 50 MB', {
    timeout: 120_000,
  }, async () => {
    // The proxy runs in its own process here, so only its memory is measured.
    const child = fork(join(import.meta.dirname, 'test-proxy-child.js'), [
      JSON.stringify({
        home,
        config: proxyConfig,
        tokensFile: join(home, 'proxy', 'tokens.json'),
        env: { GH_TOKEN: GH_SECRET },
        auditPath: join(home, 'logs', 'child-audit.jsonl'),
      }),
    ]);
    const messages: { port?: number; rss?: number }[] = [];
    let wake: (() => void) | undefined;
    child.on('message', (m: { port?: number; rss?: number }) => {
      messages.push(m);
      wake?.();
    });
    const next = async () => {
      while (messages.length === 0) {
        await new Promise<void>((r) => {
          wake = r;
        });
      }
      return messages.shift()!;
    };
    const exited = new Promise((r) => child.once('exit', r));
    /** Uploads then downloads `total` bytes through the child proxy, checking both arrive whole. */
    const transfer = async (port: number, total: number) => {
      // Upload: a request body produced lazily by the client.
      const socket = await tlsVia(port, 'api.anthropic.com', auth, [ca.certPem]);
      const uploaded = await new Promise<Reply>((resolve, reject) => {
        const req = http.request(
          { host: 'api.anthropic.com', path: '/upload', method: 'POST', createConnection: () => socket },
          (res) => {
            let body = '';
            res.on('data', (d) => {
              body += d;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
          },
        );
        req.on('error', reject);
        const chunk = Buffer.alloc(64 * 1024, 1);
        let sent = 0;
        const pump = () => {
          while (sent < total) {
            sent += chunk.length;
            if (!req.write(chunk)) return void req.once('drain', pump);
          }
          req.end();
        };
        pump();
      });
      assert.equal(JSON.parse(uploaded.body).bytes, total);
      // Download: a response body consumed as it comes.
      const socket2 = await tlsVia(port, 'api.anthropic.com', auth, [ca.certPem]);
      const received = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          { host: 'api.anthropic.com', path: `/download?n=${total}`, createConnection: () => socket2 },
          (res) => {
            let n = 0;
            res.on('data', (d: Buffer) => {
              n += d.length;
            });
            res.on('end', () => resolve(n));
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(received, total);
    };
    const rss = async () => {
      child.send('rss');
      return (await next()).rss!;
    };
    try {
      const { port } = await next();
      assert.ok(port);
      const cold = await rss();
      // A small transfer first, so one-off costs (TLS, leaf minting, JIT, heap sizing) are not counted.
      await transfer(port, 8 * 1024 * 1024);
      const base = await rss();
      let peak = base;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, await rss());
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      try {
        await transfer(port, 200 * 1024 * 1024);
      } finally {
        sampling = false;
        await sampler;
      }
      const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
      process.stderr.write(
        `# big body: proxy RSS ${mb(cold)} MB at start, ${mb(base)} MB after warm-up, peak ${mb(peak)} MB ` +
          `during 200 MB up + 200 MB down (+${mb(peak - base)} MB)\n`,
      );
      assert.ok(peak - base < 50 * 1024 * 1024, `proxy RSS grew by ${mb(peak - base)} MB`);
    } finally {
      child.send('stop');
      await exited;
    }
  });

  test('revoke refuses new requests at once and closes open tunnels and intercepted connections', {
    timeout: 20_000,
  }, async () => {
    const gammaToken = tokens.issue('gamma');
    const gammaAuth = `gamma:${gammaToken}`;
    const intercepted = await tlsVia(proxy.port, 'api.anthropic.com', gammaAuth, [ca.certPem]);
    const tunnelled = await tlsVia(proxy.port, 'plain.test', gammaAuth, [upstreamCa]);
    const closed = (s: import('node:net').Socket) =>
      new Promise<void>((resolve) => {
        if (s.destroyed) return resolve();
        s.on('error', () => {});
        s.once('close', () => resolve());
      });
    const both = Promise.all([closed(intercepted), closed(tunnelled)]);
    tokens.revoke('gamma');
    await both;
    const again = await connectVia(proxy.port, 'plain.test:443', gammaAuth);
    assert.equal(again.status, 407);
    again.socket.destroy();
  });

  test('the audit log records requests without secrets or query strings', async () => {
    // The audit stream is asynchronous; wait until the lines written so far are on disk.
    const path = join(home, 'logs', 'proxy-audit.jsonl');
    let text = '';
    for (let i = 0; i < 100 && !text.includes('/curl"'); i++) {
      await new Promise((r) => setTimeout(r, 20));
      text = readFileSync(path, 'utf8');
    }
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const msg = lines.find((l) => l.path === '/v1/messages');
    assert.ok(msg, 'entry for /v1/messages');
    assert.equal(msg.session, 'alpha');
    assert.equal(msg.method, 'POST');
    assert.equal(msg.host, 'api.anthropic.com');
    assert.equal(msg.status, 200);
    assert.equal(msg.injected, true);
    assert.equal(msg.tunnelled, false);
    assert.equal(typeof msg.durationMs, 'number');
    assert.ok(lines.some((l) => l.host === 'plain.test' && l.tunnelled === true && l.injected === false));
    assert.ok(lines.some((l) => l.status === 407));
    for (const s of [...SECRETS, 'QUERYSECRET', token])
      assert.ok(!text.includes(s), 'no secret in the audit log');
  });

  test('log lines never contain a secret and an inactive rule is logged once', () => {
    const text = JSON.stringify(logs);
    for (const s of [...SECRETS, token, otherToken]) assert.ok(!text.includes(s), 'no secret in logs');
    const inactive = logs.filter((l) => l.obj.rule === 'builtin:anthropic-oauth');
    assert.equal(inactive.length, 1);
    assert.match(String(inactive[0]!.obj.from), /CLAUDE_CODE_OAUTH_TOKEN/);
  });
});

describe('allow list', () => {
  let home: string;
  let proxy: ProxyServer;
  let auth: string;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'clauderon-proxy-allow-'));
    const tokens = createTokenRegistry(join(home, 'tokens.json'));
    auth = `s1:${tokens.issue('s1')}`;
    proxy = await startProxy({
      config: defaultConfig({ proxy: { allow: ['*.example.org', 'registry.npmjs.org'] } }).proxy,
      home,
      ca: await loadOrCreateCa(home),
      secrets: await loadSecretSource(home, {}),
      tokens,
      listen: { host: '127.0.0.1', port: 0 },
      log: () => {},
      auditPath: join(home, 'audit.jsonl'),
    });
  });
  after(async () => {
    await proxy?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test('refuses CONNECT and plain requests to hosts outside the allow list', async () => {
    const r = await connectVia(proxy.port, 'evil.test:443', auth);
    assert.equal(r.status, 403);
    r.socket.destroy();
    const apex = await connectVia(proxy.port, 'example.org:443', auth);
    assert.equal(apex.status, 403, '*.example.org does not cover the apex');
    apex.socket.destroy();
    const plain = await new Promise<number>((resolve, reject) => {
      http
        .get(
          {
            host: '127.0.0.1',
            port: proxy.port,
            path: 'http://evil.test/x',
            headers: { 'proxy-authorization': `Basic ${Buffer.from(auth).toString('base64')}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        )
        .on('error', reject);
    });
    assert.equal(plain, 403);
  });
});

describe('secrets', () => {
  test('a secret file readable by others is refused with a clear error that does not show it', async () => {
    const home = mkdtempSync(join(tmpdir(), 'clauderon-secrets-'));
    try {
      mkdirSync(join(home, 'secrets'));
      const file = join(home, 'secrets', 'gh_token');
      writeFileSync(file, 'ghp_LEAKME');
      chmodSync(file, 0o644);
      await assert.rejects(loadSecretSource(home, {}), (e: Error & { code?: string; hint?: string }) => {
        assert.equal(e.code, 'CLAUDERON_E_PROXY');
        assert.match(e.message, /gh_token has mode 0644/);
        assert.match(e.hint ?? '', /chmod 600/);
        assert.ok(!`${e.message}${e.hint}`.includes('LEAKME'));
        return true;
      });
      chmodSync(file, 0o600);
      const s = await loadSecretSource(home, { GITHUB_TOKEN: 'from-env' });
      assert.equal(s.get({ env: ['GH_TOKEN'], file: 'gh_token' }), 'ghp_LEAKME');
      assert.equal(s.get({ env: ['GH_TOKEN', 'GITHUB_TOKEN'], file: 'gh_token' }), 'from-env');
      assert.equal(s.get({ file: 'missing' }), undefined);
      assert.throws(() => s.get({ file: '../x' }), /plain file name/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('placeholders match the credentials the proxy will inject', async () => {
    const home = mkdtempSync(join(tmpdir(), 'clauderon-ph-'));
    try {
      const oauthOnly = await loadSecretSource(home, { CLAUDE_CODE_OAUTH_TOKEN: 'x' });
      assert.deepEqual(Object.keys(placeholderEnv({ secrets: oauthOnly })), ['CLAUDE_CODE_OAUTH_TOKEN']);
      const both = await loadSecretSource(home, {
        CLAUDE_CODE_OAUTH_TOKEN: 'x',
        ANTHROPIC_API_KEY: 'y',
        GH_TOKEN: 'z',
      });
      assert.deepEqual(Object.keys(placeholderEnv({ secrets: both })).sort(), [
        'ANTHROPIC_API_KEY',
        'GH_TOKEN',
        'GITHUB_TOKEN',
      ]);
      assert.deepEqual(Object.keys(placeholderEnv()).sort(), [
        'ANTHROPIC_API_KEY',
        'GH_TOKEN',
        'GITHUB_TOKEN',
      ]);
      for (const v of Object.values(placeholderEnv({ secrets: both })))
        assert.match(v, /^clauderon-placeholder-/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
