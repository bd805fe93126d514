import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildSnapshot, createWorktree, podReceiveScript } from './index.js';
import { cleanupTemp, g, runScript, tempDir, write } from './test-support.js';

after(cleanupTemp);

test('reports the time and size of a ~20 MB / 1,000-file snapshot', async (t) => {
  const repo = join(tempDir('ws-big-'), 'big');
  g(tempDir(), 'init', '-q', '-b', 'main', repo);
  for (let i = 0; i < 1000; i++) write(repo, `d${i % 20}/file-${i}.bin`, randomBytes(20_000 + (i % 7) * 100));
  g(repo, 'add', '-A');
  g(repo, 'commit', '-q', '-m', 'big');
  for (let i = 0; i < 50; i++) write(repo, `d${i % 20}/file-${i}.bin`, `edited ${i}\n`);
  const wt = await createWorktree({ repo, home: tempDir(), name: 'big', includeUncommitted: true });
  const pod = join(tempDir('ws-pvc-'), 'big');
  const t0 = performance.now();
  const snap = await buildSnapshot({ worktree: wt.path, branch: wt.branch });
  const t1 = performance.now();
  const result = await runScript(podReceiveScript({ dir: pod, branch: wt.branch }), snap.open());
  const t2 = performance.now();
  await snap.cleanup();
  assert.equal(result.code, 0, result.stderr);
  assert.equal(snap.manifest.length, 50);
  t.diagnostic(
    `20 MB / 1,000 files: build ${Math.round(t1 - t0)} ms, receive+verify ${Math.round(t2 - t1)} ms, payload ${(snap.totalBytes / 1e6).toFixed(1)} MB`,
  );
});
