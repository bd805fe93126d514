import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SessionSpec } from '@clauderon/protocol';

/** What the daemon remembers about a session locally. The cluster stays the source of truth. */
export interface StoredSession {
  spec: SessionSpec;
  /** Last create/delete step reached, for recovery after a crash. */
  state: 'creating' | 'ready' | 'deleting' | 'failed';
  updatedAt: string;
  worktree?: string;
  /** Last commit pulled back (delete refuses while the pod has commits beyond it). */
  pulledCommit?: string;
}

/**
 * A durable session cache: one JSON file per session, replaced atomically (write temp, fsync, rename,
 * fsync dir), so a crash mid-write leaves either the old or the new file, never a torn one.
 */
export class SessionStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Leftovers of writes interrupted by a crash.
    for (const f of readdirSync(dir)) if (f.endsWith('.tmp')) rmSync(join(dir, f), { force: true });
  }

  list(): StoredSession[] {
    const out: StoredSession[] = [];
    for (const f of readdirSync(this.#dir).sort()) {
      if (!f.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.#dir, f), 'utf8')) as StoredSession);
      } catch {
        // A file we cannot read is skipped; the cluster is the source of truth and reconcile rebuilds it.
      }
    }
    return out;
  }

  get(name: string): StoredSession | undefined {
    try {
      return JSON.parse(readFileSync(join(this.#dir, `${name}.json`), 'utf8')) as StoredSession;
    } catch {
      return undefined;
    }
  }

  async put(s: StoredSession): Promise<void> {
    const file = join(this.#dir, `${s.spec.name}.json`);
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify({ ...s, updatedAt: new Date().toISOString() }, null, 2));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    const dh = await open(this.#dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async delete(name: string): Promise<void> {
    await rm(join(this.#dir, `${name}.json`), { force: true });
  }
}
