import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  lstatSync,
  readFileSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import {
  buildSnapshot,
  createWorktree,
  inspectRepo,
  podReceiveScript,
  type Snapshot,
  syncMarkerPath,
} from './index.js';
import {
  cleanupTemp,
  g,
  makeRepo,
  type Result,
  repoView,
  runScript,
  tempDir,
  write,
} from './test-support.js';

after(cleanupTemp);

async function ship(
  worktree: string,
  branch: string,
  podDir: string,
  opts: { haveCommit?: string; mangle?: (buf: Buffer) => Buffer; force?: boolean; reopen?: boolean } = {},
): Promise<{ result: Result; snap: Snapshot }> {
  const snap = await buildSnapshot({
    worktree,
    branch,
    ...(opts.haveCommit ? { haveCommit: opts.haveCommit } : {}),
  });
  try {
    const script = podReceiveScript({ dir: podDir, branch, ...(opts.force ? { force: true } : {}) });
    let input: Readable | Buffer = snap.open();
    if (opts.mangle) {
      const chunks: Buffer[] = [];
      for await (const c of snap.open()) chunks.push(c as Buffer);
      const whole = Buffer.concat(chunks);
      assert.equal(whole.length, snap.totalBytes);
      input = opts.mangle(whole);
    }
    if (opts.reopen) {
      // open() again gives the same bytes (the daemon retries a failed transfer)
      const a = await collect(snap.open());
      const b = await collect(snap.open());
      assert.equal(a.length, snap.totalBytes);
      assert.ok(a.equals(b));
    }
    const result = await runScript(script, input);
    return { result, snap };
  } finally {
    await snap.cleanup();
  }
}

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A source repository with every kind of local state a user may have. */
function dirtyRepo(): string {
  const repo = makeRepo();
  write(repo, 'bin/data.bin', Buffer.from([0, 1, 2, 255, 254, 0, 10, 13]));
  write(repo, 'dir with space/ünïcödé file.txt', 'unicode\n');
  write(repo, 'staged-then-edited.txt', 'v1\n');
  write(repo, 'odd\nname\twith\\slash.txt', 'odd\n');
  g(repo, 'add', '-A');
  g(repo, 'commit', '-q', '-m', 'more files');
  // staged edit, then a further unstaged edit of the same file
  write(repo, 'staged-then-edited.txt', 'v2 staged\n');
  g(repo, 'add', 'staged-then-edited.txt');
  write(repo, 'staged-then-edited.txt', 'v3 unstaged\n');
  // unstaged edit, staged new file, staged deletion, unstaged deletion
  write(repo, 'README.md', '# hello, edited\n');
  write(repo, 'src/new-staged.js', 'export {};\n');
  g(repo, 'add', 'src/new-staged.js');
  g(repo, 'rm', '-q', 'src/old.txt');
  unlinkSync(join(repo, 'dir with space/ünïcödé file.txt'));
  // executable bit, binary edit, symlink, untracked and ignored files
  g(repo, 'update-index', '--chmod=+x', 'run.sh');
  chmodSync(join(repo, 'run.sh'), 0o755);
  write(repo, 'bin/data.bin', Buffer.from([9, 0, 8, 0, 255]));
  symlinkSync('src/app.js', join(repo, 'link-to-app'));
  write(repo, 'notes/untracked todo.md', '- [ ] ship it\n');
  write(repo, 'notes/empty', '');
  write(repo, 'notes/tool.sh', '#!/bin/sh\n', 0o755);
  write(repo, 'notes/ünï\ncode', 'x\n');
  unlinkSync(join(repo, 'odd\nname\twith\\slash.txt'));
  write(repo, 'secret.env', 'TOKEN=do-not-ship\n');
  write(repo, 'build/out.js', 'ignored\n');
  return repo;
}

