/** Small helpers shared by the kubelet modules. */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { KObject } from '../contract.js';

export type Json = Record<string, unknown>;

/** Reads a nested plain-object field, or undefined. */
export function obj(v: unknown): Json | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

export function arr<T = Json>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function spec(o: KObject): Json {
  return obj(o.spec) ?? {};
}

export function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) {
      if (ms <= 0) setImmediate(resolve);
      else resolve();
      return;
    }
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export function statusBody(code: number, reason: string, message: string): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

const reasons: Record<number, string> = { 400: 'BadRequest', 404: 'NotFound', 500: 'InternalError' };

/** Answers an HTTP request with a Kubernetes Status error. */
export function sendStatus(res: ServerResponse, code: number, message: string): void {
  const body = JSON.stringify(statusBody(code, reasons[code] ?? 'BadRequest', message));
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Answers a not-yet-upgraded socket with a Kubernetes Status error and closes it. */
export function rejectUpgrade(socket: Duplex, code: number, message: string): void {
  const body = JSON.stringify(statusBody(code, reasons[code] ?? 'BadRequest', message));
  socket.end(
    `HTTP/1.1 ${code} ${reasons[code] ?? 'Bad Request'}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Quotes a string for POSIX sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export const signalNumbers: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGABRT: 6,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

/** Exit code as a container runtime reports it: 128+N for a signal. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | number | null | undefined): number {
  if (typeof signal === 'number' && signal > 0) return 128 + signal;
  if (typeof signal === 'string') return 128 + (signalNumbers[signal] ?? 0);
  return code ?? 0;
}

/** Sends a signal to a whole process group, ignoring a group that is already gone. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  // Every process the kubelet starts leads its own group (detached, or a pty session). Never fall back to the
  // bare pid: once reaped it may already belong to someone else (pid_max can be as low as 32768).
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}
