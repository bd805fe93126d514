import { copyFile, lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ClauderonError } from '@clauderon/protocol';
import { gitMessage, resolveCommit, run, tryRun } from './git.js';
import { inspectRepo } from './repo.js';

/** The local branch a session works on. */
export function sessionBranch(name: string): string {
  return `clauderon/${name}`;
}

/** Where a session's worktree lives under the clauderon home directory. */
export function worktreePath(home: string, name: string): string {
  // Names come from users and from directory listings: never let one reach outside worktrees/.
  if (!name || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw new ClauderonError('INVALID_NAME', `"${name}" cannot be used as a session directory name`);
  }
  return join(resolve(home), 'worktrees', name);
}

export interface CreateWorktreeOptions {
  repo: string;
  home: string;
  name: string;
  /** Any commit-ish; defaults to the repository's HEAD. */
  base?: string;
  /** Reproduce the repository's staged, unstaged and untracked (non-ignored) changes; only when base is HEAD. */
  includeUncommitted: boolean;
  signal?: AbortSignal;
}

export interface CreatedWorktree {
  path: string;
  branch: string;
  baseCommit: string;
  /** True when uncommitted changes were carried over (includeUncommitted and base resolved to HEAD). */
  uncommittedApplied: boolean;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ClauderonError('CANCELLED', 'worktree creation was cancelled');
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => null)) !== null;
}

async function validBranchName(repo: string, branch: string): Promise<boolean> {
  return (await tryRun(repo, ['check-ref-format', '--branch', branch])) !== null;
}

/**
 * Creates `${home}/worktrees/<name>` on a new branch `clauderon/<name>`. Undoes everything it did when any
 * step fails or the signal aborts, so no half worktree or stray branch is left behind.
 */
export async function createWorktree(opts: CreateWorktreeOptions): Promise<CreatedWorktree> {
  const { signal } = opts;
  checkAborted(signal);
  const info = await inspectRepo(opts.repo);
  const repo = info.root;
  const branch = sessionBranch(opts.name);
  const path = worktreePath(opts.home, opts.name);
  if (!(await validBranchName(repo, branch))) {
    throw new ClauderonError('INVALID_NAME', `"${opts.name}" cannot be used in a git branch name`);
  }
  if (await resolveCommit(repo, `refs/heads/${branch}`)) {
    throw new ClauderonError('SESSION_EXISTS', `branch ${branch} already exists in ${repo}`, {
      hint: `choose another --name, or delete the old branch with \`git branch -D ${branch}\``,
    });
  }
  if (await exists(path)) {
    throw new ClauderonError('SESSION_EXISTS', `worktree directory ${path} already exists`, {
      hint: `choose another --name, or delete the old session (or remove ${path})`,
    });
  }
  let baseCommit = info.headCommit!;
  if (opts.base !== undefined && opts.base !== '') {
    const resolved = await resolveCommit(repo, opts.base);
    if (!resolved) {
      throw new ClauderonError('REPO_INVALID', `base "${opts.base}" is not a commit in ${repo}`, {
        hint: 'pass --base with a branch, tag or commit that exists locally (run `git fetch` for remote ones)',
      });
    }
    baseCommit = resolved;
  }
  const carry = opts.includeUncommitted && baseCommit === info.headCommit;
  if (carry) {
    const unmerged = await run(repo, ['ls-files', '--unmerged']);
    if (unmerged.trim()) {
      throw new ClauderonError('REPO_INVALID', `repository ${repo} has unresolved merge conflicts`, {
        hint: 'resolve or abort the merge first, or create the session without uncommitted changes',
      });
    }
  }

  try {
    await mkdir(dirname(path), { recursive: true });
    checkAborted(signal);
    try {
      await run(repo, ['worktree', 'add', '--quiet', '-b', branch, path, baseCommit], { signal });
    } catch (e) {
      checkAborted(signal);
      throw new ClauderonError('REPO_INVALID', `could not create worktree ${path}: ${gitMessage(e)}`, {
        cause: e,
      });
    }
    if (carry) await carryUncommitted(repo, path, signal);
    checkAborted(signal);
    return { path, branch, baseCommit, uncommittedApplied: carry };
  } catch (e) {
    // The branch and the directory did not exist before (checked above), so everything there is ours.
    await undoWorktree(repo, path, branch);
    if (signal?.aborted) throw new ClauderonError('CANCELLED', 'worktree creation was cancelled');
    throw e;
  }
}

async function undoWorktree(repo: string, path: string, branch: string): Promise<void> {
  await tryRun(repo, ['worktree', 'remove', '--force', '--force', path]);
  await rm(path, { recursive: true, force: true }).catch(() => {});
  await tryRun(repo, ['worktree', 'prune']);
  await tryRun(repo, ['branch', '-D', branch]);
}

