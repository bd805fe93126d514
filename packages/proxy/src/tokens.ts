import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ClauderonError } from '@clauderon/protocol';

/** Per-session proxy credentials. Only hashes are stored; the token itself exists once, in the pod's Secret. */
export interface TokenRegistry {
  /** Issues (or replaces) the session's token and returns it; persisted at once, survives a daemon restart. */
  issue(session: string): string;
  /** Constant-time check of a session's token. */
  verify(session: string, token: string): boolean;
  /** Revokes the session's token: new requests fail at once and open connections are closed. */
  revoke(session: string): void;
  /** Sessions that hold a token. */
  list(): { session: string; issuedAt: string }[];
  /** Called with the session name after each revoke (the proxy closes that session's connections). */
  onRevoke(listener: (session: string) => void): () => void;
}

interface Entry {
  hash: string;
  issuedAt: string;
}

interface FileShape {
  version: 1;
  sessions: Record<string, Entry>;
}

const hash = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** A token registry persisted in `file` (JSON, mode 0600, written atomically). */
export function createTokenRegistry(file: string): TokenRegistry {
  const sessions = new Map<string, Entry>();
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as FileShape;
    for (const [name, e] of Object.entries(parsed.sessions ?? {})) {
      if (typeof e?.hash === 'string' && /^[0-9a-f]{64}$/.test(e.hash)) sessions.set(name, e);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ClauderonError('PROXY', `Cannot read the proxy token file ${file}: ${(e as Error).message}`, {
        hint: `Remove ${file}; sessions created before then must be recreated.`,
        cause: e,
      });
    }
  }
  const listeners = new Set<(session: string) => void>();
  const save = () => {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const body: FileShape = { version: 1, sessions: Object.fromEntries(sessions) };
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  };
  return {
    issue(session) {
      const token = randomBytes(32).toString('base64url');
      sessions.set(session, { hash: hash(token).toString('hex'), issuedAt: new Date().toISOString() });
      save();
      return token;
    },
    verify(session, token) {
      const e = sessions.get(session);
      // Hash even when the session is unknown, so both paths cost the same.
      const got = hash(token);
      const want = e ? Buffer.from(e.hash, 'hex') : Buffer.alloc(32);
      return timingSafeEqual(got, want) && e !== undefined;
    },
    revoke(session) {
      if (sessions.delete(session)) save();
      for (const l of listeners) {
        try {
          l(session);
        } catch {
          // A listener's failure must not keep the others from closing their connections.
        }
      }
    },
    list() {
      return [...sessions].map(([session, e]) => ({ session, issuedAt: e.issuedAt }));
    },
    onRevoke(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
