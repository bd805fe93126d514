import type { IncomingMessage } from 'node:http';
import { isAbsolute } from 'node:path';
import {
  API_PREFIX,
  API_VERSION,
  ClauderonError,
  CreateSessionRequest,
  type ProgressEvent,
  printable,
  VERSION,
  validateSessionName,
} from '@clauderon/protocol';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import type { SessionBackend } from './backend.js';
import { httpStatusFor, toErrorBody } from './http-errors.js';

export interface AppOptions {
  backend: SessionBackend;
  logger: Logger;
  kubernetesBackend: boolean;
  /** Tracks long operations so shutdown can finish or abort them. */
  inflight: InflightTracker;
}

/** Long operations in progress; shutdown waits for them, then aborts the rest. */
export class InflightTracker {
  readonly #ops = new Map<symbol, { controller: AbortController; done: Promise<unknown>; what: string }>();
  #closed = false;

  get size(): number {
    return this.#ops.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `fn` as tracked work with a signal that aborts on client disconnect or shutdown. */
  run<T>(what: string, external: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new ClauderonError('DAEMON_UNREACHABLE', 'the daemon is shutting down', { hint: 'start it again' }),
      );
    }
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, external]);
    const key = Symbol(what);
    const done = fn(signal).finally(() => this.#ops.delete(key));
    this.#ops.set(key, { controller, done: done.catch(() => undefined), what });
    return done;
  }

  /** Stops new work, waits up to `graceMs` for running work, then aborts what is left and waits for it. */
  async drain(graceMs: number): Promise<string[]> {
    this.#closed = true;
    const all = () => Promise.all([...this.#ops.values()].map((o) => o.done));
    const timedOut = await Promise.race([
      all().then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref()),
    ]);
    const aborted = [...this.#ops.values()].map((o) => o.what);
    if (timedOut) {
      for (const o of this.#ops.values())
        o.controller.abort(new ClauderonError('CANCELLED', 'the daemon is shutting down'));
      await all();
    }
    return timedOut ? aborted : [];
  }
}

/** Starts a newline-delimited JSON event stream; the returned signal aborts when the client goes away. */
function ndjson(
  req: FastifyRequest,
  reply: FastifyReply,
): { emit: (e: ProgressEvent) => void; end: () => void; signal: AbortSignal } {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort(new ClauderonError('CANCELLED', 'the client went away'));
  });
  void req;
  return {
    emit: (e) => {
      if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(e)}\n`);
    },
    end: () => res.end(),
    signal: ac.signal,
  };
}

async function streamOperation<T>(
  req: FastifyRequest,
  reply: FastifyReply,
  opts: AppOptions,
  what: string,
  fn: (emit: (e: ProgressEvent) => void, signal: AbortSignal) => Promise<T>,
  toResult: (t: T) => ProgressEvent,
): Promise<void> {
  const s = ndjson(req, reply);
  try {
    const out = await opts.inflight.run(what, s.signal, (signal) => fn(s.emit, signal));
    s.emit(toResult(out));
  } catch (e) {
    const body = toErrorBody(e);
    if (body.code === 'CLAUDERON_E_INTERNAL') opts.logger.error({ err: e }, `${what} failed`);
    s.emit({ type: 'error', error: body });
  } finally {
    s.end();
  }
}

/** What the schema cannot say: the same prompt and repository rules the CLI applies before sending. */
function checkCreateBody(body: CreateSessionRequest): void {
  if (!isAbsolute(body.repo)) {
    throw new ClauderonError('REPO_INVALID', `repository path "${printable(body.repo)}" is not absolute`, {
      hint: 'send the absolute path of a local git repository',
    });
  }
  if (body.prompt.trim() === '') throw new ClauderonError('INVALID_INPUT', 'the prompt is empty');
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(body.prompt) || body.prompt.includes('\ufffd')) {
    throw new ClauderonError(
      'INVALID_INPUT',
      'the prompt contains control characters or is not valid UTF-8',
      {
        hint: 'remove terminal escape codes and binary data from the prompt',
      },
    );
  }
}

function sessionName(req: FastifyRequest): string {
  return validateSessionName((req.params as { name: string }).name);
}

/** The daemon's HTTP API, built separately from the listener so tests can use `inject()`. */
export function buildApp(opts: AppOptions): FastifyInstance {
  const { backend } = opts;
  const app = Fastify({
    loggerInstance: opts.logger.child(
      { component: 'http' },
      { level: 'warn' },
    ) as unknown as FastifyBaseLogger,
    bodyLimit: 4 * 1024 * 1024,
    // The API is strict: unknown fields and wrong types are refused, never dropped or coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  const started = Date.now();

  app.setErrorHandler((err, _req, reply) => {
    const body = toErrorBody(err);
    if (body.code === 'CLAUDERON_E_INTERNAL') opts.logger.error({ err }, 'request failed');
    void reply.status(httpStatusFor(body.code)).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .status(404)
      .send({ code: 'CLAUDERON_E_USAGE', message: `no such endpoint: ${req.method} ${req.url}` });
  });

  app.get(`${API_PREFIX}/health`, async () => ({
    ok: true,
    version: VERSION,
    apiVersion: API_VERSION,
    pid: process.pid,
    kubernetesBackend: opts.kubernetesBackend,
    uptimeSeconds: (Date.now() - started) / 1000,
  }));

  app.get(`${API_PREFIX}/sessions`, async (req) => {
    const ac = new AbortController();
    req.raw.once('close', () => ac.abort());
    return { sessions: await backend.list(ac.signal) };
  });

  app.post(`${API_PREFIX}/sessions`, { schema: { body: CreateSessionRequest } }, async (req, reply) => {
    const body = req.body as CreateSessionRequest;
    if (body.name !== undefined) validateSessionName(body.name);
    checkCreateBody(body);
    await streamOperation(
      req,
      reply,
      opts,
      'create',
      (emit, signal) => backend.create(body, emit, signal),
      (session) => ({ type: 'result', session }),
    );
  });

  app.get(`${API_PREFIX}/sessions/:name`, async (req) =>
    backend.get(sessionName(req), AbortSignal.timeout(60_000)),
  );

  app.delete(`${API_PREFIX}/sessions/:name`, async (req, reply) => {
    const name = sessionName(req);
    const force = ['1', 'true'].includes(String((req.query as { force?: string }).force ?? ''));
    await streamOperation(
      req,
      reply,
      opts,
      `delete ${name}`,
      async (emit, signal) => {
        await backend.delete(name, { force }, emit, signal);
        return name;
      },
      () => ({ type: 'done', message: `session ${name} deleted` }),
    );
  });

  app.post(`${API_PREFIX}/sessions/:name/pull`, async (req, reply) => {
    const name = sessionName(req);
    const q = (req.body ?? {}) as { uncommitted?: boolean; force?: boolean };
    await streamOperation(
      req,
      reply,
      opts,
      `pull ${name}`,
      (emit, signal) =>
        backend.pull(name, { uncommitted: q.uncommitted === true, force: q.force === true }, emit, signal),
      (r) => ({
        type: 'done',
        message: `${r.commits} new commit(s) on clauderon/${name}, now at ${r.head.slice(0, 12)}${r.uncommittedApplied ? '; uncommitted changes applied to the session worktree' : ''}`,
        data: r,
      }),
    );
  });

  app.get(`${API_PREFIX}/sessions/:name/logs`, async (req, reply) => {
    const name = sessionName(req);
    const q = req.query as { follow?: string; tail?: string };
    const tail = q.tail !== undefined ? Number(q.tail) : undefined;
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) {
      throw new ClauderonError('USAGE', `--tail must be a non-negative integer, got ${q.tail}`);
    }
    // Resolve the session first so a missing one is a proper error response, not a broken stream.
    await backend.get(name, AbortSignal.timeout(60_000));
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    try {
      await backend.logs(
        name,
        { follow: q.follow === '1' || q.follow === 'true', ...(tail !== undefined ? { tail } : {}) },
        res,
        ac.signal,
      );
    } catch (e) {
      if (!ac.signal.aborted) res.write(`\n[clauderon] ${toErrorBody(e).message}\n`);
    } finally {
      res.end();
    }
  });

  app.post(`${API_PREFIX}/doctor`, async (req) => {
    const session = (req.body as { session?: unknown } | undefined)?.session;
    if (session !== undefined && typeof session !== 'string')
      throw new ClauderonError('INVALID_INPUT', 'session must be a string');
    if (session !== undefined) validateSessionName(session);
    return {
      checks: await backend.doctor(session === undefined ? {} : { session }, AbortSignal.timeout(60_000)),
    };
  });

  app.get(`${API_PREFIX}/proxy/ca`, async (_req, reply) => {
    void reply.type('application/x-pem-file');
    return backend.proxyCa();
  });

  app.post(`${API_PREFIX}/gc`, async (req) => {
    const remove = (req.body as { remove?: boolean } | undefined)?.remove === true;
    return backend.gc({ remove }, AbortSignal.timeout(120_000));
  });

  // Terminals: a WebSocket per attached client.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  app.server.on('upgrade', (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = new RegExp(`^${API_PREFIX}/sessions/([^/]+)/attach$`).exec(url.pathname);
    if (!m) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      return;
    }
    const name = decodeURIComponent(m[1]!);
    const cols = Number(url.searchParams.get('cols') ?? 80) || 80;
    const rows = Number(url.searchParams.get('rows') ?? 24) || 24;
    wss.handleUpgrade(req, socket, head, (ws) => {
      opts.inflight
        .run(`attach ${name}`, new AbortController().signal, async () => {
          validateSessionName(name);
          await backend.attach(name, ws, { cols, rows });
        })
        .catch((e) => {
          const body = toErrorBody(e);
          if (ws.readyState === ws.OPEN) {
            ws.send(JSON.stringify({ type: 'error', error: body }));
            ws.close(4000, body.code);
          }
        });
    });
  });
  app.addHook('onClose', async () => {
    for (const c of wss.clients) c.close(1001, 'daemon shutting down');
    wss.close();
  });
  return app;
}
