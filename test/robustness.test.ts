import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Emulator, type FailNextSpec, type FaultMatch, start } from '@clauderon/kube-emulator';
import { CLI, type CliResult, cliEnv, startDaemon } from './support/cli.js';
import { makeRepo, startCluster, type TestCluster } from './support/cluster.js';
import { PtyCli } from './support/pty.js';
import { git, labelledIn, sessionBranches, waitUntil, worktrees } from './support/robust-util.js';

/**
 * Faults the kube-client suite (kubernetes-faults.test.ts) does not cover: timeouts at create steps,
 * every failure mode at each delete step, the daemon killed at each step of create and delete, watches
 * and exec streams dropped mid-operation, and the API server restarting under a running daemon. After
 * each case a session exists whole or not at all, the CLI said what went wrong, and a rolled-back session
 * leaves no labelled object, worktree or branch.
 */

type Repo = { dir: string; cleanup: () => void };

/** A CLI failure a user can read: one error line, no stack, no "[object Object]", no "internal error". */
function assertCleanFailure(r: CliResult): void {
  assert.notEqual(r.code, 0, 'the command failed');
  assert.match(r.stderr, /^error: \S/m, r.stderr);
  assert.doesNotMatch(`${r.stdout}${r.stderr}`, /\n\s+at .+:\d+:\d+\)?$|\[object Object\]|internal error/m);
}

/** The emulator the cluster currently uses (tests may replace it). */
const labelled = (c: TestCluster) => labelledIn(c.emu);

async function listNames(c: TestCluster): Promise<string[]> {
  const r = await c.cli(['list', '-o', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout).sessions as Array<{ name: string }>).map((s) => s.name).sort();
}

/** Nothing of the named session is left: no labelled object, worktree, branch or listed session. */
async function assertGone(c: TestCluster, repo: string, name: string): Promise<void> {
  assert.deepEqual(
    labelled(c).filter((o) => o.includes(`clauderon-${name}`)),
    [],
    'no labelled object left',
  );
  assert.ok(!worktrees(c.home).includes(name), 'no worktree left');
  assert.ok(!(await sessionBranches(repo)).includes(`clauderon/${name}`), 'no branch left');
  assert.ok(!(await listNames(c)).includes(name), 'not listed');
}

/** The named session is whole: listed as Running with its four objects and its worktree. */
async function assertWhole(c: TestCluster, name: string): Promise<void> {
  const s = await c.cli(['status', name, '-o', 'json']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout).phase, 'Running');
  assert.deepEqual(labelled(c).filter((o) => o.includes(`clauderon-${name}`)).length, 4);
  assert.ok(worktrees(c.home).includes(name));
}

const createArgs = (repo: string, name: string) => [
  'create',
  '--repo',
  repo,
  '--prompt',
  'p',
  '--name',
  name,
  '--no-attach',
];

