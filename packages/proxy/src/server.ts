import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { Config } from '@clauderon/config';
import { ClauderonError } from '@clauderon/protocol';
import { AuditLog, pathOnly } from './audit.js';
import type { Ca } from './ca.js';
import { CREDENTIAL_HEADERS, hostMatches, type Rule, rulesFor } from './rules.js';
import type { SecretSource } from './secrets.js';
import type { TokenRegistry } from './tokens.js';

/** A running proxy. */
export interface ProxyServer {
  readonly port: number;
  readonly host: string;
  /** http://host:port, without credentials. */
  readonly url: string;
  /** Stops listening and closes every connection (tunnels included). */
  stop(): Promise<void>;
}

export type ProxyLog = (obj: Record<string, unknown>, msg: string) => void;

export interface StartProxyOptions {
  config: Config['proxy'];
  home: string;
  ca: Ca;
  secrets: SecretSource;
  tokens: TokenRegistry;
  /** Overrides config.listen (tests pass port 0). */
  listen?: { host: string; port: number };
  log: ProxyLog;
  /** JSON-lines audit log, normally `${home}/logs/proxy-audit.jsonl`. */
  auditPath: string;
}

interface Target {
  host: string;
  port: number;
}

/** What an intercepted TLS connection was opened for. */
interface ConnInfo {
  session: string;
  token: string;
  host: string;
  port: number;
}

type Auth = { ok: true; session: string; token: string } | { ok: false; claimed: string | null };

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus those the proxy owns; never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const PROXY_AUTH_REQUIRED =
  'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="clauderon"\r\n' +
  'Content-Type: application/json\r\nContent-Length: 39\r\nConnection: close\r\n\r\n' +
  '{"error":"proxy authentication needed"}';

/** Parses "host:port" or "[v6]:port". */
export function parseHostPort(s: string, defaultPort?: number): Target | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(s) ?? /^([^:[\]\s/]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port === undefined || port < 1 || port > 65535) return undefined;
  return { host: m[1]!.toLowerCase(), port };
}

/** Loopback, unspecified and link-local (cloud metadata) addresses: never reachable through the proxy. */
function isBlockedAddress(addr: string): boolean {
  const a = addr.toLowerCase().replace(/^::ffff:/, '');
  if (net.isIPv4(a)) return /^(127\.|0\.|169\.254\.)/.test(a);
  return a === '::1' || a === '::' || /^fe[89ab][0-9a-f]:/.test(a);
}

/** dns.lookup that refuses blocked addresses, so a name cannot smuggle a request to the daemon's machine. */
function safeLookup(
  hostname: string,
  options: { all?: boolean } & Record<string, unknown>,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    const list = (addresses as LookupAddress[]).filter((a) => !isBlockedAddress(a.address));
    if (list.length === 0) {
      const e: NodeJS.ErrnoException = new Error(`${hostname} resolves to a blocked address`);
      e.code = 'EBLOCKED';
      return callback(e, '', 0);
    }
    if (options.all) return callback(null, list);
    callback(null, list[0]!.address, list[0]!.family);
  });
}

function filterHeaders(raw: readonly string[], drop: ReadonlySet<string>): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(k) || drop.has(k) || named.has(k)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function rawHeaderBlock(raw: readonly string[]): string {
  let s = '';
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return s;
}

function hostHeader(t: Target, defaultPort: number): string {
  const h = net.isIPv6(t.host) ? `[${t.host}]` : t.host;
  return t.port === defaultPort ? h : `${h}:${t.port}`;
}

/** The origin-form target of a request inside a tunnel; an absolute-form one keeps only its path and query. */
function originForm(url: string | undefined): string {
  if (!url) return '/';
  if (url.startsWith('/')) return url;
  try {
    const u = new URL(url);
    return `${u.pathname}${u.search}`;
  } catch {
    return '/';
  }
}

function parseAuth(header: string | undefined): { session: string; token: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0) return undefined;
  try {
    return {
      session: decodeURIComponent(decoded.slice(0, i)),
      token: decodeURIComponent(decoded.slice(i + 1)),
    };
  } catch {
    return { session: decoded.slice(0, i), token: decoded.slice(i + 1) };
  }
}

