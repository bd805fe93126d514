import { request } from 'node:http';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { ErrorBody, Health, ProgressEvent, Session } from '@clauderon/protocol';
import { API_PREFIX, ClauderonError } from '@clauderon/protocol/core';

/** Talks to the daemon over its Unix socket. */
export class DaemonClient {
  readonly socket: string;

  constructor(socket: string) {
    this.socket = socket;
  }

  #unreachable(cause: unknown): ClauderonError {
    return new ClauderonError('DAEMON_UNREACHABLE', `no clauderon daemon is answering on ${this.socket}`, {
      hint: 'start it with `clauderon daemon --enable-kubernetes-backend` (in another terminal or as a service)',
      cause,
    });
  }

  /** One request; resolves to the raw response stream after checking the status. */
  #request(
    method: string,
    path: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<{ status: number; stream: Readable }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        {
          socketPath: this.socket,
          path: `${API_PREFIX}${path}`,
          method,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
          ...(signal ? { signal } : {}),
        },
        (res) => resolve({ status: res.statusCode ?? 0, stream: res }),
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (signal?.aborted) reject(new ClauderonError('CANCELLED', 'cancelled'));
        else if (['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'].includes(e.code ?? '')) reject(this.#unreachable(e));
        else if (e.code === 'EACCES') {
          reject(
            new ClauderonError('DAEMON_SOCKET', `permission denied on ${this.socket}`, {
              hint: 'the daemon belongs to another user; set CLAUDERON_HOME',
            }),
          );
        } else
          reject(
            new ClauderonError('DAEMON_UNREACHABLE', `lost the connection to the daemon: ${e.message}`, {
              cause: e,
            }),
          );
      });
      req.end(payload);
    });
  }

  async #json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const { status, stream } = await this.#request(method, path, body, signal);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ClauderonError('INTERNAL', `the daemon answered ${status} with a body that is not JSON`);
    }
    if (status >= 400) throw ClauderonError.fromBody(parsed as ErrorBody);
    return parsed as T;
  }

  health(signal?: AbortSignal): Promise<Health> {
    return this.#json('GET', '/health', undefined, signal);
  }

  async list(signal?: AbortSignal): Promise<Session[]> {
    return (await this.#json<{ sessions: Session[] }>('GET', '/sessions', undefined, signal)).sessions;
  }

  get(name: string, signal?: AbortSignal): Promise<Session> {
    return this.#json('GET', `/sessions/${encodeURIComponent(name)}`, undefined, signal);
  }

  async doctor(
    session: string | undefined,
    signal?: AbortSignal,
  ): Promise<Array<{ name: string; ok: boolean; detail: string; hint?: string }>> {
    return (
      await this.#json<{ checks: Array<{ name: string; ok: boolean; detail: string; hint?: string }> }>(
        'POST',
        '/doctor',
        session === undefined ? {} : { session },
        signal,
      )
    ).checks;
  }

  async proxyCa(signal?: AbortSignal): Promise<string> {
    const { status, stream } = await this.#request('GET', '/proxy/ca', undefined, signal);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (status >= 400) throw ClauderonError.fromBody(JSON.parse(text) as ErrorBody);
    return text;
  }

  gc(remove: boolean, signal?: AbortSignal): Promise<{ orphans: string[]; removed: string[] }> {
    return this.#json('POST', '/gc', { remove }, signal);
  }

  /** A streamed operation: yields progress events and returns the final one (result), or throws the error. */
  async *stream(
    method: string,
    path: string,
    body: unknown,
    signal?: AbortSignal,
  ): AsyncGenerator<ProgressEvent, ProgressEvent> {
    const { status, stream } = await this.#request(method, path, body, signal);
    if (status >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      throw ClauderonError.fromBody(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ErrorBody);
    }
    const rl = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
    let last: ProgressEvent | undefined;
    try {
      for await (const line of rl) {
        if (line.trim() === '') continue;
        const e = JSON.parse(line) as ProgressEvent;
        if (e.type === 'error') throw ClauderonError.fromBody(e.error as ErrorBody);
        last = e;
        if (e.type === 'progress') yield e;
        else break;
      }
    } catch (e) {
      if (signal?.aborted) throw new ClauderonError('CANCELLED', 'cancelled');
      if (e instanceof ClauderonError) throw e;
      throw new ClauderonError(
        'DAEMON_UNREACHABLE',
        `lost the connection to the daemon: ${(e as Error).message}`,
      );
    }
    if (!last)
      throw new ClauderonError('DAEMON_UNREACHABLE', 'the daemon closed the stream without a result');
    return last;
  }

  /** Raw text stream (logs). */
  async text(path: string, signal?: AbortSignal): Promise<Readable> {
    const { status, stream } = await this.#request('GET', path, undefined, signal);
    if (status >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      throw ClauderonError.fromBody(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ErrorBody);
    }
    return stream;
  }

  attachUrl(name: string, cols: number, rows: number): string {
    return `ws+unix://${this.socket}:${API_PREFIX}/sessions/${encodeURIComponent(name)}/attach?cols=${cols}&rows=${rows}`;
  }
}
