import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ClauderonError } from '@clauderon/protocol';
import * as tarStream from 'tar-stream';
import { gitMessage, isAncestor, resolveCommit, rethrowCancel, run, tryRun } from './git.js';
import { HEADER_BYTES, type Header, PULL_MAGIC, PULL_SECTIONS, parseHeader } from './payload.js';
import { sessionBranch } from './worktree.js';

export interface ApplyPulledBundleOptions {
  repo: string;
  name: string;
  /** The pod's payload as written by podBundleScript. */
  input: Readable;
  /** Move the local branch to the pod's commit even when that is not a fast-forward. */
  force?: boolean;
  signal?: AbortSignal;
}

export interface PullResult {
  /** Commits the local branch gained. */
  commits: number;
  /** The pod's branch head. */
  head: string;
  uncommittedApplied: boolean;
}

function pullError(message: string, opts: { hint?: string; cause?: unknown } = {}): ClauderonError {
  return new ClauderonError('PULL_FAILED', message, opts);
}

/** Reads a length-prefixed payload from `input` into one file per section under `dir`. */
export async function readPayload(
  input: Readable,
  magic: string,
  sections: readonly string[],
  dir: string,
  signal?: AbortSignal,
): Promise<{ header: Header; files: Record<string, string> }> {
  const files = Object.fromEntries(sections.map((s) => [s, join(dir, s)]));
  let head = Buffer.alloc(0);
  let header: Header | undefined;
  let idx = -1;
  let left = 0;
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  const hash = createHash('sha256');
  const next = async () => {
    await fh?.close();
    fh = undefined;
    while (++idx < sections.length) {
      const s = sections[idx]!;
      fh = await open(files[s]!, 'w');
      left = header!.sizes.get(s)!;
      if (left > 0) return;
      await fh.close();
      fh = undefined;
    }
  };
  try {
    for await (const raw of input) {
      if (signal?.aborted) throw new ClauderonError('CANCELLED', 'pull was cancelled');
      if (header && idx >= sections.length) continue;
      let chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as string);
      if (!header) {
        head = Buffer.concat([head, chunk]);
        if (head.length < HEADER_BYTES) continue;
        header = parseHeader(head.subarray(0, HEADER_BYTES), magic, sections);
        chunk = head.subarray(HEADER_BYTES);
        await next();
      }
      while (chunk.length > 0 && fh) {
        const part = chunk.subarray(0, left);
        await fh.write(part);
        hash.update(part);
        left -= part.length;
        chunk = chunk.subarray(part.length);
        if (left === 0) await next();
      }
      // Once complete, keep draining instead of breaking out: breaking would destroy the caller's stream
      // (an exec's stdout whose exit status the caller still wants).
    }
    if (!header) throw new Error('payload header is truncated or malformed');
    if (idx < sections.length) throw new Error(`payload truncated in section ${sections[idx]}`);
  } finally {
    await fh?.close();
  }
  const sum = header.fields.get('sha256');
  if (sum && sum !== '-' && sum !== hash.digest('hex')) throw new Error('payload corrupted: sha256 mismatch');
  return { header, files };
}

/** The worktree (if any) that has `refs/heads/<branch>` checked out. */
async function worktreeOf(repo: string, branch: string): Promise<string | null> {
  // Newline-separated (not -z) so it works with git before 2.36.
  const out = await run(repo, ['worktree', 'list', '--porcelain']);
  let path: string | null = null;
  for (const line of out.split('\n')) {
    if (line.startsWith('worktree ')) path = line.slice('worktree '.length);
    else if (line === `branch refs/heads/${branch}`) return path;
  }
  return null;
}

/**
 * Brings a pod's work home: verifies the bundle, fetches only `refs/heads/clauderon/<name>` (fast-forward
 * unless forced; pod refs, hooks and config are never taken), updates the session worktree and applies the
 * pod's uncommitted changes there (`git apply`, and untracked files checked for paths that leave the tree).
 */
