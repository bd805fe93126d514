import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FailNextSpec } from '@clauderon/kube-emulator';
import { startDaemon } from './support/cli.js';
import { createInBackground, makeRepo, startCluster, type TestCluster } from './support/cluster.js';
import { sessionBranches, worktrees as worktreesIn } from './support/robust-util.js';

const worktrees = (c: TestCluster) => worktreesIn(c.home);

describe('create leaves nothing behind when a step fails', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  before(async () => {
    c = await startCluster();
    repo = await makeRepo();
  });
  after(async () => {
    await c?.stop();
    repo?.cleanup();
  });

  // One case per API step of create; preflight comes first because its result is cached afterwards.
  const cases: Array<[string, Omit<FailNextSpec, 'action'>]> = [
    ['preflight (access review)', { verb: 'create', resource: 'selfsubjectaccessreviews' }],
    ['workspace claim', { verb: 'create', resource: 'persistentvolumeclaims' }],
    ['CA config map', { verb: 'create', resource: 'configmaps' }],
    ['proxy secret', { verb: 'create', resource: 'secrets' }],
    ['pod', { verb: 'create', resource: 'pods' }],
    ['owner references', { verb: 'patch', resource: 'configmaps' }],
    ['watching the pod', { verb: 'watch', resource: 'pods' }],
    ['workspace sync (exec)', { verb: 'exec', resource: 'pods', subresource: 'exec' }],
  ];
  const actions: Array<[string, FailNextSpec['action']]> = [
    ['server error', { status: 500, message: 'injected failure' }],
    ['connection reset', { reset: true }],
  ];
  for (const [step, match] of cases) {
    for (const [what, action] of actions) {
      test(`${what} at ${step}: the session exists whole or not at all, with a clear error`, async () => {
        c.emu.faults.clear();
        c.emu.faults.failNext({ ...match, count: 3, action });
        const r = await c.cli([
          'create',
          '--repo',
          repo.dir,
          '--prompt',
          'p',
          '--name',
          'faulty',
          '--no-attach',
        ]);
        c.emu.faults.clear();
        if (r.code === 0) {
          // The client recovered by itself (a dropped watch is re-established): then the session is whole.
          const s = JSON.parse((await c.cli(['status', 'faulty', '-o', 'json'])).stdout);
          assert.equal(s.phase, 'Running');
          const d = await c.cli(['delete', 'faulty', '--force']);
          assert.equal(d.code, 0, d.stderr);
        } else {
          assert.match(r.stderr, /^error: /m);
          assert.doesNotMatch(r.stderr, /internal error|\[object Object\]/);
        }
        assert.deepEqual(c.labelled(), [], 'no labelled object left');
        assert.deepEqual(worktrees(c), [], 'no worktree left');
        assert.equal(await sessionBranches(repo.dir), '', 'no session branch left');
        const list = await c.cli(['list', '-o', 'json']);
        assert.deepEqual(JSON.parse(list.stdout).sessions, []);
      });
    }
  }

  test('after all those failures a create succeeds and delete cleans up', async () => {
    const r = await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', 'faulty', '--no-attach']);
    assert.equal(r.code, 0, r.stderr);
    const d = await c.cli(['delete', 'faulty', '--force']);
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(c.labelled(), []);
  });
});

describe('parallel creates and a crashed daemon', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  before(async () => {
    c = await startCluster();
    repo = await makeRepo();
  });
  after(async () => {
    await c?.stop();
    repo?.cleanup();
  });

  test('ten creates in parallel all succeed, and ten deletes leave nothing', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `par-${i}`);
    const results = await Promise.all(
      names.map((n) =>
        c.cli(['create', '--repo', repo.dir, '--prompt', `task ${n}`, '--name', n, '--no-attach'], {
          timeoutMs: 180_000,
        }),
      ),
    );
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, `${names[i]}: ${r.stderr}`);
    const list = JSON.parse((await c.cli(['list', '-o', 'json'])).stdout).sessions as Array<{
      name: string;
      phase: string;
    }>;
    assert.deepEqual(list.map((s) => s.name).sort(), [...names].sort());
    assert.ok(
      list.every((s) => s.phase === 'Running'),
      JSON.stringify(list),
    );
    const deletes = await Promise.all(
      names.map((n) => c.cli(['delete', n, '--force'], { timeoutMs: 180_000 })),
    );
    for (const r of deletes) assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(c.labelled(), []);
    assert.deepEqual(worktrees(c), []);
  });

  test('the daemon killed mid-create and restarted rolls the create back', async () => {
    for (const n of c
      .labelled()
      .filter((x) => x.startsWith('pods/'))
      .map((x) => x.slice('pods/clauderon-'.length))) {
      await c.cli(['delete', n, '--force']);
    }
    // Slow the sync down so the kill lands after the pod exists.
    c.emu.faults.addLatency(4000, { verb: 'exec' });
    const create = createInBackground(c, [
      '--repo',
      repo.dir,
      '--prompt',
      'p',
      '--name',
      'crashy',
      '--no-attach',
    ]);
    await create.reached(/created pod/);
    await c.daemon.kill();
    assert.notEqual(await create.exited, 0, 'the CLI reports the lost daemon');
    c.emu.faults.clear();
    assert.ok(c.labelled().length > 0, 'objects exist while the daemon is down');

    c.daemon = await startDaemon({ home: c.home, env: c.env });
    const end = Date.now() + 60_000;
    while (
      (c.labelled().length > 0 || worktrees(c).length > 0 || (await sessionBranches(repo.dir)) !== '') &&
      Date.now() < end
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(c.labelled(), [], 'the restarted daemon removed the half-created session');
    assert.deepEqual(worktrees(c), []);
    assert.equal(await sessionBranches(repo.dir), '');
    const list = await c.cli(['list', '-o', 'json']);
    assert.deepEqual(JSON.parse(list.stdout).sessions, []);
  });
});
