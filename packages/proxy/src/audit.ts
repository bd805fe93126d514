import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';

/** One line of the audit log. Never holds a credential or a query string. */
export interface AuditEntry {
  time: string;
  session: string | null;
  method: string;
  host: string;
  /** Request path without its query string (queries may carry secrets); empty for tunnels. */
  path: string;
  status: number;
  durationMs: number;
  /** A credential was set on the upstream request. */
  injected: boolean;
  /** The connection was passed through untouched (raw TCP). */
  tunnelled: boolean;
}

/** Appends JSON lines to `path` (created with mode 0600). */
export class AuditLog {
  readonly #stream: WriteStream;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
    this.#stream.on('error', () => {
      // An unwritable audit log must not take the proxy down; stop() reports nothing either.
    });
  }

  write(e: Omit<AuditEntry, 'time'>): void {
    const line: AuditEntry = { time: new Date().toISOString(), ...e };
    this.#stream.write(`${JSON.stringify(line)}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#stream.end(resolve));
  }
}

/** The path of a request target without its query string or fragment. */
export function pathOnly(target: string): string {
  const i = target.search(/[?#]/);
  return i === -1 ? target : target.slice(0, i);
}