export async function applyPulledBundle(opts: ApplyPulledBundleOptions): Promise<PullResult> {
  const repo = resolve(opts.repo);
  const { signal } = opts;
  const branch = sessionBranch(opts.name);
  const ref = `refs/heads/${branch}`;
  const tmp = await mkdtemp(join(tmpdir(), 'clauderon-pull-'));
  try {
    let payload: Awaited<ReturnType<typeof readPayload>>;
    try {
      payload = await readPayload(opts.input, PULL_MAGIC, PULL_SECTIONS, tmp, signal);
    } catch (e) {
      if (e instanceof ClauderonError) throw e;
      throw pullError(`bad pull-back payload from the pod: ${(e as Error).message}`, { cause: e });
    }
    const { header, files } = payload;
    const head = header.fields.get('head') ?? '';
    if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(head)) throw pullError('bad pull-back payload: no head commit');

    // 1. History: only our branch, verified by git (fsck on), into a private ref first.
    const tempRef = `refs/clauderon-pull/${opts.name}`;
    if (header.sizes.get('bundle')! > 0) {
      try {
        await run(repo, ['bundle', 'verify', '--quiet', files.bundle!], { signal });
      } catch (e) {
        rethrowCancel(e);
        throw pullError(`the pod's bundle does not apply here: ${gitMessage(e)}`, {
          hint: 'the local repository may lack the base commit; pull again without an incremental base',
          cause: e,
        });
      }
      const heads = await run(repo, ['bundle', 'list-heads', files.bundle!, ref], { signal });
      const line = heads.split('\n').find((l) => l.endsWith(` ${ref}`));
      if (!line || line.split(' ')[0] !== head)
        throw pullError(`the pod's bundle does not carry ${ref} at ${head}`);
      try {
        await run(
          repo,
          ['fetch', '--quiet', '--no-tags', '--no-recurse-submodules', files.bundle!, `+${ref}:${tempRef}`],
          { signal, config: ['fetch.fsckObjects=true', 'transfer.fsckObjects=true'] },
        );
      } catch (e) {
        rethrowCancel(e);
        throw pullError(`fetching from the pod's bundle failed: ${gitMessage(e)}`, { cause: e });
      }
    }
    const fetched = await resolveCommit(repo, head, { signal });
    await tryRun(repo, ['update-ref', '-d', tempRef]);
    if (!fetched) throw pullError(`the pod's commit ${head} is not in the bundle nor the local repository`);

    // 2. Move the local branch (and its worktree) to the pod's commit.
    const local = await resolveCommit(repo, ref, { signal });
    const wt = await worktreeOf(repo, branch);
    let commits = 0;
    if (local !== head) {
      const ff = local === null || (await isAncestor(repo, local, head, { signal }));
      const behind = local !== null && !ff && (await isAncestor(repo, head, local, { signal }));
      if (!ff && !behind && !opts.force) {
        throw pullError(
          `local ${branch} and the pod's branch have diverged; refusing a non-fast-forward pull`,
          {
            hint: 'merge or rebase locally, or pull with --force to take the pod’s branch as it is',
          },
        );
      }
      if (ff || opts.force) {
        commits = Number(
          (
            await run(repo, ['rev-list', '--count', head, ...(local ? [`^${local}`] : [])], { signal })
          ).trim(),
        );
        try {
          if (wt && ff && local) await run(wt, ['merge', '--ff-only', '--quiet', head], { signal });
          else if (wt) await run(wt, ['reset', '--keep', '--quiet', head], { signal });
          else await run(repo, ['update-ref', '-m', 'clauderon pull', ref, head, ...(local ? [local] : [])]);
        } catch (e) {
          rethrowCancel(e);
          throw pullError(`could not update ${branch}: ${gitMessage(e)}`, {
            hint: 'commit or stash local changes in the session worktree, then pull again',
            cause: e,
          });
        }
      }
    }

    // 3. Uncommitted changes from the pod.
    const patchSize = header.sizes.get('patch')!;
    const treeSize = header.sizes.get('tree')!;
    if (patchSize === 0 && treeSize === 0) return { commits, head, uncommittedApplied: false };
    if (!wt)
      throw pullError(`no local worktree has ${branch} checked out to apply the pod's uncommitted changes`);
    const entries = treeSize > 0 ? await checkTar(files.tree!, wt) : [];
    if (patchSize > 0) {
      try {
        await run(wt, ['apply', '--whitespace=nowarn', files.patch!], { signal });
      } catch (e) {
        rethrowCancel(e);
        throw pullError(`the pod's uncommitted changes do not apply: ${gitMessage(e)}`, { cause: e });
      }
    }
    if (treeSize > 0) await extractTar(files.tree!, wt, entries);
    return { commits, head, uncommittedApplied: true };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

interface SafeEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  linkname?: string;
}

