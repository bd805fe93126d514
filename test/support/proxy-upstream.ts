import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { createCa } from '@clauderon/proxy';

/** One request as an upstream server saw it. */
export interface SeenRequest {
  /** The TLS server name the client asked for. */
  sni: string;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, sni: string) => void;

export interface Upstream {
  port: number;
  /** The upstream's own CA (PEM): it signed the certificate of every name the server answers for. */
  caPem: string;
  /** Every request received, in order. */
  seen: SeenRequest[];
  stop(): Promise<void>;
}

/**
 * A real HTTPS server on 127.0.0.1 standing in for public hosts: its own throw-away CA signs a certificate
 * per requested server name (SNI), so a client must trust that CA (or a proxy's) to talk to it.
 */
export async function startUpstream(handler: UpstreamHandler): Promise<Upstream> {
  const ca = await createCa('clauderon e2e upstream CA');
  const contexts = new Map<string, Promise<tls.SecureContext>>();
  const contextFor = (name: string): Promise<tls.SecureContext> => {
    let ctx = contexts.get(name);
    if (!ctx) {
      ctx = ca.leafFor(name).then((l) => tls.createSecureContext({ cert: l.certPem, key: l.keyPem }));
      contexts.set(name, ctx);
    }
    return ctx;
  };
  const seen: SeenRequest[] = [];
  const server = https.createServer({
    SNICallback: (name, cb) => {
      contextFor(name).then(
        (ctx) => cb(null, ctx),
        (e: Error) => cb(e),
      );
    },
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const sni = (req.socket as tls.TLSSocket).servername || '';
    seen.push({ sni, method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    handler(req, res, sni);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    caPem: ca.certPem,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Serves a bare repository under `root` with `git http-backend` (CGI), as github.com would over smart HTTP.
 * Authentication is the caller's business (check the request before calling this).
 */
export function serveGit(root: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'https://git.invalid');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    REMOTE_ADDR: '127.0.0.1',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    CONTENT_TYPE: req.headers['content-type'] ?? '',
  };
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = String(req.headers['content-encoding']);
  if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);
  const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
  req.pipe(cgi.stdin);
  cgi.stdin.on('error', () => {});
  // CGI output: header lines, a blank line, then the body.
  let pending: Buffer | undefined = Buffer.alloc(0);
  cgi.stdout.on('data', (chunk: Buffer) => {
    if (pending === undefined) {
      res.write(chunk);
      return;
    }
    pending = Buffer.concat([pending, chunk]);
    const end = pending.indexOf('\r\n\r\n');
    if (end === -1) return;
    let status = 200;
    for (const line of pending.subarray(0, end).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon === -1) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    res.write(pending.subarray(end + 4));
    pending = undefined;
  });
  cgi.on('close', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
}

/**
 * A directory that session pods can read (uid 1000; not under /tmp, which is an emptyDir in pods), for
 * files a test hands to pod processes.
 */
export function podReadableDir(): {
  dir: string;
  put(name: string, content: string): string;
  cleanup(): void;
} {
  const dir = mkdtempSync('/var/tmp/clauderon-proxy-e2e-');
  chmodSync(dir, 0o755);
  return {
    dir,
    put(name, content) {
      const path = join(dir, name);
      writeFileSync(path, content, { mode: 0o644 });
      return path;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
