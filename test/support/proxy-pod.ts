import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs processes inside session pods with `kubectl exec`, which gives them the container's environment. */
export class PodExec {
  readonly #env: NodeJS.ProcessEnv;
  readonly #cache: string;

  constructor(kubeconfig: string) {
    this.#cache = mkdtempSync(join(tmpdir(), 'clauderon-kubecache-'));
    this.#env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      KUBECONFIG: kubeconfig,
      KUBECACHEDIR: this.#cache,
    };
  }

  /** `kubectl exec` of `argv` in the agent container of session `session`, as a running child process. */
  spawn(session: string, argv: string[]): ChildProcessWithoutNullStreams {
    return spawn(
      'kubectl',
      ['-n', 'clauderon', 'exec', `clauderon-${session}`, '-c', 'agent', '--', ...argv],
      { env: this.#env, stdio: 'pipe' },
    );
  }

  /** Runs `argv` in the session's pod to completion; never rejects on a non-zero exit. */
  run(session: string, argv: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(session, argv);
      child.stdin.end();
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** Runs a shell script in the session's pod. */
  sh(session: string, script: string, timeoutMs?: number): Promise<ExecResult> {
    return this.run(session, ['sh', '-c', script], timeoutMs);
  }

  cleanup(): void {
    rmSync(this.#cache, { recursive: true, force: true });
  }
}

/**
 * A Node script for `node -e` in a pod: one HTTPS request through the proxy named by HTTPS_PROXY, with a
 * CONNECT of its own (Node 20 ignores HTTPS_PROXY), trusting only what NODE_EXTRA_CA_CERTS adds to Node's
 * roots. Prints `status body` on stdout. Arguments: host, method, path, then header name/value pairs whose
 * value names an environment variable.
 */
export const NODE_CONNECT_CLIENT = `
const http = require('node:http');
const tls = require('node:tls');
const [host, method, path, ...pairs] = process.argv.slice(1);
const headers = { connection: 'close' };
for (let i = 0; i < pairs.length; i += 2) headers[pairs[i]] = process.env[pairs[i + 1]] ?? '';
const proxy = new URL(process.env.HTTPS_PROXY);
const auth = Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64');
const connect = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: host + ':443',
  headers: { 'proxy-authorization': 'Basic ' + auth } });
connect.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.log('CONNECT ' + res.statusCode); process.exit(2); }
  const secure = tls.connect({ socket, servername: host }, () => {
    const req = http.request({ createConnection: () => secure, host, method, path, headers }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => { body += d; });
      r.on('end', () => console.log(r.statusCode + ' ' + body));
    });
    req.on('error', (e) => { console.error(e.message); process.exit(4); });
    req.end(method === 'POST' ? '{}' : undefined);
  });
  secure.on('error', (e) => { console.error('tls: ' + e.message); process.exit(3); });
});
connect.on('error', (e) => { console.error(e.message); process.exit(5); });
connect.end();
`;