/**
 * Starts the credential-injecting proxy: an HTTP forward proxy with CONNECT. Every request needs the session's
 * Proxy-Authorization. Hosts with an active credential rule are intercepted (TLS terminated with a leaf from
 * `ca`, the pod's credential headers replaced by the real one, forwarded over verified TLS); other hosts are
 * tunnelled untouched, or refused when `config.allow` is non-empty and does not name them (hosts with an active
 * rule are always allowed). Loopback and link-local destinations are refused unless `host_overrides` names them.
 */
export async function startProxy(opts: StartProxyOptions): Promise<ProxyServer> {
  const { config, ca, secrets, tokens, log } = opts;
  const rules = rulesFor(config);
  const listen = opts.listen ?? parseHostPort(config.listen);
  if (!listen) {
    throw new ClauderonError('CONFIG_INVALID', `proxy.listen "${config.listen}" must be host:port.`);
  }
  const overrides = new Map<string, Target>();
  for (const [name, addr] of Object.entries(config.host_overrides)) {
    const t = parseHostPort(addr, 443);
    if (!t) {
      throw new ClauderonError(
        'CONFIG_INVALID',
        `proxy.host_overrides["${name}"] "${addr}" must be addr:port.`,
      );
    }
    overrides.set(name.toLowerCase(), t);
  }
  let upstreamCa: string[] | undefined;
  if (config.upstream_ca_file) {
    try {
      upstreamCa = [...tls.rootCertificates, readFileSync(config.upstream_ca_file, 'utf8')];
    } catch (e) {
      throw new ClauderonError(
        'CONFIG_INVALID',
        `Cannot read proxy.upstream_ca_file: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }
  const httpsAgent = new https.Agent({
    keepAlive: true,
    scheduling: 'lifo',
    ...(upstreamCa ? { ca: upstreamCa } : {}),
  });
  const httpAgent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  const audit = new AuditLog(opts.auditPath);

  // ---- connection tracking: revoke and stop close everything a session (or the proxy) holds open
  const all = new Set<Duplex>();
  const bySession = new Map<string, Set<Duplex>>();
  const track = (session: string | null, s: Duplex) => {
    if (s.destroyed) return;
    all.add(s);
    let set: Set<Duplex> | undefined;
    if (session !== null) {
      set = bySession.get(session);
      if (!set) {
        set = new Set();
        bySession.set(session, set);
      }
      set.add(s);
    }
    s.once('close', () => {
      all.delete(s);
      if (set) {
        set.delete(s);
        if (set.size === 0 && bySession.get(session!) === set) bySession.delete(session!);
      }
    });
  };
  const unsubscribe = tokens.onRevoke((session) => {
    const set = bySession.get(session);
    if (!set) return;
    log({ session, connections: set.size }, 'proxy: closing connections of a revoked session');
    for (const s of [...set]) s.destroy();
  });

  // ---- rules
  const reported = new Set<string>();
  const reportOnce = (key: string, obj: Record<string, unknown>, msg: string) => {
    if (reported.has(key)) return;
    reported.add(key);
    log(obj, msg);
  };
  const secretOf = (rule: Rule): string | undefined => {
    try {
      return secrets.get(rule.secret);
    } catch (e) {
      // Messages of SecretSource errors name the file and its mode, never the content.
      reportOnce(
        `err:${rule.id}`,
        { rule: rule.id, err: (e as Error).message },
        'proxy: credential rule inactive',
      );
      reported.add(`none:${rule.id}`);
      return undefined;
    }
  };
  /** The first rule for `host` whose secret is available, with that secret. */
  const activeRule = (host: string): { rule: Rule; secret: string } | undefined => {
    for (const rule of rules) {
      if (!hostMatches(rule.host, host)) continue;
      const secret = secretOf(rule);
      if (secret !== undefined) return { rule, secret };
      reportOnce(
        `none:${rule.id}`,
        { rule: rule.id, host: rule.host, from: secrets.describe(rule.secret) },
        'proxy: credential rule inactive, no secret available',
      );
    }
    return undefined;
  };
  for (const rule of rules) {
    if (secretOf(rule) === undefined) {
      reportOnce(
        `none:${rule.id}`,
        { rule: rule.id, host: rule.host, from: secrets.describe(rule.secret) },
        'proxy: credential rule inactive, no secret available',
      );
    }
  }
  /** Headers removed from requests to an intercepted host: the usual ones and those its rules set. */
  const credentialHeadersOf = (host: string): string[] => [
    ...CREDENTIAL_HEADERS,
    ...rules.filter((r) => hostMatches(r.host, host)).map((r) => r.header),
  ];
  const allowed = (host: string): boolean =>
    config.allow.length === 0 ||
    config.allow.some((p) => hostMatches(p, host)) ||
    activeRule(host) !== undefined;
  /** Where to open the TCP connection for `t`, or undefined when the destination is blocked. */
  const upstreamOf = (t: Target): Target | undefined => {
    const o = overrides.get(t.host);
    if (o) return o;
    if (t.host === 'localhost' || (net.isIP(t.host) && isBlockedAddress(t.host))) return undefined;
    return t;
  };

  /**
   * Opens the upstream request for an intercepted (TLS) or plain request. Verification and SNI use the real
   * name even when host_overrides redirects the TCP connection; DNS answers that point at blocked addresses
   * are refused unless the host is overridden.
   */
  const upstreamRequest = (
    target: Target,
    up: Target,
    f: { path: string; secure: boolean },
    method: string | undefined,
    headers: string[],
  ): http.ClientRequest => {
    const common = {
      host: up.host,
      port: up.port,
      method,
      path: f.path,
      headers: headers as unknown as http.OutgoingHttpHeaders,
      setHost: false,
      ...(overrides.has(target.host) ? {} : { lookup: safeLookup as unknown as typeof dnsLookup }),
    };
    return f.secure
      ? https.request({
          ...common,
          agent: httpsAgent,
          servername: net.isIP(target.host) ? '' : target.host,
          checkServerIdentity: (_h, cert) => tls.checkServerIdentity(target.host, cert),
        })
      : http.request({ ...common, agent: httpAgent });
  };

  /** The audit line of one forwarded request (intercepted or plain); never the credential or query. */
  const auditForward = (
    f: { session: string; path: string },
    method: string | undefined,
    host: string,
    status: number,
    started: number,
    injected: boolean,
  ) =>
    audit.write({
      session: f.session,
      method: method ?? '',
      host,
      path: pathOnly(f.path),
      status,
      durationMs: Date.now() - started,
      injected,
      tunnelled: false,
    });

  const authenticate = (header: string | undefined): Auth => {
    const a = parseAuth(header);
    if (!a) return { ok: false, claimed: null };
    if (!tokens.verify(a.session, a.token)) return { ok: false, claimed: a.session };
    return { ok: true, session: a.session, token: a.token };
  };

  // ---- forwarding one request (intercepted HTTPS, or plain HTTP)
  const forward = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    f: { session: string; target: Target; path: string; secure: boolean },
  ) => {
    const started = Date.now();
    const { target } = f;
    const active = f.secure ? activeRule(target.host) : undefined;
    const drop = new Set(['host', 'expect']);
    // An intercepted host always loses the pod's credential headers, even if its secret vanished meanwhile.
    if (f.secure) for (const h of credentialHeadersOf(target.host)) drop.add(h);
    const headers = ['Host', hostHeader(target, f.secure ? 443 : 80), ...filterHeaders(req.rawHeaders, drop)];
    if (active) headers.push(active.rule.header, active.rule.render(active.secret));
    let status = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      auditForward(f, req.method, target.host, status, started, active !== undefined);
    };
    const fail = (code: number, message: string) => {
      status = code;
      if (!res.headersSent) {
        const body = JSON.stringify({ error: message });
        res.writeHead(code, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        });
        res.end(body);
      } else {
        res.destroy();
      }
      finish();
    };
    const up = upstreamOf(target);
    if (!up) return fail(403, 'destination not allowed');
    let upReq: http.ClientRequest;
    try {
      upReq = upstreamRequest(target, up, f, req.method, headers);
    } catch (e) {
      // e.g. an invalid character in a header; the message names the header, not its value.
      log(
        { session: f.session, host: target.host, err: (e as Error).message },
        'proxy: cannot build upstream request',
      );
      return fail(502, 'cannot build upstream request');
    }
    upReq.on('error', (e: NodeJS.ErrnoException) => {
      log(
        { session: f.session, host: target.host, err: e.message, code: e.code },
        'proxy: upstream request failed',
      );
      fail(
        e.code === 'EBLOCKED' ? 403 : 502,
        e.code === 'EBLOCKED' ? 'destination not allowed' : 'upstream failed',
      );
    });
    upReq.on('response', (upRes) => {
      status = upRes.statusCode ?? 502;
      res.writeHead(status, upRes.statusMessage, filterHeaders(upRes.rawHeaders, new Set()));
      // Headers leave at once; the body follows chunk by chunk (SSE, long polls, big downloads).
      res.flushHeaders();
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
      upRes.on('end', finish);
    });
    res.on('close', () => {
      if (!res.writableFinished) {
        upReq.destroy();
        finish();
      }
    });
    req.on('error', () => upReq.destroy());
    req.pipe(upReq);
  };

  // ---- WebSocket (and other) upgrades: forward the upgrade, then pipe both ways
  const forwardUpgrade = (
    req: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    f: { session: string; target: Target; path: string; secure: boolean },
  ) => {
    const started = Date.now();
    const { target } = f;
    const active = f.secure ? activeRule(target.host) : undefined;
    const drop = new Set(['host']);
    if (f.secure) for (const h of credentialHeadersOf(target.host)) drop.add(h);
    const headers = [
      'Host',
      hostHeader(target, f.secure ? 443 : 80),
      ...filterHeaders(req.rawHeaders, drop),
      'Connection',
      'Upgrade',
      'Upgrade',
      String(req.headers.upgrade ?? ''),
    ];
    if (active) headers.push(active.rule.header, active.rule.render(active.secret));
    const auditOnce = (status: number) =>
      auditForward(f, req.method, target.host, status, started, active !== undefined);
    const refuse = (code: number, text: string) => {
      socket.end(`HTTP/1.1 ${code} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      auditOnce(code);
    };
    const up = upstreamOf(target);
    if (!up) return refuse(403, 'Forbidden');
    let upReq: http.ClientRequest;
    try {
      upReq = upstreamRequest(target, up, f, req.method, headers);
    } catch {
      return refuse(502, 'Bad Gateway');
    }
    upReq.on('error', (e) => {
      log({ session: f.session, host: target.host, err: e.message }, 'proxy: upstream upgrade failed');
      if (socket.writable) refuse(502, 'Bad Gateway');
      else socket.destroy();
    });
    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      track(f.session, upSocket);
      socket.write(
        `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage}\r\n${rawHeaderBlock(upRes.rawHeaders)}\r\n`,
      );
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
      socket.on('close', () => upSocket.destroy());
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      auditOnce(upRes.statusCode ?? 101);
    });
    upReq.on('response', (upRes) => {
      // The upstream declined the upgrade: relay its answer and close.
      const hdrs = filterHeaders(upRes.rawHeaders, new Set());
      socket.write(
        `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage}\r\n${rawHeaderBlock(hdrs)}Connection: close\r\n\r\n`,
      );
      upRes.pipe(socket);
      auditOnce(upRes.statusCode ?? 502);
    });
    socket.on('close', () => upReq.destroy());
    upReq.end();
  };

  // ---- intercepted connections: TLS terminated here, requests parsed by an unlistened HTTP server
  const connInfo = new WeakMap<object, ConnInfo>();
  const inner = http.createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000 });
  const innerInfo = (s: object, reject: () => void): ConnInfo | undefined => {
    const info = connInfo.get(s);
    // The token is checked again on each request, so a revoke can never be outrun by a kept-alive connection.
    if (!info || !tokens.verify(info.session, info.token)) {
      reject();
      return undefined;
    }
    return info;
  };
  inner.on('request', (req, res) => {
    const info = innerInfo(req.socket, () => req.socket.destroy());
    if (!info) return;
    forward(req, res, {
      session: info.session,
      target: { host: info.host, port: info.port },
      path: originForm(req.url),
      secure: true,
    });
  });
  inner.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const info = innerInfo(socket, () => socket.destroy());
    if (!info) return;
    forwardUpgrade(req, socket, head, {
      session: info.session,
      target: { host: info.host, port: info.port },
      path: originForm(req.url),
      secure: true,
    });
  });
  inner.on('clientError', (_e, socket) => socket.destroy());

  const contexts = new Map<string, { certPem: string; ctx: tls.SecureContext }>();
  const intercept = async (socket: Duplex, head: Buffer, target: Target, session: string, token: string) => {
    let ctx: tls.SecureContext;
    try {
      const leaf = await ca.leafFor(target.host);
      const cached = contexts.get(target.host);
      if (cached && cached.certPem === leaf.certPem) ctx = cached.ctx;
      else {
        ctx = tls.createSecureContext({ cert: leaf.certPem, key: leaf.keyPem });
        contexts.set(target.host, { certPem: leaf.certPem, ctx });
      }
    } catch (e) {
      log({ host: target.host, err: (e as Error).message }, 'proxy: cannot mint a leaf certificate');
      socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    if (socket.destroyed) return;
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    const tlsSocket = new tls.TLSSocket(socket as net.Socket, {
      isServer: true,
      secureContext: ctx,
      ALPNProtocols: ['http/1.1'],
    });
    connInfo.set(tlsSocket, { session, token, host: target.host, port: target.port });
    track(session, tlsSocket);
    tlsSocket.on('error', () => tlsSocket.destroy());
    tlsSocket.once('secure', () => inner.emit('connection', tlsSocket));
  };

  const tunnel = (socket: Duplex, head: Buffer, target: Target, session: string) => {
    const started = Date.now();
    const up = upstreamOf(target);
    const write = (status: number) =>
      audit.write({
        session,
        method: 'CONNECT',
        host: target.host,
        path: '',
        status,
        durationMs: Date.now() - started,
        injected: false,
        tunnelled: status === 200,
      });
    if (!up) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return write(403);
    }
    const upstream = net.connect({
      host: up.host,
      port: up.port,
      ...(overrides.has(target.host) ? {} : { lookup: safeLookup as unknown as typeof dnsLookup }),
    });
    track(session, upstream);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      upstream.setNoDelay(true);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', (e: NodeJS.ErrnoException) => {
      if (!connected) {
        const blocked = e.code === 'EBLOCKED';
        log({ session, host: target.host, err: e.message }, 'proxy: tunnel connect failed');
        socket.end(
          blocked
            ? 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
            : 'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
        );
        write(blocked ? 403 : 502);
      }
      upstream.destroy();
    });
    upstream.once('close', () => {
      socket.destroy();
      if (connected) write(200);
    });
    socket.once('close', () => upstream.destroy());
  };

  // ---- the listening server
  const server = http.createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000 });
  server.on('connection', (s: net.Socket) => {
    s.setNoDelay(true);
    track(null, s);
  });
  server.on('clientError', (_e, socket) => socket.destroy());

  const denied = (
    socket: Duplex,
    req: http.IncomingMessage,
    host: string,
    auth: Extract<Auth, { ok: false }>,
    path: string,
  ) => {
    socket.on('error', () => {});
    socket.end(PROXY_AUTH_REQUIRED);
    audit.write({
      session: auth.claimed,
      method: req.method ?? '',
      host,
      path,
      status: 407,
      durationMs: 0,
      injected: false,
      tunnelled: false,
    });
  };

  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const target = parseHostPort(req.url ?? '');
    const auth = authenticate(req.headers['proxy-authorization']);
    if (!auth.ok) return denied(socket, req, target?.host ?? '', auth, '');
    track(auth.session, socket);
    if (!target) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    if (!allowed(target.host)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      audit.write({
        session: auth.session,
        method: 'CONNECT',
        host: target.host,
        path: '',
        status: 403,
        durationMs: 0,
        injected: false,
        tunnelled: false,
      });
      return;
    }
    // Only HTTPS on its standard port is intercepted; anything else to that host (ssh on 443 aside) passes.
    if (target.port === 443 && activeRule(target.host)) {
      intercept(socket, head, target, auth.session, auth.token).catch((e: Error) => {
        log({ session: auth.session, host: target.host, err: e.message }, 'proxy: interception failed');
        socket.destroy();
      });
    } else {
      tunnel(socket, head, target, auth.session);
    }
  });

  /** An absolute-form request (plain HTTP through the proxy); the Host and the target come from its URL. */
  const proxied = (req: http.IncomingMessage): { target: Target; path: string } | undefined => {
    let u: URL;
    try {
      u = new URL(req.url ?? '');
    } catch {
      return undefined;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'ws:') return undefined;
    const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    return { target: { host, port: u.port ? Number(u.port) : 80 }, path: `${u.pathname}${u.search}` };
  };

  server.on('request', (req, res) => {
    if ((req.url ?? '').startsWith('/')) {
      // A request to the proxy itself.
      const ok = req.url === '/health' && (req.method === 'GET' || req.method === 'HEAD');
      const body = JSON.stringify(ok ? { ok: true } : { error: 'not found' });
      res.writeHead(ok ? 200 : 404, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const p = proxied(req);
    const auth = authenticate(req.headers['proxy-authorization']);
    if (!auth.ok) {
      res.shouldKeepAlive = false;
      res.writeHead(407, {
        'proxy-authenticate': 'Basic realm="clauderon"',
        'content-type': 'application/json',
        connection: 'close',
      });
      res.end(JSON.stringify({ error: 'proxy authentication needed' }));
      audit.write({
        session: auth.claimed,
        method: req.method ?? '',
        host: p?.target.host ?? '',
        path: pathOnly(p?.path ?? ''),
        status: 407,
        durationMs: 0,
        injected: false,
        tunnelled: false,
      });
      return;
    }
    track(auth.session, req.socket);
    if (!p) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'only http:// URLs are proxied; use CONNECT for https' }));
      return;
    }
    if (!allowed(p.target.host)) {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'destination not allowed' }));
      audit.write({
        session: auth.session,
        method: req.method ?? '',
        host: p.target.host,
        path: pathOnly(p.path),
        status: 403,
        durationMs: 0,
        injected: false,
        tunnelled: false,
      });
      return;
    }
    // Plain HTTP is forwarded without credentials: injecting them would send them in clear text.
    forward(req, res, { session: auth.session, target: p.target, path: p.path, secure: false });
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const p = proxied(req);
    const auth = authenticate(req.headers['proxy-authorization']);
    if (!auth.ok) return denied(socket, req, p?.target.host ?? '', auth, pathOnly(p?.path ?? ''));
    track(auth.session, socket);
    if (!p || !allowed(p.target.host)) {
      socket.end(`HTTP/1.1 ${p ? 403 : 400} ${p ? 'Forbidden' : 'Bad Request'}\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    forwardUpgrade(req, socket, head, {
      session: auth.session,
      target: p.target,
      path: p.path,
      secure: false,
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((e: NodeJS.ErrnoException) => {
    unsubscribe();
    httpsAgent.destroy();
    httpAgent.destroy();
    void audit.close();
    throw new ClauderonError(
      'PROXY',
      `The proxy cannot listen on ${listen.host}:${listen.port}: ${e.message}`,
      {
        hint: e.code === 'EADDRINUSE' ? 'Another process uses that port; change proxy.listen.' : undefined,
        cause: e,
      },
    );
  });
  server.on('error', (e) => log({ err: e.message }, 'proxy: server error'));
  const addr = server.address() as net.AddressInfo;
  const shownHost = net.isIPv6(listen.host) ? `[${listen.host}]` : listen.host;
  const url = `http://${shownHost}:${addr.port}`;
  log({ url, rules: rules.map((r) => r.id), allow: config.allow.length }, 'proxy: listening');
  let stopped: Promise<void> | undefined;
  return {
    port: addr.port,
    host: listen.host,
    url,
    stop() {
      stopped ??= (async () => {
        unsubscribe();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of [...all]) s.destroy();
        inner.close();
        httpsAgent.destroy();
        httpAgent.destroy();
        await closed;
        await audit.close();
      })();
      return stopped;
    },
  };
}