describe('snapshot to pod', () => {
  test('rebuilds a self-contained repository equal to the worktree (commits, staged, unstaged, untracked)', async () => {
    const repo = dirtyRepo();
    const home = tempDir();
    const wt = await createWorktree({ repo, home, name: 's1', includeUncommitted: true });
    assert.equal(wt.uncommittedApplied, true);
    const source = repoView(repo);
    const local = repoView(wt.path);
    // The worktree reproduces the source's state (only the branch differs; ignored files stay behind).
    assert.deepEqual({ ...local, branch: 'x' }, { ...source, branch: 'x' });
    assert.equal(existsSync(join(wt.path, 'secret.env')), false);

    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const { result, snap } = await ship(wt.path, wt.branch, pod, { reopen: true });
    assert.equal(result.code, 0, result.stderr);
    const json = JSON.parse(result.stdout.trim());
    assert.equal(json.ok, true);
    assert.equal(json.head, snap.headCommit);
    assert.equal(json.mode, 'full');
    assert.deepEqual(repoView(pod), local);
    assert.equal(g(pod, 'rev-parse', 'HEAD').trim(), g(wt.path, 'rev-parse', 'HEAD').trim());
    // self-contained: a real .git directory, no remote, no link to the host
    assert.ok(lstatSync(join(pod, '.git')).isDirectory());
    assert.equal(g(pod, 'remote').trim(), '');
    assert.equal(existsSync(join(pod, '.git', 'objects', 'info', 'alternates')), false);
    g(pod, 'fsck', '--no-progress');
    // ignored files are not shipped; modes and symlinks are kept
    assert.equal(existsSync(join(pod, 'secret.env')), false);
    assert.equal(existsSync(join(pod, 'build')), false);
    assert.ok(statSync(join(pod, 'run.sh')).mode & 0o100);
    assert.ok(lstatSync(join(pod, 'link-to-app')).isSymbolicLink());
    assert.deepEqual(readFileSync(join(pod, 'bin/data.bin')), Buffer.from([9, 0, 8, 0, 255]));
    assert.equal(readFileSync(syncMarkerPath(pod), 'utf8').trim(), snap.headCommit);
    // the manifest lists every differing path with git's blob ids
    const byPath = new Map(snap.manifest.map((e) => [e.path, e]));
    assert.equal(byPath.get('src/old.txt')?.status, 'D');
    assert.equal(byPath.get('run.sh')?.mode, '100755');
    assert.equal(byPath.get('link-to-app')?.mode, '120000');
    assert.equal(byPath.get('link-to-app')?.linkTarget, 'src/app.js');
    assert.equal(byPath.get('README.md')?.sha, g(wt.path, 'hash-object', 'README.md').trim());
    assert.equal(byPath.has('secret.env'), false);
  });

  test('never needs stdin EOF: the script finishes while stdin stays open (exec protocol v4)', async () => {
    const repo = dirtyRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'noeof', includeUncommitted: true });
    const snap = await buildSnapshot({ worktree: wt.path, branch: wt.branch });
    const stdin = new PassThrough();
    try {
      for await (const c of snap.open()) stdin.write(c);
      const pod = join(tempDir('ws-pvc-'), 'myrepo');
      const result = await runScript(podReceiveScript({ dir: pod, branch: wt.branch }), stdin);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(repoView(pod), repoView(wt.path));
    } finally {
      stdin.end();
      await snap.cleanup();
    }
  });

  test('--base another branch and includeUncommitted=false ship only committed state', async () => {
    const repo = dirtyRepo();
    g(repo, 'branch', 'feature', 'HEAD~1');
    const home = tempDir();
    const wt = await createWorktree({ repo, home, name: 'based', base: 'feature', includeUncommitted: true });
    assert.equal(wt.uncommittedApplied, false, 'uncommitted changes only make sense on HEAD');
    assert.equal(wt.baseCommit, g(repo, 'rev-parse', 'feature').trim());
    assert.equal(g(wt.path, 'status', '--porcelain').trim(), '');
    const wt2 = await createWorktree({ repo, home, name: 'clean', includeUncommitted: false });
    assert.equal(g(wt2.path, 'status', '--porcelain').trim(), '');

    for (const w of [wt, wt2]) {
      const pod = join(tempDir('ws-pvc-'), 'myrepo');
      const { result } = await ship(w.path, w.branch, pod);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(repoView(pod), repoView(w.path));
    }
  });

  test('a second sync after a new commit and an edit is incremental and exact', async () => {
    const repo = makeRepo();
    const home = tempDir();
    const wt = await createWorktree({ repo, home, name: 'inc', includeUncommitted: false });
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const first = await ship(wt.path, wt.branch, pod);
    assert.equal(first.result.code, 0, first.result.stderr);

    write(wt.path, 'src/feature.js', 'export const x = 1;\n');
    g(wt.path, 'add', '-A');
    g(wt.path, 'commit', '-q', '-m', 'feature');
    write(wt.path, 'README.md', '# edited after commit\n');
    write(wt.path, 'scratch.txt', 'untracked\n');
    const second = await ship(wt.path, wt.branch, pod, { haveCommit: first.snap.headCommit });
    assert.equal(second.result.code, 0, second.result.stderr);
    assert.equal(second.snap.baseCommit, first.snap.headCommit);
    assert.equal(JSON.parse(second.result.stdout).mode, 'update');
    assert.deepEqual(repoView(pod), repoView(wt.path));
    // the incremental bundle is smaller than a full one
    const full = await buildSnapshot({ worktree: wt.path, branch: wt.branch });
    assert.ok(second.snap.totalBytes < full.totalBytes);
    await full.cleanup();

    // nothing new: an empty bundle section, still verified
    const third = await ship(wt.path, wt.branch, pod, { haveCommit: second.snap.headCommit });
    assert.equal(third.result.code, 0, third.result.stderr);
    assert.deepEqual(repoView(pod), repoView(wt.path));
  });

  test('refuses to overwrite work done in the pod since the last sync unless forced', async () => {
    const repo = makeRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'keep', includeUncommitted: false });
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    assert.equal((await ship(wt.path, wt.branch, pod)).result.code, 0);
    write(pod, 'agent-work.txt', 'precious\n');
    const again = await ship(wt.path, wt.branch, pod);
    assert.notEqual(again.result.code, 0);
    assert.match(again.result.stderr, /commits or edits made since the last sync/);
    assert.ok(existsSync(join(pod, 'agent-work.txt')));
    const forced = await ship(wt.path, wt.branch, pod, { force: true });
    assert.equal(forced.result.code, 0, forced.result.stderr);
    assert.deepEqual(repoView(pod), repoView(wt.path));
    // a change to the index only, and a commit made in the pod, are work too
    g(pod, 'rm', '-q', '--cached', 'README.md');
    assert.notEqual((await ship(wt.path, wt.branch, pod)).result.code, 0);
    assert.equal((await ship(wt.path, wt.branch, pod, { force: true })).result.code, 0);
    g(pod, 'commit', '-q', '--allow-empty', '-m', 'agent commit');
    const refused = await ship(wt.path, wt.branch, pod);
    assert.notEqual(refused.result.code, 0);
    assert.match(g(pod, 'log', '-1', '--format=%s'), /agent commit/);
    // an unchanged pod is simply re-synced
    assert.equal((await ship(wt.path, wt.branch, pod, { force: true })).result.code, 0);
    const plain = await ship(wt.path, wt.branch, pod);
    assert.equal(plain.result.code, 0, plain.result.stderr);
  });

  test('an incremental snapshot whose base the pod lacks fails with a clear message', async () => {
    const repo = makeRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'nobase', includeUncommitted: false });
    write(wt.path, 'a.txt', 'a\n');
    g(wt.path, 'add', '-A');
    g(wt.path, 'commit', '-q', '-m', 'a');
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const { result } = await ship(wt.path, wt.branch, pod, { haveCommit: 'HEAD~1' });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /bundle does not apply.*send a full snapshot/s);
    assert.equal(existsSync(syncMarkerPath(pod)), false);
  });

  test('a truncated payload makes the script exit non-zero and say why', async () => {
    const repo = dirtyRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'trunc', includeUncommitted: true });
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const cut = await ship(wt.path, wt.branch, pod, { mangle: (b) => b.subarray(0, b.length - 100) });
    assert.notEqual(cut.result.code, 0);
    assert.match(cut.result.stderr, /payload truncated/);
    assert.equal(existsSync(syncMarkerPath(pod)), false);
    const noHeader = await ship(wt.path, wt.branch, pod, { mangle: (b) => b.subarray(0, 40) });
    assert.notEqual(noHeader.result.code, 0);
    assert.match(noHeader.result.stderr, /malformed snapshot header|not a clauderon snapshot/);
    const flipped = await ship(wt.path, wt.branch, pod, {
      mangle: (b) => {
        const c = Buffer.from(b);
        c[c.length - 50] = (c[c.length - 50]! + 1) % 256;
        return c;
      },
    });
    assert.notEqual(flipped.result.code, 0);
    assert.match(flipped.result.stderr, /corrupted/);
  });

  test('detects a working tree that does not match the manifest', async () => {
    const repo = dirtyRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'mismatch', includeUncommitted: true });
    const snap = await buildSnapshot({ worktree: wt.path, branch: wt.branch });
    try {
      // Sabotage: a `tar` on PATH that extracts, then alters a file, as a faulty transfer would.
      const bin = tempDir('ws-bin-');
      const fake = join(bin, 'tar');
      writeFileSync(
        fake,
        `#!/bin/sh\nPATH=${process.env.PATH}\ntar "$@" || exit $?\nfor a; do last=$a; done\nprintf 'tampered\\n' >> "$last/README.md"\n`,
        { mode: 0o755 },
      );
      const pod = join(tempDir('ws-pvc-'), 'myrepo');
      const script = `PATH=${bin}:$PATH\n${podReceiveScript({ dir: pod, branch: wt.branch })}`;
      const result = await runScript(script, snap.open());
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /does not match the snapshot manifest/);
      assert.match(result.stderr, /README\.md/);
      assert.equal(existsSync(syncMarkerPath(pod)), false);
    } finally {
      await snap.cleanup();
    }
  });

  test('a detached-HEAD source repository works; the session is still on its branch', async () => {
    const repo = makeRepo();
    g(repo, 'checkout', '-q', '--detach', 'HEAD~1');
    write(repo, 'README.md', 'detached edit\n');
    const wt = await createWorktree({ repo, home: tempDir(), name: 'det', includeUncommitted: true });
    assert.equal(wt.baseCommit, g(repo, 'rev-parse', 'HEAD').trim());
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const { result } = await ship(wt.path, wt.branch, pod);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(repoView(pod), repoView(wt.path));
    assert.equal(readFileSync(join(pod, 'README.md'), 'utf8'), 'detached edit\n');
  });

  test('submodules are shipped as gitlinks only (not populated), and verification still passes', async () => {
    const sub = makeRepo();
    const repo = makeRepo();
    g(repo, '-c', 'protocol.file.allow=always', 'submodule', '--quiet', 'add', sub, 'vendor/sub');
    g(repo, 'commit', '-q', '-m', 'add submodule');
    const wt = await createWorktree({ repo, home: tempDir(), name: 'subm', includeUncommitted: false });
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const { result } = await ship(wt.path, wt.branch, pod);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(g(pod, 'ls-tree', 'HEAD', 'vendor/sub').split(' ')[0], '160000');
    assert.equal(g(pod, 'status', '--porcelain').trim(), '');
    assert.equal((await inspectRepo(repo)).hasSubmodules, true);
  });

  test('an aborted signal cancels the snapshot', async () => {
    const repo = makeRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'cancel', includeUncommitted: false });
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(buildSnapshot({ worktree: wt.path, branch: wt.branch, signal: ac.signal }), {
      code: 'CLAUDERON_E_CANCELLED',
    });
  });

  test('a sha256 repository is rebuilt with the same object format', async () => {
    const repo = join(tempDir('ws-sha256-'), 'myrepo');
    g(tempDir(), 'init', '-q', '--object-format=sha256', '-b', 'main', repo);
    write(repo, 'a.txt', 'a\n');
    g(repo, 'add', '-A');
    g(repo, 'commit', '-q', '-m', 'a');
    write(repo, 'a.txt', 'b\n');
    const wt = await createWorktree({ repo, home: tempDir(), name: 'sha', includeUncommitted: true });
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const { result } = await ship(wt.path, wt.branch, pod);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(g(pod, 'rev-parse', '--show-object-format').trim(), 'sha256');
    assert.deepEqual(repoView(pod), repoView(wt.path));
  });

  test('as root, hands the repository to the agent uid', { skip: process.getuid?.() !== 0 }, async () => {
    const repo = makeRepo();
    const wt = await createWorktree({ repo, home: tempDir(), name: 'own', includeUncommitted: false });
    const pod = join(tempDir('ws-pvc-'), 'myrepo');
    const snap = await buildSnapshot({ worktree: wt.path, branch: wt.branch });
    const result = await runScript(podReceiveScript({ dir: pod, branch: wt.branch, uid: 4321 }), snap.open());
    await snap.cleanup();
    assert.equal(result.code, 0, result.stderr);
    assert.equal(statSync(join(pod, 'README.md')).uid, 4321);
    assert.equal(statSync(syncMarkerPath(pod)).uid, 4321);
  });
});
