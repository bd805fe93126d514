import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { ClauderonError } from '@clauderon/protocol';
import * as tarStream from 'tar-stream';
import {
  applyPulledBundle,
  buildSnapshot,
  createWorktree,
  encodeHeader,
  PULL_MAGIC,
  podBundleScript,
  podReceiveScript,
} from './index.js';
import {
  cleanupTemp,
  g,
  makeRepo,
  repoView,
  runScript,
  runScriptRaw,
  tempDir,
  write,
} from './test-support.js';

after(cleanupTemp);

type Entry = Parameters<tarStream.Pack['entry']>[0];

/** A session whose worktree was shipped to a stand-in pod directory. */
async function session(name: string) {
  const repo = makeRepo();
  const home = tempDir();
  const wt = await createWorktree({ repo, home, name, includeUncommitted: false });
  const pod = join(tempDir('ws-pvc-'), 'myrepo');
  const snap = await buildSnapshot({ worktree: wt.path, branch: wt.branch });
  const res = await runScript(podReceiveScript({ dir: pod, branch: wt.branch }), snap.open());
  await snap.cleanup();
  assert.equal(res.code, 0, res.stderr);
  return { repo, home, wt, pod, base: snap.headCommit };
}

async function pullFromPod(
  s: Awaited<ReturnType<typeof session>>,
  opts: { includeUncommitted: boolean; haveCommit?: string; force?: boolean },
) {
  const script = podBundleScript({
    dir: s.pod,
    branch: s.wt.branch,
    includeUncommitted: opts.includeUncommitted,
    ...(opts.haveCommit ? { haveCommit: opts.haveCommit } : {}),
  });
  const out = await runScriptRaw(script, s.pod);
  assert.equal(out.code, 0, out.stderr);
  return applyPulledBundle({
    repo: s.repo,
    name: s.wt.branch.slice('clauderon/'.length),
    input: Readable.from([out.stdout]),
    ...(opts.force ? { force: true } : {}),
  });
}

async function pullError(p: Promise<unknown>, message: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ClauderonError, `expected ClauderonError, got ${e}`);
    assert.equal(e.code, 'CLAUDERON_E_PULL_FAILED', e.message);
    assert.match(e.message, message);
    return;
  }
  assert.fail('expected PULL_FAILED');
}

