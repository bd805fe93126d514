import assert from 'node:assert/strict';
import { existsSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ClauderonError } from '@clauderon/protocol';
import { createWorktree, inspectRepo, removeWorktree, unpulledCommits } from './index.js';
import { cleanupTemp, g, makeRepo, tempDir, write } from './test-support.js';

after(cleanupTemp);

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<ClauderonError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ClauderonError, `expected ClauderonError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

function branches(repo: string): string[] {
  return g(repo, 'for-each-ref', '--format=%(refname:short)', 'refs/heads').split('\n').filter(Boolean);
}

describe('inspectRepo', () => {
  test('describes a repository', async () => {
    const repo = makeRepo();
    const info = await inspectRepo(join(repo, 'src'));
    assert.equal(info.root, repo);
    assert.equal(info.name, 'myrepo');
    assert.equal(info.branch, 'main');
    assert.equal(info.detached, false);
    assert.equal(info.bare, false);
    assert.equal(info.hasSubmodules, false);
    assert.equal(info.headCommit, g(repo, 'rev-parse', 'HEAD').trim());
    g(repo, 'checkout', '-q', '--detach');
    const det = await inspectRepo(repo);
    assert.equal(det.detached, true);
    assert.equal(det.branch, null);
  });

  test('refuses a missing path, a non-git directory, a bare repository and one without commits', async () => {
    const base = tempDir();
    const missing = await rejectsWith(
      inspectRepo(join(base, 'nope')),
      'CLAUDERON_E_REPO_INVALID',
      /does not exist/,
    );
    assert.ok(missing.hint);
    mkdirSync(join(base, 'plain'));
    await rejectsWith(inspectRepo(join(base, 'plain')), 'CLAUDERON_E_REPO_INVALID', /not a git repository/);
    g(base, 'init', '-q', '--bare', 'bare.git');
    await rejectsWith(inspectRepo(join(base, 'bare.git')), 'CLAUDERON_E_REPO_INVALID', /bare repository/);
    g(base, 'init', '-q', 'empty');
    const empty = await rejectsWith(
      inspectRepo(join(base, 'empty')),
      'CLAUDERON_E_REPO_INVALID',
      /no commits/,
    );
    assert.match(empty.hint ?? '', /make a first commit/);
  });
});

describe('createWorktree / removeWorktree', () => {
  test('creates the branch and worktree under home; a second create of the same name is SESSION_EXISTS', async () => {
    const repo = makeRepo();
    const home = tempDir();
    const wt = await createWorktree({ repo, home, name: 'one', includeUncommitted: false });
    assert.equal(wt.path, join(home, 'worktrees', 'one'));
    assert.equal(wt.branch, 'clauderon/one');
    assert.equal(g(wt.path, 'rev-parse', 'HEAD').trim(), g(repo, 'rev-parse', 'HEAD').trim());
    await rejectsWith(
      createWorktree({ repo, home, name: 'one', includeUncommitted: false }),
      'CLAUDERON_E_SESSION_EXISTS',
    );
    // a leftover directory without a branch is also an existing session
    mkdirSync(join(home, 'worktrees', 'two'), { recursive: true });
    await rejectsWith(
      createWorktree({ repo, home, name: 'two', includeUncommitted: false }),
      'CLAUDERON_E_SESSION_EXISTS',
    );
    assert.deepEqual(branches(repo).sort(), ['clauderon/one', 'main']);
  });

  test('an invalid base is REPO_INVALID with a hint and leaves nothing behind', async () => {
    const repo = makeRepo();
    const home = tempDir();
    const e = await rejectsWith(
      createWorktree({ repo, home, name: 'b', base: 'no-such-branch', includeUncommitted: false }),
      'CLAUDERON_E_REPO_INVALID',
      /no-such-branch/,
    );
    assert.ok(e.hint);
    assert.deepEqual(branches(repo), ['main']);
    assert.equal(existsSync(join(home, 'worktrees', 'b')), false);
  });

  test('rolls back the worktree and branch when a step fails', async () => {
    // failing post-checkout hook: `git worktree add` fails after creating the branch and directory
    const repo = makeRepo();
    const home = tempDir();
    write(repo, '.git/hooks/post-checkout', '#!/bin/sh\nexit 1\n', 0o755);
    await rejectsWith(
      createWorktree({ repo, home, name: 'hook', includeUncommitted: false }),
      'CLAUDERON_E_REPO_INVALID',
    );
    assert.deepEqual(branches(repo), ['main']);
    assert.equal(existsSync(join(home, 'worktrees', 'hook')), false);
    assert.equal(g(repo, 'worktree', 'list', '--porcelain').match(/^worktree /gm)?.length, 1);

    // carrying uncommitted changes fails midway (a hook put a file where an untracked symlink must go)
    const repo2 = makeRepo();
    symlinkSync('README.md', join(repo2, 'link'));
    write(repo2, '.git/hooks/post-checkout', '#!/bin/sh\necho x > link\n', 0o755);
    await assert.rejects(createWorktree({ repo: repo2, home, name: 'carry', includeUncommitted: true }));
    assert.deepEqual(branches(repo2), ['main']);
    assert.equal(existsSync(join(home, 'worktrees', 'carry')), false);
    assert.equal(g(repo2, 'worktree', 'list', '--porcelain').match(/^worktree /gm)?.length, 1);
  });

  test('an aborted signal cancels and leaves nothing behind', async () => {
    const repo = makeRepo();
    const home = tempDir();
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(
      createWorktree({ repo, home, name: 'abort', includeUncommitted: true, signal: ac.signal }),
      'CLAUDERON_E_CANCELLED',
    );
    assert.deepEqual(branches(repo), ['main']);
  });

  test('removeWorktree is idempotent, honours deleteBranch, and works when the repository is gone', async () => {
    const repo = makeRepo();
    const home = tempDir();
    const a = await createWorktree({ repo, home, name: 'a', includeUncommitted: false });
    write(a.path, 'dirty.txt', 'untracked\n');
    await removeWorktree({ repo, home, name: 'a', deleteBranch: 'never' });
    assert.equal(existsSync(a.path), false);
    assert.ok(branches(repo).includes('clauderon/a'));
    await removeWorktree({ repo, home, name: 'a', deleteBranch: 'never' }); // again: fine
    await removeWorktree({ repo, home, name: 'a', deleteBranch: 'always' });
    assert.ok(!branches(repo).includes('clauderon/a'));
    assert.equal(g(repo, 'worktree', 'list', '--porcelain').match(/^worktree /gm)?.length, 1);

    // if-merged keeps a branch with unmerged commits, deletes a merged one
    const b = await createWorktree({ repo, home, name: 'b', includeUncommitted: false });
    write(b.path, 'b.txt', 'b\n');
    g(b.path, 'add', '-A');
    g(b.path, 'commit', '-q', '-m', 'b');
    await removeWorktree({ repo, home, name: 'b', deleteBranch: 'if-merged' });
    assert.ok(branches(repo).includes('clauderon/b'));
    await createWorktree({ repo, home, name: 'c', includeUncommitted: false });
    await removeWorktree({ repo, home, name: 'c', deleteBranch: 'if-merged' });
    assert.ok(!branches(repo).includes('clauderon/c'));

    // an orphan found on disk (repo unknown): the repository is found from the worktree's pointer
    const o = await createWorktree({ repo, home, name: 'orphan', includeUncommitted: false });
    await removeWorktree({ repo: '', home, name: 'orphan', deleteBranch: 'never' });
    assert.equal(existsSync(o.path), false);
    assert.equal(g(repo, 'worktree', 'list', '--porcelain').match(/^worktree /gm)?.length, 1);

    // the source repository moved away: the directory still goes
    const d = await createWorktree({ repo, home, name: 'd', includeUncommitted: false });
    renameSync(repo, `${repo}-moved`);
    await removeWorktree({ repo, home, name: 'd', deleteBranch: 'always' });
    assert.equal(existsSync(d.path), false);
  });
});

describe('unpulledCommits', () => {
  test('counts pod commits the local branch lacks; an unknown pod commit counts as at least one', async () => {
    const repo = makeRepo();
    const home = tempDir();
    const wt = await createWorktree({ repo, home, name: 'u', includeUncommitted: false });
    const head = g(wt.path, 'rev-parse', 'HEAD').trim();
    assert.equal(await unpulledCommits({ repo, name: 'u' }), 0);
    assert.equal(await unpulledCommits({ repo, name: 'u', podHead: head }), 0);
    assert.equal(await unpulledCommits({ repo, name: 'u', podHead: 'f'.repeat(40) }), 1);
    // commits that exist locally but are not on the session branch (e.g. fetched by a pull that was not applied)
    g(repo, 'checkout', '-q', '-b', 'other');
    for (const n of [1, 2]) {
      writeFileSync(join(repo, `o${n}.txt`), `${n}\n`);
      g(repo, 'add', '-A');
      g(repo, 'commit', '-q', '-m', `o${n}`);
    }
    const other = g(repo, 'rev-parse', 'HEAD').trim();
    assert.equal(await unpulledCommits({ repo, name: 'u', podHead: other }), 2);
  });
});
