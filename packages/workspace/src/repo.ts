import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { ClauderonError } from '@clauderon/protocol';
import { gitMessage, resolveCommit, run, tryRun } from './git.js';

/** What clauderon needs to know about the repository a session starts from. */
export interface RepoInfo {
  /** Top-level directory of the working tree (`git rev-parse --show-toplevel`). */
  root: string;
  /** Commit HEAD points at; inspectRepo throws rather than return null, the type allows for callers' use. */
  headCommit: string | null;
  /** Short name of the checked-out branch, null when HEAD is detached. */
  branch: string | null;
  detached: boolean;
  bare: boolean;
  /** HEAD's tree has gitlinks (submodules): they are shipped as gitlinks only, never populated. */
  hasSubmodules: boolean;
  /** Folder name of the root, used for `/workspace/<name>` in the pod. */
  name: string;
}

/** Checks that `path` is a usable non-bare git repository with at least one commit and describes it. */
export async function inspectRepo(path: string): Promise<RepoInfo> {
  const abs = resolve(path);
  const st = await stat(abs).catch(() => null);
  if (!st) {
    throw new ClauderonError('REPO_INVALID', `repository path ${abs} does not exist`, {
      hint: 'pass --repo with the path of a local git repository',
    });
  }
  if (!st.isDirectory()) {
    throw new ClauderonError('REPO_INVALID', `repository path ${abs} is not a directory`, {
      hint: 'pass --repo with the path of a local git repository',
    });
  }
  let bareOut: string;
  try {
    bareOut = await run(abs, ['rev-parse', '--is-bare-repository']);
  } catch (e) {
    const why = gitMessage(e);
    if (/dubious ownership/.test(why)) {
      throw new ClauderonError('REPO_INVALID', `git refuses to use ${abs}: it is owned by another user`, {
        hint: `if you trust it: git config --global --add safe.directory ${abs}`,
        cause: e,
      });
    }
    throw new ClauderonError('REPO_INVALID', `${abs} is not a git repository`, {
      hint: 'run `git init` and make a first commit, or pass --repo with the path of a git repository',
      cause: e,
    });
  }
  if (bareOut.trim() === 'true') {
    throw new ClauderonError('REPO_INVALID', `${abs} is a bare repository; a session needs a working tree`, {
      hint: 'pass --repo with a clone that has a working tree (`git clone <bare> <dir>`)',
    });
  }
  let root: string;
  try {
    root = (await run(abs, ['rev-parse', '--show-toplevel'])).trim();
  } catch (e) {
    throw new ClauderonError('REPO_INVALID', `${abs} has no working tree: ${gitMessage(e)}`, {
      hint: 'pass --repo with the top-level directory of a git working tree',
    });
  }
  if (!root) {
    throw new ClauderonError('REPO_INVALID', `${abs} is inside a .git directory, not a working tree`, {
      hint: 'pass --repo with the top-level directory of a git working tree',
    });
  }
  const headCommit = await resolveCommit(root, 'HEAD');
  if (!headCommit) {
    throw new ClauderonError('REPO_INVALID', `repository ${root} has no commits yet`, {
      hint: 'make a first commit (`git add -A && git commit -m "initial commit"`) and try again',
    });
  }
  const sym = await tryRun(root, ['symbolic-ref', '--quiet', '--short', 'HEAD']);
  const branch = sym?.trim() || null;
  const tree = await run(root, ['ls-tree', '-r', '-z', '--full-tree', 'HEAD']);
  const hasSubmodules = tree.split('\0').some((line) => line.startsWith('160000 '));
  return {
    root,
    headCommit,
    branch,
    detached: branch === null,
    bare: false,
    hasSubmodules,
    name: basename(root),
  };
}