/** Reproduces the source repository's staged and unstaged changes and untracked files in the new worktree. */
async function carryUncommitted(repo: string, path: string, signal: AbortSignal | undefined): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'clauderon-carry-'));
  try {
    const diffArgs = [
      '--binary',
      '--no-renames',
      '--no-ext-diff',
      '--no-textconv',
      '--ignore-submodules=all',
    ];
    const staged = join(tmp, 'staged.patch');
    const unstaged = join(tmp, 'unstaged.patch');
    await run(repo, ['diff', '--cached', ...diffArgs, `--output=${staged}`], { signal });
    await run(repo, ['diff', ...diffArgs, `--output=${unstaged}`], { signal });
    try {
      if ((await stat(staged)).size > 0)
        await run(path, ['apply', '--index', '--whitespace=nowarn', staged], { signal });
      if ((await stat(unstaged)).size > 0)
        await run(path, ['apply', '--whitespace=nowarn', unstaged], { signal });
    } catch (e) {
      checkAborted(signal);
      throw new ClauderonError('REPO_INVALID', `could not carry uncommitted changes over: ${gitMessage(e)}`, {
        hint: 'commit or stash the changes, or create the session without uncommitted changes',
        cause: e,
      });
    }
    const others = await run(repo, ['ls-files', '-z', '--others', '--exclude-standard'], { signal });
    for (const rel of others.split('\0')) {
      // Embedded repositories are listed as "dir/": they are not part of this repository's state.
      if (!rel || rel.endsWith('/')) continue;
      checkAborted(signal);
      const from = join(repo, rel);
      const to = join(path, rel);
      const st = await lstat(from).catch(() => null);
      if (!st) continue; // vanished meanwhile
      await mkdir(dirname(to), { recursive: true });
      if (st.isSymbolicLink()) await symlink(await readlink(from), to);
      else if (st.isFile()) await copyFile(from, to);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface RemoveWorktreeOptions {
  repo: string;
  home: string;
  name: string;
  deleteBranch: 'always' | 'if-merged' | 'never';
}

/** Removes a session's worktree (and maybe its branch). Idempotent; works when the repository is gone. */
export async function removeWorktree(opts: RemoveWorktreeOptions): Promise<void> {
  const path = worktreePath(opts.home, opts.name);
  const branch = sessionBranch(opts.name);
  // An empty `repo` (an orphan found on disk) is not the current directory: find the repository from the
  // worktree's own `.git` pointer instead.
  let repo: string | null = opts.repo ? resolve(opts.repo) : await repoFromPointer(path);
  if (repo && (await tryRun(repo, ['rev-parse', '--git-dir']).catch(() => null)) === null) repo = null;
  if (repo && (await exists(path))) await tryRun(repo, ['worktree', 'remove', '--force', '--force', path]);
  await rm(path, { recursive: true, force: true });
  if (!repo) return;
  await tryRun(repo, ['worktree', 'prune']);
  if (opts.deleteBranch === 'always') await tryRun(repo, ['branch', '-D', branch]);
  // `branch -d` refuses unless merged into HEAD (or its upstream): then the branch stays, by design.
  else if (opts.deleteBranch === 'if-merged') await tryRun(repo, ['branch', '-d', branch]);
}

/** The repository a linked worktree belongs to, from its `.git` file (`gitdir: <repo>/.git/worktrees/<n>`). */
async function repoFromPointer(path: string): Promise<string | null> {
  const text = await readFile(join(path, '.git'), 'utf8').catch(() => null);
  const m = text ? /^gitdir: (.+)$/m.exec(text) : null;
  if (!m) return null;
  const gitdir = resolve(path, m[1]!.trim());
  const common = dirname(dirname(gitdir)); // <repo>/.git
  return basename(common) === '.git' ? dirname(common) : common;
}

export interface UnpulledCommitsOptions {
  repo: string;
  name: string;
  /** The pod's HEAD commit; it may not exist locally. */
  podHead?: string;
}

/**
 * Commits on the session side (the pod's HEAD) that the local branch `clauderon/<name>` does not have.
 * A pod commit unknown locally counts as at least 1; without podHead nothing is known, so 0.
 */
export async function unpulledCommits(opts: UnpulledCommitsOptions): Promise<number> {
  if (!opts.podHead) return 0;
  const repo = resolve(opts.repo);
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/i.test(opts.podHead)) return 1;
  const known = await resolveCommit(repo, opts.podHead).catch(() => null);
  if (!known) return 1;
  const local = await resolveCommit(repo, `refs/heads/${sessionBranch(opts.name)}`);
  const args = local
    ? ['rev-list', '--count', known, `^${local}`]
    : ['rev-list', '--count', known, '--not', '--all'];
  const out = await run(repo, args);
  const n = Number(out.trim());
  return Number.isFinite(n) ? n : 1;
}

/**
 * Before a pull moves the session branch, the session worktree's own uncommitted state (normally the copy
 * of the user's changes that was shipped at create) is put aside as a stash, so the branch can move and
 * nothing is lost. Returns true when something was stashed.
 */
export async function stashWorktreeChanges(opts: {
  home: string;
  name: string;
  signal?: AbortSignal;
}): Promise<boolean> {
  const wt = worktreePath(opts.home, opts.name);
  const status = await tryRun(wt, ['status', '--porcelain'], { signal: opts.signal });
  if (status === null || status.trim() === '') return false;
  await run(
    wt,
    [
      '-c',
      'user.name=clauderon',
      '-c',
      'user.email=clauderon@localhost',
      'stash',
      'push',
      '--include-untracked',
      '--quiet',
      '-m',
      `clauderon: ${opts.name} worktree state before pull`,
    ],
    { signal: opts.signal },
  );
  return true;
}
