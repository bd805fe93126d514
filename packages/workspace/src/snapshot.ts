import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readlink, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ClauderonError } from '@clauderon/protocol';
import * as tarStream from 'tar-stream';
import { gitMessage, isAncestor, resolveCommit, rethrowCancel, run, tryRun } from './git.js';
import { encodeHeader, HEADER_BYTES, SNAPSHOT_MAGIC, SNAPSHOT_SECTIONS } from './payload.js';

/** One path whose working-tree state differs from HEAD. */
export interface ManifestEntry {
  path: string;
  /** A added (incl. untracked), M modified (content or mode), T type changed, D deleted. */
  status: 'A' | 'M' | 'T' | 'D';
  /** Git mode of the working-tree file: 100644, 100755 or 120000 (symlink); null when deleted. */
  mode: string | null;
  /** Blob id as `git hash-object` computes it (for a symlink: of its target); null when deleted. */
  sha: string | null;
  /** Target of a symlink. */
  linkTarget?: string;
}

/** A snapshot of a session worktree, ready to ship to the pod (see podReceiveScript). */
export interface Snapshot {
  /** Exact number of bytes `open()` produces. */
  totalBytes: number;
  headCommit: string;
  /** Set when the bundle is incremental: the pod must already have this commit. */
  baseCommit: string | null;
  /** Every path whose working-tree state differs from HEAD (gitlinks excluded). */
  manifest: ManifestEntry[];
  /** A fresh stream of the whole payload; may be called again (retries). */
  open(): Readable;
  /** Removes the temporary files. */
  cleanup(): Promise<void>;
}

export interface BuildSnapshotOptions {
  worktree: string;
  branch: string;
  /** A commit the pod already has: when it is an ancestor of HEAD the bundle only carries newer history. */
  haveCommit?: string;
  signal?: AbortSignal;
}

/** Flags for every patch we produce: plain git format whatever the user's diff configuration says. */
export const PATCH_ARGS = [
  '--binary',
  '--no-renames',
  '--no-ext-diff',
  '--no-textconv',
  '--no-color',
  '--src-prefix=a/',
  '--dst-prefix=b/',
  '--ignore-submodules=all',
];

/** Lines of `git diff-tree --raw` that involve a gitlink (submodule): never shipped nor compared. */
export const GITLINK_LINE = /^:(160000 [0-7]{6}|[0-7]{6} 160000) /;

type HeaderArg = Parameters<tarStream.Pack['entry']>[0];

function syncError(message: string, cause?: unknown): ClauderonError {
  return new ClauderonError('SYNC_FAILED', message, cause === undefined ? {} : { cause });
}

/**
 * Builds the payload that makes the pod's repository equal to `worktree`: git history as a bundle, the
 * staged changes as a patch, the working-tree files that differ from HEAD as a tar, the deleted paths and a
 * manifest the pod verifies against. Everything is written to temporary files, never held in memory.
 */
