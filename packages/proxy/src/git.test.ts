import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { defaultConfig } from '@clauderon/config';
import { caBundlePem, loadOrCreateCa } from './ca.js';
import { podProxyEnv } from './pod-env.js';
import { loadSecretSource } from './secrets.js';
import { type ProxyServer, startProxy } from './server.js';
import { closeServer, listen, makeUpstreamTls } from './test-support.js';
import { createTokenRegistry } from './tokens.js';

const run = promisify(execFile);
const GH_SECRET = 'ghp_GIT_real_token_55aa';

/** A tiny github.com stand-in: `git http-backend` as CGI, answering 401 unless the injected token is sent. */
function gitServer(root: string, tlsMaterial: { certPem: string; keyPem: string }): https.Server {
  const expected = `Basic ${Buffer.from(`x-access-token:${GH_SECRET}`).toString('base64')}`;
  return https.createServer({ key: tlsMaterial.keyPem, cert: tlsMaterial.certPem }, (req, res) => {
    if (req.headers.authorization !== expected) {
      req.resume();
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' });
      res.end();
      return;
    }
    const u = new URL(req.url ?? '/', 'https://github.com');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: 'x-access-token',
        REMOTE_ADDR: '127.0.0.1',
        REQUEST_METHOD: req.method,
        PATH_INFO: decodeURIComponent(u.pathname),
        QUERY_STRING: u.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
        ...(req.headers['content-encoding']
          ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] }
          : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString().split('\r\n')) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim().toLowerCase();
        const v = line.slice(i + 1).trim();
        if (k === 'status') status = Number.parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.on('close', () => res.end());
  });
}

describe('git over HTTPS through the proxy', () => {
  let home: string;
  let upstream: https.Server;
  let proxy: ProxyServer;
  let env: Record<string, string>;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'clauderon-proxy-git-'));
    const root = join(home, 'srv');
    mkdirSync(join(root, 'o'), { recursive: true });
    await run('git', ['init', '-q', '--bare', '-b', 'main', join(root, 'o', 'r.git')]);
    const seed = join(home, 'seed');
    const gitEnv = {
      ...process.env,
      HOME: home,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@example.org',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.org',
    };
    await run('git', ['init', '-q', '-b', 'main', seed]);
    writeFileSync(join(seed, 'README'), 'hello\n');
    await run('git', ['-C', seed, 'add', '.'], { env: gitEnv });
    await run('git', ['-C', seed, 'commit', '-qm', 'seed'], { env: gitEnv });
    await run('git', ['-C', seed, 'push', '-q', join(root, 'o', 'r.git'), 'main'], { env: gitEnv });

    const up = await makeUpstreamTls(['github.com']);
    writeFileSync(join(home, 'upstream-ca.pem'), up.caPem);
    upstream = gitServer(root, up);
    const port = await listen(upstream);

    mkdirSync(join(home, 'secrets'), { mode: 0o700 });
    writeFileSync(join(home, 'secrets', 'gh_token'), GH_SECRET, { mode: 0o600 });
    const ca = await loadOrCreateCa(home);
    const tokens = createTokenRegistry(join(home, 'tokens.json'));
    const token = tokens.issue('gitter');
    proxy = await startProxy({
      config: defaultConfig({
        proxy: {
          upstream_ca_file: join(home, 'upstream-ca.pem'),
          host_overrides: { 'github.com': `127.0.0.1:${port}` },
        },
      }).proxy,
      home,
      ca,
      secrets: await loadSecretSource(home, {}),
      tokens,
      listen: { host: '127.0.0.1', port: 0 },
      log: () => {},
      auditPath: join(home, 'audit.jsonl'),
    });
    const bundle = join(home, 'bundle.crt');
    writeFileSync(bundle, caBundlePem(ca));
    env = {
      ...gitEnv,
      GIT_TERMINAL_PROMPT: '0',
      ...podProxyEnv({ proxyUrl: proxy.url, session: 'gitter', token, caPath: bundle, noProxy: [] }),
    } as Record<string, string>;
    delete env.GH_TOKEN;
    delete env.GITHUB_TOKEN;
  });

  after(async () => {
    await proxy?.stop();
    if (upstream) await closeServer(upstream);
    rmSync(home, { recursive: true, force: true });
  });

  test('clones and pushes with only the pod environment; the token comes from the proxy', {
    timeout: 30_000,
  }, async () => {
    const dest = join(home, 'clone');
    await run('git', ['clone', '-q', 'https://github.com/o/r.git', dest], { env });
    const { stdout } = await run('git', ['-C', dest, 'log', '--format=%s'], { env });
    assert.equal(stdout.trim(), 'seed');
    writeFileSync(join(dest, 'NEW'), 'from the pod\n');
    await run('git', ['-C', dest, 'add', 'NEW'], { env });
    await run('git', ['-C', dest, 'commit', '-qm', 'pod change'], { env });
    await run('git', ['-C', dest, 'push', '-q', 'origin', 'main'], { env });
    const bare = join(home, 'srv', 'o', 'r.git');
    const log = await run('git', ['--git-dir', bare, 'log', '--format=%s', 'main'], { env });
    assert.deepEqual(log.stdout.trim().split('\n'), ['pod change', 'seed']);
    const audit = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.match(audit, /"host":"github.com","path":"\/o\/r.git\/git-receive-pack","status":200/);
    assert.ok(!audit.includes(GH_SECRET));
  });
});
