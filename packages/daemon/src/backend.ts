import type { Writable } from 'node:stream';
import type { CreateSessionRequest, ProgressEvent, Session } from '@clauderon/protocol';
import type { WebSocket } from 'ws';

export type Emit = (e: ProgressEvent) => void;

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  hint?: string;
}

/** A place sessions run. The daemon's routes talk only to this interface. */
export interface SessionBackend {
  /** Rebuilds sessions from the backend's truth and finishes or rolls back interrupted work. */
  start(signal: AbortSignal): Promise<void>;
  create(req: CreateSessionRequest, emit: Emit, signal: AbortSignal): Promise<Session>;
  list(signal: AbortSignal): Promise<Session[]>;
  get(name: string, signal: AbortSignal): Promise<Session>;
  delete(name: string, opts: { force: boolean }, emit: Emit, signal: AbortSignal): Promise<void>;
  logs(
    name: string,
    opts: { follow: boolean; tail?: number },
    out: Writable,
    signal: AbortSignal,
  ): Promise<void>;
  pull(
    name: string,
    opts: { uncommitted: boolean; force: boolean },
    emit: Emit,
    signal: AbortSignal,
  ): Promise<{ commits: number; head: string; uncommittedApplied: boolean }>;
  /** Attaches a client WebSocket to the session's terminal; resolves when the client leaves. */
  attach(name: string, ws: WebSocket, size: { cols: number; rows: number }): Promise<void>;
  /** Objects that belong to no session; with `remove`, deletes them. */
  gc(opts: { remove: boolean }, signal: AbortSignal): Promise<{ orphans: string[]; removed: string[] }>;
  /** Health checks of the set-up (cluster, proxy, and optionally one session's pod). */
  doctor(opts: { session?: string }, signal: AbortSignal): Promise<DoctorCheck[]>;
  /** The proxy's CA certificate (PEM), for `clauderon proxy ca`. */
  proxyCa(): Promise<string>;
  /** Stops background work; in-flight operations have been aborted or finished by then. */
  stop(): Promise<void>;
}