/** Normalises a tar member name, refusing anything that could leave the tree or touch `.git`. */
export function safeRelPath(name: string): string {
  if (name.includes('\0') || name.startsWith('/') || /^[A-Za-z]:/.test(name)) {
    throw pullError(`refusing untracked file with an absolute path: ${JSON.stringify(name)}`);
  }
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) throw pullError(`refusing untracked file with an empty path`);
  for (const p of parts) {
    if (p === '..')
      throw pullError(`refusing untracked file outside the repository: ${JSON.stringify(name)}`);
    if (p.toLowerCase() === '.git') throw pullError(`refusing to write into .git: ${JSON.stringify(name)}`);
  }
  return parts.join('/');
}

/** First pass: every member must be a plain file, directory or in-tree symlink, new, and not below a link. */
async function checkTar(file: string, root: string): Promise<SafeEntry[]> {
  const entries: SafeEntry[] = [];
  const links = new Set<string>();
  const seen = new Set<string>();
  const files = new Set<string>();
  const extract = tarStream.extract();
  const done = pipeline(createReadStream(file), extract);
  try {
    for await (const e of extract) {
      const h = e.header;
      e.resume();
      if (h.type !== 'file' && h.type !== 'directory' && h.type !== 'symlink') {
        throw pullError(`refusing untracked entry of type ${h.type}: ${JSON.stringify(h.name)}`);
      }
      const name = safeRelPath(h.name);
      const parts = name.split('/');
      for (let i = 1; i < parts.length; i++) {
        const prefix = parts.slice(0, i).join('/');
        const st = await lstat(join(root, prefix)).catch(() => null);
        if (links.has(prefix) || files.has(prefix) || st?.isSymbolicLink() || (st && !st.isDirectory())) {
          throw pullError(`refusing untracked file below a symlink or file: ${JSON.stringify(h.name)}`);
        }
      }
      if (h.type === 'symlink') {
        const target = h.linkname ?? '';
        const resolved = posix.normalize(posix.join(posix.dirname(name), target));
        if (!target || target.startsWith('/') || resolved === '..' || resolved.startsWith('../')) {
          throw pullError(`refusing symlink that leaves the repository: ${name} -> ${target}`);
        }
        links.add(name);
      }
      const existing = await lstat(join(root, name)).catch(() => null);
      if (existing && !(h.type === 'directory' && existing.isDirectory())) {
        throw pullError(`untracked file ${name} from the pod already exists locally; not overwriting it`);
      }
      if (seen.has(name)) throw pullError(`duplicate untracked entry ${name}`);
      seen.add(name);
      if (h.type === 'file') files.add(name);
      const entry: SafeEntry = { name, type: h.type, mode: (h.mode ?? 0o644) & 0o111 ? 0o755 : 0o644 };
      if (h.linkname) entry.linkname = h.linkname;
      entries.push(entry);
    }
    await done;
  } catch (e) {
    extract.destroy();
    await done.catch(() => {});
    if (e instanceof ClauderonError) throw e;
    throw pullError(`the pod's untracked files are not a valid tar archive: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return entries;
}

/** Second pass: writes the checked entries; files are created exclusively (never through a link). */
async function extractTar(file: string, root: string, allowed: SafeEntry[]): Promise<void> {
  const byName = new Map(allowed.map((e) => [e.name, e]));
  const extract = tarStream.extract();
  const done = pipeline(createReadStream(file), extract);
  for await (const e of extract) {
    const h = e.header;
    const entry = byName.get(safeRelPath(h.name));
    if (!entry || entry.type !== h.type)
      throw pullError('the untracked-files archive changed while reading it');
    const target = join(root, entry.name);
    if (entry.type === 'directory') {
      e.resume();
      await mkdir(target, { recursive: true });
      continue;
    }
    await mkdir(join(target, '..'), { recursive: true });
    if (entry.type === 'symlink') {
      e.resume();
      await symlink(entry.linkname!, target);
      continue;
    }
    const fh = await open(target, 'wx', entry.mode);
    try {
      for await (const chunk of e) await fh.write(chunk as Buffer);
      await fh.chmod(entry.mode);
    } finally {
      await fh.close();
    }
  }
  await done;
}