describe('pull-back', () => {
  test('fetches commits made in the pod and applies its uncommitted changes to the local worktree', async () => {
    const s = await session('pull');
    write(s.pod, 'src/agent.js', 'export const agent = true;\n');
    g(s.pod, 'add', '-A');
    g(s.pod, 'commit', '-q', '-m', 'made in the pod');
    write(s.pod, 'README.md', '# edited in the pod\n');
    write(s.pod, 'notes/new file.txt', 'untracked in the pod\n');
    symlinkSync('../README.md', join(s.pod, 'notes/readme-link'));
    write(s.pod, 'secret.env', 'ignored, stays in the pod\n');

    const result = await pullFromPod(s, { includeUncommitted: true, haveCommit: s.base });
    assert.equal(result.commits, 1);
    assert.equal(result.head, g(s.pod, 'rev-parse', 'HEAD').trim());
    assert.equal(result.uncommittedApplied, true);
    const local = repoView(s.wt.path);
    const pod = repoView(s.pod);
    assert.deepEqual(local, pod);
    assert.equal(existsSync(join(s.wt.path, 'secret.env')), false);
    assert.ok(lstatSync(join(s.wt.path, 'notes/readme-link')).isSymbolicLink());
    // only the session branch moved; no remote or config was taken from the pod
    assert.equal(g(s.repo, 'rev-parse', 'refs/heads/clauderon/pull').trim(), result.head);
    assert.equal(g(s.repo, 'for-each-ref', 'refs/clauderon-pull').trim(), '');
    assert.equal(g(s.repo, 'remote').trim(), '');
  });

  test('a full bundle without uncommitted changes; pulling twice is a no-op', async () => {
    const s = await session('full');
    write(s.pod, 'a.txt', 'a\n');
    g(s.pod, 'add', '-A');
    g(s.pod, 'commit', '-q', '-m', 'a');
    write(s.pod, 'b.txt', 'not sent\n');
    const r1 = await pullFromPod(s, { includeUncommitted: false });
    assert.equal(r1.commits, 1);
    assert.equal(r1.uncommittedApplied, false);
    assert.equal(existsSync(join(s.wt.path, 'b.txt')), false);
    assert.equal(readFileSync(join(s.wt.path, 'a.txt'), 'utf8'), 'a\n');
    const r2 = await pullFromPod(s, { includeUncommitted: false, haveCommit: r1.head });
    assert.equal(r2.commits, 0);
  });

  test('diverged branches are refused unless forced', async () => {
    const s = await session('div');
    write(s.pod, 'pod.txt', 'pod\n');
    g(s.pod, 'add', '-A');
    g(s.pod, 'commit', '-q', '-m', 'pod');
    write(s.wt.path, 'local.txt', 'local\n');
    g(s.wt.path, 'add', '-A');
    g(s.wt.path, 'commit', '-q', '-m', 'local');
    await pullError(pullFromPod(s, { includeUncommitted: false }), /diverged/);
    const forced = await pullFromPod(s, { includeUncommitted: false, force: true });
    assert.equal(g(s.wt.path, 'rev-parse', 'HEAD').trim(), forced.head);
    assert.equal(readFileSync(join(s.wt.path, 'pod.txt'), 'utf8'), 'pod\n');
  });

  test('a malicious payload (../ and absolute paths, escaping symlinks) is rejected without writing anything', async () => {
    const s = await session('evil');
    const head = g(s.wt.path, 'rev-parse', 'HEAD').trim();
    const outside = tempDir('ws-outside-');
    const cases: { entries: Entry[]; why: RegExp }[] = [
      { entries: [{ name: 'ok.txt' }, { name: '../escape.txt' }], why: /outside the repository/ },
      { entries: [{ name: join(outside, 'abs.txt') }], why: /absolute path/ },
      { entries: [{ name: 'evil', type: 'symlink', linkname: outside }], why: /leaves the repository/ },
      { entries: [{ name: 'evil', type: 'symlink', linkname: '../../x' }], why: /leaves the repository/ },
      {
        entries: [{ name: 'inner', type: 'symlink', linkname: 'src' }, { name: 'inner/x.txt' }],
        why: /below a symlink/,
      },
      { entries: [{ name: '.git/hooks/post-merge', mode: 0o755 }], why: /\.git/ },
      { entries: [{ name: 'newfile' }, { name: 'newfile/below' }], why: /below a symlink or file/ },
      { entries: [{ name: 'hard', type: 'link', linkname: 'README.md' }], why: /type link/ },
      { entries: [{ name: 'README.md' }], why: /already exists/ },
    ];
    for (const c of cases) {
      const tar = await makeTar(c.entries);
      const before = repoView(s.wt.path);
      await pullError(applyPulledBundle({ repo: s.repo, name: 'evil', input: payload(head, tar) }), c.why);
      assert.deepEqual(repoView(s.wt.path), before, `nothing written for ${c.entries.map((e) => e.name)}`);
      assert.equal(existsSync(join(dirname(s.wt.path), 'escape.txt')), false);
      assert.equal(existsSync(join(outside, 'abs.txt')), false);
    }
    // git apply refuses a patch that reaches outside the repository
    const patch = Buffer.from(
      'diff --git a/../outside.txt b/../outside.txt\nnew file mode 100644\n--- /dev/null\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n',
    );
    await pullError(
      applyPulledBundle({ repo: s.repo, name: 'evil', input: payload(head, Buffer.alloc(0), patch) }),
      /do not apply/,
    );
    assert.equal(existsSync(join(dirname(s.wt.path), 'outside.txt')), false);
    // a truncated payload
    const whole = await collect(payload(head, await makeTar([{ name: 'fine.txt' }])));
    await pullError(
      applyPulledBundle({
        repo: s.repo,
        name: 'evil',
        input: Readable.from([whole.subarray(0, whole.length - 10)]),
      }),
      /truncated/,
    );
  });
});

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const e of entries) {
    if (e.type === 'symlink' || e.type === 'link') pack.entry(e);
    else pack.entry({ ...e, type: 'file' }, 'content\n');
  }
  pack.finalize();
  return collect(pack);
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

function payload(head: string, tree: Buffer, patch = Buffer.alloc(0)): Readable {
  const sum = createHash('sha256').update(patch).update(tree).digest('hex');
  const header = encodeHeader(
    PULL_MAGIC,
    [
      ['bundle', 0],
      ['patch', patch.length],
      ['tree', tree.length],
    ],
    [
      ['head', head],
      ['sha256', sum],
    ],
  );
  return Readable.from([header, patch, tree]);
}