export async function buildSnapshot(opts: BuildSnapshotOptions): Promise<Snapshot> {
  const wt = resolve(opts.worktree);
  const { signal } = opts;
  const o = { signal };
  const head = await resolveCommit(wt, 'HEAD', o);
  if (!head) throw syncError(`${wt} is not a git worktree with a commit`);
  const branchRef = `refs/heads/${opts.branch}`;
  const branchCommit = await resolveCommit(wt, branchRef, o);
  if (branchCommit !== head) {
    throw syncError(
      `branch ${opts.branch} does not point at HEAD of ${wt}; the session worktree was changed`,
    );
  }
  const format = (await tryRun(wt, ['rev-parse', '--show-object-format'], o))?.trim() || 'sha1';

  const tmp = await mkdtemp(join(tmpdir(), 'clauderon-snapshot-'));
  const files = Object.fromEntries(SNAPSHOT_SECTIONS.map((s) => [s, join(tmp, s)])) as Record<
    (typeof SNAPSHOT_SECTIONS)[number],
    string
  >;
  try {
    // 1. History. Incremental when the pod's commit is an ancestor; nothing at all when it is HEAD.
    let baseCommit: string | null = null;
    if (opts.haveCommit) {
      const have = await resolveCommit(wt, opts.haveCommit, o);
      if (have && (await isAncestor(wt, have, head, o))) baseCommit = have;
    }
    if (baseCommit === head) await writeFile(files.bundle, '');
    else {
      const range = baseCommit ? [branchRef, `^${baseCommit}`] : [branchRef];
      try {
        await run(wt, ['bundle', 'create', '--quiet', files.bundle, ...range], o);
      } catch (e) {
        rethrowCancel(e);
        throw syncError(`git bundle failed: ${gitMessage(e)}`, e);
      }
    }

    // 2. Staged changes (index vs HEAD) as a patch the pod applies to its index only.
    await run(wt, ['diff', '--cached', ...PATCH_ARGS, `--output=${files.index}`], o);

    // 3. What the working tree holds, computed with a throw-away index and object directory so the user's
    // repository is not touched: the tree of the index as is, and the tree of `git add -A`.
    const gitPath = async (p: string) => {
      const out = (await run(wt, ['rev-parse', '--git-path', p], o)).trim();
      return isAbsolute(out) ? out : join(wt, out);
    };
    const realIndex = await gitPath('index');
    const objects = await gitPath('objects');
    await mkdir(join(tmp, 'objects'));
    const scratch = (index: string) => ({
      signal,
      env: {
        GIT_INDEX_FILE: index,
        GIT_OBJECT_DIRECTORY: join(tmp, 'objects'),
        GIT_ALTERNATE_OBJECT_DIRECTORIES: objects,
      },
    });
    const idx0 = join(tmp, 'idx0');
    const idx1 = join(tmp, 'idx1');
    const haveIndex = await copyFile(realIndex, idx0).then(
      () => true,
      () => false,
    );
    if (haveIndex) {
      // Git trusts an entry's cached stat data only when the file is older than the index file ("racy
      // git"). A copy made now would look newer than an edit made in the same timestamp tick as the
      // checkout, hiding it; backdating the copy a second makes git re-hash anything that recent.
      await copyFile(realIndex, idx1);
      const st = await stat(realIndex);
      await utimes(idx1, st.atime, new Date(st.mtimeMs - 1000));
    }
    const indexTree = haveIndex ? ((await tryRun(wt, ['write-tree'], scratch(idx0)))?.trim() ?? '-') : '-';
    await run(wt, ['add', '--all', '--', '.'], scratch(idx1));
    const workTree = (await run(wt, ['write-tree'], scratch(idx1))).trim();
    const diffTree = ['diff-tree', '-r', '--no-renames', '--no-abbrev', head, workTree];
    const rawLines = (await run(wt, diffTree, scratch(idx1)))
      .split('\n')
      .filter((l) => l.startsWith(':') && !GITLINK_LINE.test(l));
    const manifest = parseRawZ(
      await run(wt, [...diffTree.slice(0, 1), '-z', ...diffTree.slice(1)], scratch(idx1)),
    );

    // 4. The files themselves, and the paths to delete first (deleted, and type changes).
    const deleted: string[] = [];
    const pack = tarStream.pack();
    const written = pipeline(pack, createWriteStream(files.tree));
    try {
      for (const e of manifest) {
        if (signal?.aborted) throw new ClauderonError('CANCELLED', 'snapshot was cancelled');
        if (e.status === 'D' || e.status === 'T') deleted.push(e.path);
        if (e.status === 'D') continue;
        const full = join(wt, e.path);
        if (e.mode === '120000') {
          e.linkTarget = await readlink(full);
          await entry(pack, { name: e.path, type: 'symlink', linkname: e.linkTarget, mode: 0o777 });
        } else {
          const st = await lstat(full);
          if (!st.isFile()) throw syncError(`${e.path} changed while the snapshot was taken`);
          const mode = e.mode === '100755' ? 0o755 : 0o644;
          await entry(pack, { name: e.path, type: 'file', size: st.size, mode, mtime: st.mtime }, full);
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      await written.catch(() => {});
      throw err;
    }
    await written;
    await writeFile(files.deleted, deleted.map((p) => `${printfEscape(p)}\n`).join(''), 'ascii');

    // 5. The manifest the pod checks its result against (see podReceiveScript).
    const manifestText = [
      'clauderon-manifest 1',
      `object-format ${format}`,
      `head ${head}`,
      `branch ${opts.branch}`,
      `index ${indexTree || '-'}`,
      `entries ${rawLines.length}`,
      ...rawLines,
      '',
    ].join('\n');
    await writeFile(files.manifest, manifestText, 'utf8');

    // 6. Sizes and one checksum over all sections for the header.
    const hash = createHash('sha256');
    const sizes: [string, number][] = [];
    for (const s of SNAPSHOT_SECTIONS) {
      sizes.push([s, (await stat(files[s])).size]);
      for await (const chunk of createReadStream(files[s])) hash.update(chunk as Buffer);
    }
    const header = encodeHeader(SNAPSHOT_MAGIC, sizes, [
      ['head', head],
      ['sha256', hash.digest('hex')],
    ]);
    const totalBytes = HEADER_BYTES + sizes.reduce((a, [, n]) => a + n, 0);
    let cleaned = false;
    return {
      totalBytes,
      headCommit: head,
      baseCommit,
      manifest,
      open(): Readable {
        if (cleaned) throw new Error('snapshot was cleaned up');
        return Readable.from(
          (async function* () {
            yield header;
            for (const s of SNAPSHOT_SECTIONS) yield* createReadStream(files[s]);
          })(),
          { objectMode: false },
        );
      },
      async cleanup() {
        cleaned = true;
        await rm(tmp, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    if (signal?.aborted && !(e instanceof ClauderonError && e.code === 'CLAUDERON_E_CANCELLED')) {
      throw new ClauderonError('CANCELLED', 'snapshot was cancelled', { cause: e });
    }
    throw e;
  }
}

async function entry(pack: tarStream.Pack, header: HeaderArg, file?: string): Promise<void> {
  let sink!: ReturnType<tarStream.Pack['entry']>;
  const flushed = new Promise<void>((resolvePromise, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolvePromise());
    if (!file) sink = pack.entry(header, cb);
    else if (!header.size) sink = pack.entry(header, Buffer.alloc(0), cb);
    else sink = pack.entry(header, cb);
  });
  if (file && header.size) {
    for await (const chunk of createReadStream(file)) {
      if (!sink.write(chunk as Buffer)) await once(sink, 'drain');
    }
    (sink as unknown as { end(): void }).end();
  }
  await flushed;
}

/** Escapes a path for `printf %b` in the pod: printable ASCII kept, every other byte as \\0ooo. */
export function printfEscape(path: string): string {
  let out = '';
  for (const b of Buffer.from(path, 'utf8')) {
    if (b >= 0x20 && b < 0x7f && b !== 0x5c) out += String.fromCharCode(b);
    else out += `\\0${b.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** Parses `git diff-tree -r -z` raw output into manifest entries, leaving out gitlinks. */
export function parseRawZ(out: string): ManifestEntry[] {
  const parts = out.split('\0');
  const entries: ManifestEntry[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const meta = parts[i]!;
    const path = parts[i + 1]!;
    const m = /^:([0-7]{6}) ([0-7]{6}) ([0-9a-f]+) ([0-9a-f]+) ([AMTD])$/.exec(meta);
    if (!m) continue;
    const [, , dstMode, , dstSha, status] = m;
    if (m[1] === '160000' || dstMode === '160000') continue;
    const deleted = status === 'D';
    entries.push({
      path,
      status: status as ManifestEntry['status'],
      mode: deleted ? null : dstMode!,
      sha: deleted ? null : dstSha!,
    });
  }
  return entries;
}