/** Starts a CLI command in the background, collecting stderr. */
function background(
  c: TestCluster,
  args: string[],
): { child: ChildProcess; stderr: () => string; done: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cliEnv(c.home, c.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  child.stdout!.resume();
  const done = new Promise<number | null>((r) => child.on('close', r));
  return { child, stderr: () => err, done };
}

/** Either outcome of a create under a fault, checked: whole (then deleted) or cleanly refused and gone. */
async function wholeOrNothing(c: TestCluster, repo: string, name: string, r: CliResult): Promise<void> {
  c.emu.faults.clear();
  if (r.code === 0) {
    await assertWhole(c, name);
    const d = await c.cli(['delete', name, '--force']);
    assert.equal(d.code, 0, d.stderr);
  } else {
    assertCleanFailure(r);
  }
  await assertGone(c, repo, name);
}

// Each describe has its own cluster; five run at a time, longest first (more daemons starting at once crowd
// two cores).
describe('robustness', { concurrency: 5 }, () => {
  // ---- the daemon SIGKILLed at each step, then restarted.
  // Create and delete kills on two clusters, so the two halves run side by side.
  for (const phase of ['create', 'delete'] as const) {
    describe(`the daemon killed at each ${phase} step and restarted`, { concurrency: 1 }, () => {
      let c: TestCluster;
      let repo: Repo;
      before(async () => {
        c = await startCluster();
        repo = await makeRepo();
      });
      after(async () => {
        await c?.stop();
        repo?.cleanup();
      });

      /**
       * Holds the next request matching `hold` unanswered (the emulator never processes it), waits until the
       * daemon sends it, then SIGKILLs the daemon: the kill lands exactly at that step.
       */
      async function killWhen(hold: FaultMatch): Promise<void> {
        const before = c.emu.faults.count(hold);
        c.emu.faults.failNext({ ...hold, action: { timeout: true } });
        const seen = await waitUntil(() => c.emu.faults.count(hold) > before, 60_000);
        assert.ok(seen, `the daemon reached ${JSON.stringify(hold)}`);
        await c.daemon.kill();
        c.emu.faults.clear();
      }

      async function restartAndSettle(): Promise<void> {
        c.daemon = await startDaemon({ home: c.home, env: c.env });
      }

      const createCases: Array<[string, FaultMatch]> = [
        [
          'before the worktree (pod existence check)',
          { verb: 'get', resource: 'pods', name: 'clauderon-kill-c0' },
        ],
        ['after the worktree (creating the claim)', { verb: 'create', resource: 'persistentvolumeclaims' }],
        ['after the claim (creating the CA config map)', { verb: 'create', resource: 'configmaps' }],
        ['after the pod (setting owner references)', { verb: 'patch', resource: 'configmaps' }],
        ['during the sync (exec)', { verb: 'exec', resource: 'pods', subresource: 'exec' }],
      ];
      for (const [i, [step, hold]] of phase === 'create' ? createCases.entries() : []) {
        test(`create: killed ${step}, the restarted daemon rolls it back completely`, async () => {
          const n = `kill-c${i}`;
          const bg = background(c, createArgs(repo.dir, n));
          await killWhen(hold);
          const code = await bg.done;
          assert.notEqual(code, 0, 'the CLI reports the lost daemon');
          assert.match(bg.stderr(), /^error: .*daemon/m);
          await restartAndSettle();
          const clean = await waitUntil(
            async () =>
              labelled(c).length === 0 &&
              worktrees(c.home).length === 0 &&
              (await sessionBranches(repo.dir)) === '',
            60_000,
            200,
          );
          assert.ok(clean, `rolled back: ${labelled(c).join(', ')} ${worktrees(c.home).join(', ')}`);
          await assertGone(c, repo.dir, n);
        });
      }

      const deleteCases: Array<[string, FaultMatch, boolean]> = [
        ['deleting the pod', { verb: 'delete', resource: 'pods' }, false],
        // A finalizer keeps the pod terminating, so delete is surely watching it go when the kill lands.
        ['waiting for the pod to go', { verb: 'watch', resource: 'pods' }, true],
        ['deleting the claim', { verb: 'delete', resource: 'persistentvolumeclaims' }, false],
      ];
      for (const [i, [step, hold, finalizer]] of phase === 'delete' ? deleteCases.entries() : []) {
        test(`delete: killed while ${step}, the restarted daemon finishes the delete`, async () => {
          const n = `kill-d${i}`;
          const cr = await c.cli(createArgs(repo.dir, n));
          assert.equal(cr.code, 0, cr.stderr);
          const pod = `clauderon-${n}`;
          const patchFinalizers = (v: string[] | null) =>
            c.kubectl([
              '-n',
              'clauderon',
              'patch',
              'pod',
              pod,
              '--type=merge',
              '-p',
              JSON.stringify({ metadata: { finalizers: v } }),
            ]);
          if (finalizer) await patchFinalizers(['clauderon.test/hold']);
          const bg = background(c, ['delete', n, '--force']);
          await killWhen(hold);
          assert.notEqual(await bg.done, 0);
          if (finalizer) await patchFinalizers(null);
          await restartAndSettle();
          const mine = () => labelled(c).filter((o) => o.includes(pod));
          const clean = await waitUntil(
            async () =>
              mine().length === 0 &&
              !worktrees(c.home).includes(n) &&
              !(await sessionBranches(repo.dir)).includes(`clauderon/${n}`),
            60_000,
            200,
          );
          assert.ok(clean, `finished: ${mine().join(', ')} ${worktrees(c.home).join(', ')}`);
          await assertGone(c, repo.dir, n);
          const again = await c.cli(['delete', n, '--force']);
          assert.equal(again.code, 0, 'a second delete is a no-op');
        });
      }
    });
  }

  // ---- delete: each step × server error and reset (one cluster per kind of fault), plus the watch on the
  // pod never answering.
  const deleteSteps: Array<[string, Omit<FailNextSpec, 'action'>, boolean]> = [
    ['pod delete', { verb: 'delete', resource: 'pods' }, true],
    ['waiting for the pod to go (watch)', { verb: 'watch', resource: 'pods' }, false],
    ['claim delete', { verb: 'delete', resource: 'persistentvolumeclaims' }, true],
    ['config map delete', { verb: 'delete', resource: 'configmaps' }, true],
    ['secret delete', { verb: 'delete', resource: 'secrets' }, true],
  ];
  const deleteFaults: Array<[string, FailNextSpec['action']]> = [
    ['a server error', { status: 500, message: 'injected failure' }],
    ['a connection reset', { reset: true }],
  ];
  for (const [j, [what, action]] of deleteFaults.entries()) {
    describe(`delete under ${what}`, { concurrency: 1 }, () => {
      let c: TestCluster;
      let repo: Repo;
      const name = (i: number) => `del-${j}-${i}`;
      before(async () => {
        c = await startCluster({ env: { CLAUDERON_KUBERNETES_TIMEOUTS_DELETE: '4s' } });
        repo = await makeRepo();
        // One session per case, created up front in parallel.
        const names = deleteSteps.map((_, i) => name(i));
        if (j === 0) names.push('del-watch-tmo');
        const rs = await Promise.all(
          names.map((n) => c.cli(createArgs(repo.dir, n), { timeoutMs: 180_000 })),
        );
        for (const r of rs) assert.equal(r.code, 0, r.stderr);
      });
      after(async () => {
        await c?.stop();
        repo?.cleanup();
      });

      for (const [i, [step, match, byName]] of deleteSteps.entries()) {
        test(`${what} at ${step}: the session is still there or gone, and a second delete finishes`, async (t) => {
          const n = name(i);
          const objName = {
            pods: `clauderon-${n}`,
            persistentvolumeclaims: `clauderon-${n}-workspace`,
            configmaps: `clauderon-${n}-ca`,
            secrets: `clauderon-${n}-proxy`,
          }[match.resource as string];
          c.emu.faults.failNext({ ...match, ...(byName ? { name: objName } : {}), count: 3, action });
          const r = await c.cli(['delete', n, '--force'], { timeoutMs: 90_000 });
          c.emu.faults.clear();
          t.diagnostic(`first delete exited ${r.code}: ${r.stderr.match(/^error: .*/m)?.[0] ?? 'ok'}`);
          if (r.code !== 0) {
            assertCleanFailure(r);
            // A half-deleted session is still listed (or gone), never stuck: the retry finishes it.
            const names = await listNames(c);
            const left = labelled(c).filter((o) => o.includes(`clauderon-${n}`));
            assert.ok(names.includes(n) || left.length === 0, `listed, or nothing left: ${left.join(', ')}`);
          }
          const again = await c.cli(['delete', n, '--force']);
          assert.equal(again.code, 0, again.stderr);
          await assertGone(c, repo.dir, n);
        });
      }

      if (j === 0) {
        test('the pod watch never answering during delete: the delete timeout names its key, a retry finishes', async () => {
          c.emu.faults.failNext({ verb: 'watch', resource: 'pods', count: 50, action: { timeout: true } });
          const r = await c.cli(['delete', 'del-watch-tmo', '--force'], { timeoutMs: 90_000 });
          c.emu.faults.clear();
          if (r.code !== 0) {
            assertCleanFailure(r);
            assert.match(r.stderr, /kubernetes\.timeouts\.delete/);
          }
          const again = await c.cli(['delete', 'del-watch-tmo', '--force']);
          assert.equal(again.code, 0, again.stderr);
          await assertGone(c, repo.dir, 'del-watch-tmo');
          assert.deepEqual(labelled(c), []);
        });
      }
    });
  }

  // ---- plain REST timeouts: client-node's per-request deadline is a fixed 30 s (not configurable), so every
  // REST step of create, and the pod delete, are held at once on one cluster and time out together.
  describe('a request that never answers (30 s client deadline)', () => {
    let c: TestCluster;
    let repo: Repo;
    before(async () => {
      c = await startCluster();
      repo = await makeRepo();
      // Preflight results are cached per namespace: the preflight case uses a namespace of its own.
      c.emu.store.create('namespaces', undefined, {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'tmo-preflight' },
      });
    });
    after(async () => {
      await c?.stop();
      repo?.cleanup();
    });

    // Latest step first: each session passes the earlier steps unfaulted and is held at its own, and only
    // then is the next fault armed, so no session takes another's fault.
    const createSteps: Array<[string, FaultMatch, string[]]> = [
      ['the owner-reference patch', { verb: 'patch', resource: 'configmaps' }, []],
      ['the pod create', { verb: 'create', resource: 'pods' }, []],
      ['the proxy secret create', { verb: 'create', resource: 'secrets' }, []],
      ['the CA config map create', { verb: 'create', resource: 'configmaps' }, []],
      ['the claim create', { verb: 'create', resource: 'persistentvolumeclaims' }, []],
      [
        'the preflight access review',
        { verb: 'create', resource: 'selfsubjectaccessreviews' },
        ['--namespace', 'tmo-preflight'],
      ],
    ];

    test('at every REST step of create, and at the pod delete: clear errors, and nothing half made', async (t) => {
      const cr = await c.cli(createArgs(repo.dir, 'tmo-delete'));
      assert.equal(cr.code, 0, cr.stderr);
      const running: Array<{ name: string; step: string; bg: ReturnType<typeof background> }> = [];
      for (const [i, [step, match, extra]] of createSteps.entries()) {
        const before = c.emu.faults.count(match);
        c.emu.faults.failNext({ ...match, action: { timeout: true } });
        const name = `tmo-${i}`;
        running.push({ name, step, bg: background(c, [...createArgs(repo.dir, name), ...extra]) });
        assert.ok(await waitUntil(() => c.emu.faults.count(match) > before, 60_000), `held at ${step}`);
      }
      c.emu.faults.failNext({
        verb: 'delete',
        resource: 'pods',
        name: 'clauderon-tmo-delete',
        action: { timeout: true },
      });
      const deleteCase = background(c, ['delete', 'tmo-delete', '--force']);
      const codes = await Promise.all(running.map((r) => r.bg.done));
      const deleteCode = await deleteCase.done;
      c.emu.faults.clear();
      const result = (code: number | null, stderr: string): CliResult => ({
        code,
        signal: null,
        stdout: '',
        stderr,
      });
      for (const [i, r] of running.entries()) {
        t.diagnostic(
          `${r.step}: create exited ${codes[i]}: ${r.bg.stderr().match(/^error: .*/m)?.[0] ?? 'ok'}`,
        );
        // A server that never answers is a timeout (12), not an interruption by the user (130).
        if (codes[i] !== 0) assert.equal(codes[i], 12, `${r.step}: ${r.bg.stderr()}`);
        await wholeOrNothing(c, repo.dir, r.name, result(codes[i] ?? null, r.bg.stderr()));
      }
      t.diagnostic(
        `pod delete: exited ${deleteCode}: ${deleteCase.stderr().match(/^error: .*/m)?.[0] ?? 'ok'}`,
      );
      if (deleteCode !== 0) {
        assertCleanFailure(result(deleteCode, deleteCase.stderr()));
        assert.equal(deleteCode, 12, deleteCase.stderr());
      }
      const again = await c.cli(['delete', 'tmo-delete', '--force']);
      assert.equal(again.code, 0, again.stderr);
      await assertGone(c, repo.dir, 'tmo-delete');
      assert.deepEqual(labelled(c), []);
    });
  });

  // ---- named timeouts (short here) and dropped streams during create.
  describe('create: named timeouts, dropped watches and streams', { concurrency: 1 }, () => {
    let c: TestCluster;
    let repo: Repo;
    before(async () => {
      // Real kubelet delays (timeScale 1): the pod is not ready at the first read, so create must watch it.
      c = await startCluster({
        emulator: { timeScale: 1 },
        env: {
          CLAUDERON_KUBERNETES_TIMEOUTS_POD_START: '8s',
          CLAUDERON_KUBERNETES_TIMEOUTS_IMAGE_PULL: '2s',
          CLAUDERON_KUBERNETES_TIMEOUTS_SYNC: '5s',
        },
      });
      repo = await makeRepo();
    });
    after(async () => {
      await c?.stop();
      repo?.cleanup();
    });

    test('a pod watch that never answers: the named timeout and a full rollback (or, had the pod been ready at once, a whole session)', async (t) => {
      c.emu.faults.failNext({ verb: 'watch', resource: 'pods', count: 20, action: { timeout: true } });
      const r = await c.cli(createArgs(repo.dir, 'watch-tmo'), { timeoutMs: 90_000 });
      t.diagnostic(`create exited ${r.code}: ${r.stderr.match(/^error: .*/m)?.[0] ?? 'ok'}`);
      if (r.code !== 0) {
        assert.equal(r.code, 12, r.stderr);
        assert.match(r.stderr, /kubernetes\.timeouts\.pod_start/);
      }
      await wholeOrNothing(c, repo.dir, 'watch-tmo', r);
    });

    test('a sync exec that never answers ends in the sync timeout and a full rollback', async () => {
      c.emu.faults.failNext({
        verb: 'exec',
        resource: 'pods',
        subresource: 'exec',
        action: { timeout: true },
      });
      const r = await c.cli(createArgs(repo.dir, 'sync-tmo'), { timeoutMs: 90_000 });
      assert.equal(r.code, 12, r.stderr);
      assert.match(r.stderr, /workspace sync took longer than 5s/);
      assert.match(r.stderr, /hint: .*kubernetes\.timeouts\.sync/);
      await wholeOrNothing(c, repo.dir, 'sync-tmo', r);
    });

    test('watches dropped again and again while create waits: create still succeeds', async () => {
      const watchesBefore = c.emu.faults.count({ verb: 'watch', resource: 'pods' });
      const bg = background(c, createArgs(repo.dir, 'watch-drop'));
      let dropped = 0;
      let finished = false;
      void bg.done.then(() => {
        finished = true;
      });
      while (!finished) {
        if (c.emu.faults.count({ verb: 'watch', resource: 'pods' }) > watchesBefore)
          dropped += c.emu.faults.endWatches();
        await new Promise((r) => setTimeout(r, 30));
      }
      const code = await bg.done;
      assert.equal(code, 0, bg.stderr());
      assert.ok(dropped > 0, 'at least one watch was dropped mid-create');
      await assertWhole(c, 'watch-drop');
      const d = await c.cli(['delete', 'watch-drop', '--force']);
      assert.equal(d.code, 0, d.stderr);
      await assertGone(c, repo.dir, 'watch-drop');
    });

    test('the exec stream killed mid-sync: create fails cleanly and leaves nothing, or succeeds whole', async (t) => {
      // A few MiB of incompressible data keeps the sync stream open long enough to be killed.
      const big = await makeRepo();
      try {
        writeFileSync(join(big.dir, 'blob.bin'), randomBytes(24 * 1024 * 1024));
        await git(big.dir, 'add', 'blob.bin');
        await git(big.dir, 'commit', '-q', '-m', 'blob');
        c.emu.faults.addLatency(300, { verb: 'exec' });
        const execsBefore = c.emu.faults.count({ verb: 'exec' });
        const bg = background(c, createArgs(big.dir, 'sync-kill'));
        let killed = 0;
        let finished = false;
        void bg.done.then(() => {
          finished = true;
        });
        while (!finished) {
          if (c.emu.faults.count({ verb: 'exec' }) > execsBefore && /syncing workspace/.test(bg.stderr()))
            killed += c.emu.faults.killStreams('clauderon', 'clauderon-sync-kill');
          await new Promise((r) => setTimeout(r, 20));
        }
        const code = await bg.done;
        t.diagnostic(
          `killed ${killed} stream(s); create exited ${code}: ${bg.stderr().match(/^error: .*/m)?.[0] ?? 'ok'}`,
        );
        if (code !== 0) assert.equal(code, 11, `a broken sync stream is a failed sync: ${bg.stderr()}`);
        await wholeOrNothing(c, big.dir, 'sync-kill', {
          code,
          signal: null,
          stdout: '',
          stderr: bg.stderr(),
        });
        assert.ok(killed > 0 || code === 0, 'the stream was killed, or the sync won the race');
      } finally {
        c.emu.faults.clear();
        big.cleanup();
      }
    });
  });

  // ---- attach across a dropped stream, and the API server restarting.
  describe('attach reconnects and the API server restarts', { concurrency: 1 }, () => {
    let c: TestCluster;
    let repo: Repo;
    let restarted: Emulator | undefined;
    before(async () => {
      c = await startCluster();
      repo = await makeRepo();
    });
    after(async () => {
      // The daemon first, then whichever emulator is running, then the rest of the cluster.
      await c?.daemon.stop();
      await restarted?.stop();
      await c?.stop();
      repo?.cleanup();
    });

    test('the exec stream killed mid-attach: a reconnecting notice, and the agent still answers', async () => {
      const cr = await c.cli(createArgs(repo.dir, 'att'));
      assert.equal(cr.code, 0, cr.stderr);
      const p = new PtyCli(['attach', 'att'], { home: c.home, env: c.env });
      try {
        await p.waitFor(/agent> /);
        assert.ok(c.emu.faults.killStreams('clauderon', 'clauderon-att') > 0, 'a stream was killed');
        await p.waitFor(/reconnecting/i);
        // After the reconnect tmux redraws; keep typing until the agent's answer shows.
        const mark = p.mark();
        const answered = await waitUntil(
          () => {
            if (/agent heard: still here/.test(p.text.slice(mark))) return true;
            p.write('still here\r');
            return false;
          },
          30_000,
          1500,
        );
        assert.ok(answered, p.text.slice(-1500));
        p.write('\x10\x11');
        const exit = await p.exited;
        assert.equal(exit.exitCode, 0);
      } finally {
        p.kill();
      }
      const d = await c.cli(['delete', 'att', '--force']);
      assert.equal(d.code, 0, d.stderr);
    });

    test('the API server restarted under a running daemon: list, create and delete work again', async () => {
      const cr = await c.cli(createArgs(repo.dir, 'survivor'));
      assert.equal(cr.code, 0, cr.stderr);
      const stateDir = dirname(c.emu.kubeconfigPath);
      const port = Number(new URL(c.emu.url).port);
      await c.emu.stop();
      const down = await c.cli(['list']);
      assertCleanFailure(down);
      restarted = await start({ stateDir, port, timeScale: 0.1 });
      c.emu = restarted;
      const listed = await waitUntil(
        async () => (await c.cli(['list', '-o', 'json'])).code === 0,
        30_000,
        250,
      );
      assert.ok(listed, 'list works again');
      assert.ok((await listNames(c)).includes('survivor'), 'the session is still listed');
      const cr2 = await c.cli(createArgs(repo.dir, 'after-restart'));
      assert.equal(cr2.code, 0, cr2.stderr);
      await assertWhole(c, 'after-restart');
      for (const n of ['after-restart', 'survivor']) {
        const d = await c.cli(['delete', n, '--force'], { timeoutMs: 90_000 });
        assert.equal(d.code, 0, d.stderr);
        await assertGone(c, repo.dir, n);
      }
      assert.deepEqual(labelled(c), []);
    });
  });
});
