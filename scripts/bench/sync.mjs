// Sync-in: a generated repository shipped into a session's claim, against (a) a local clone plus a copy of
// the dirty files and (b) `kubectl cp` of the same tree into the same pod.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { buildSnapshot, podReceiveScript } from '@clauderon/workspace';
import { createSession, deleteSession, phases } from './create.mjs';
import { execFileP, figure, median, mustSucceed, NAMESPACE, now, tempDir } from './lib.mjs';
import { git } from './repo.mjs';

/** (a) The physical work on this machine: `git clone --no-hardlinks` (the bytes are copied, as into a PVC) and the dirty files. */
async function localBaseline(repo) {
  const base = tempDir('clauderon-bench-clone-');
  const dst = join(base, 'clone');
  const t0 = now();
  await execFileP('git', ['clone', '-q', '--no-hardlinks', repo.dir, dst]);
  for (const p of repo.dirty) {
    mkdirSync(dirname(join(dst, p)), { recursive: true });
    copyFileSync(join(repo.dir, p), join(dst, p));
  }
  for (const p of repo.deleted) rmSync(join(dst, p), { force: true });
  const ms = now() - t0;
  rmSync(base, { recursive: true, force: true });
  return ms;
}

/** (b) What a user would do by hand: `kubectl cp` of the tree into the session's pod (agent container). */
async function kubectlCp(ctx, pod, i) {
  const dest = `/workspace/kubectl-cp-${i}`;
  const t0 = now();
  await ctx.emu.kubectl(['cp', '-n', NAMESPACE, '-c', 'agent', ctx.bigRepo.dir, `${pod}:${dest}`], {
    timeout: 600_000,
  });
  const ms = now() - t0;
  const check = await ctx.emu.kubectl([
    'exec',
    '-n',
    NAMESPACE,
    pod,
    '-c',
    'agent',
    '--',
    'sh',
    '-c',
    `du -sk ${dest}; rm -rf ${dest}`,
  ]);
  return { ms, kib: Number(check.stdout.trim().split(/\s/)[0]) };
}

/**
 * The second sync after a small change, through the packages directly (the daemon syncs at create only):
 * three files edited and committed plus one uncommitted edit in the session worktree, an incremental
 * snapshot (buildSnapshot with haveCommit = the synced head) piped by `kubectl exec -i` into the pod's
 * receive script (podReceiveScript), which updates the repository in place and verifies it.
 */
async function incrementalSync(ctx, name) {
  const wt = join(ctx.daemon.home, 'worktrees', name);
  const branch = `clauderon/${name}`;
  const have = (await git(wt, 'rev-parse', 'HEAD')).stdout.trim();
  const files = (await git(wt, 'ls-files', 'src/mod-07')).stdout.trim().split('\n').slice(0, 4);
  for (const f of files) writeFileSync(join(wt, f), `small change to ${f}\n`);
  await git(wt, 'commit', '-q', '-m', 'small change', '--', ...files.slice(0, 3));
  const t0 = now();
  const snapshot = await buildSnapshot({ worktree: wt, branch, haveCommit: have });
  const tSnap = now() - t0;
  const script = podReceiveScript({ dir: `/workspace/${basename(ctx.bigRepo.dir)}`, branch });
  const child = spawn(
    'kubectl',
    [
      'exec',
      '-i',
      '-n',
      NAMESPACE,
      `clauderon-${name}`,
      '-c',
      'agent',
      '--',
      'sh',
      '-c',
      script,
      'clauderon-sync',
    ],
    { env: ctx.emu.kubeEnv, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  child.stdout.resume();
  const exited = new Promise((r) => child.on('close', r));
  await pipeline(snapshot.open(), child.stdin);
  const code = await exited;
  const ms = now() - t0;
  await snapshot.cleanup();
  if (code !== 0) throw new Error(`incremental sync failed (${code}): ${err.slice(-1500)}`);
  const podHead = (
    await ctx.emu.kubectl([
      'exec',
      '-n',
      NAMESPACE,
      `clauderon-${name}`,
      '-c',
      'agent',
      '--',
      'git',
      '-C',
      `/workspace/${basename(ctx.bigRepo.dir)}`,
      'rev-parse',
      'HEAD',
    ])
  ).stdout.trim();
  const head = (await git(wt, 'rev-parse', 'HEAD')).stdout.trim();
  if (podHead !== head) throw new Error(`incremental sync: pod HEAD ${podHead}, expected ${head}`);
  return { ms, snapshotMs: tSnap, bytes: snapshot.totalBytes, incremental: snapshot.baseCommit === have };
}

export async function benchSync(ctx) {
  const { runs } = ctx.sizes.sync;
  const repo = ctx.bigRepo;
  const clauderon = [];
  const local = [];
  const cp = [];
  let incremental;
  await localBaseline(repo); // warm-up: page cache, git's own start-up
  for (let i = 0; i < runs; i++) {
    local.push(await localBaseline(repo));
    const name = `bench-sync-${i}`;
    const r = mustSucceed(await createSession(ctx.daemon, { repo: repo.dir, name }), `create ${name}`);
    const p = phases(r);
    clauderon.push(p);
    if (i === 0) {
      try {
        incremental = await incrementalSync(ctx, name);
        ctx.log(
          `sync-in: incremental second sync ${incremental.ms.toFixed(0)} ms (${(incremental.bytes / 1024).toFixed(0)} KiB payload)`,
        );
      } catch (e) {
        incremental = { error: String(e?.message ?? e) };
        ctx.log(`sync-in: incremental sync failed: ${incremental.error}`);
      }
    }
    const c = await kubectlCp(ctx, `clauderon-${name}`, 2 * i);
    cp.push(c.ms, (await kubectlCp(ctx, `clauderon-${name}`, 2 * i + 1)).ms);
    ctx.log(
      `sync-in run ${i + 1}/${runs}: clauderon ${p.sync.toFixed(0)} ms (worktree ${p.worktree.toFixed(0)}, snapshot ${p.snapshot.toFixed(0)}, transfer ${p.transfer.toFixed(0)}), local clone ${local.at(-1).toFixed(0)} ms, kubectl cp ${c.ms.toFixed(0)} ms (${(c.kib / 1024).toFixed(0)} MiB)`,
    );
    await deleteSession(ctx.daemon, name);
    local.push(await localBaseline(repo));
  }
  const sync = median(clauderon.map((p) => p.sync));
  const a = median(local);
  const b = median(cp);
  ctx.result.sync = {
    repo: {
      files: repo.files,
      commits: repo.commits,
      gitMiB: repo.gitBytes / 1048576,
      totalMiB: repo.totalBytes / 1048576,
      dirtyPaths: repo.dirty.length + repo.deleted.length,
    },
    clauderon,
    localCloneMs: local,
    kubectlCpMs: cp,
    incremental,
  };
  const parts = (k) => median(clauderon.map((p) => p[k])).toFixed(0);
  const sizeText = `${repo.files} files, ${(repo.totalBytes / 1048576).toFixed(0)} MiB, ${repo.commits} commits, ${repo.dirty.length + repo.deleted.length} dirty paths`;
  return [
    figure({
      section: 'sync',
      name: `sync-in (${sizeText}) vs local clone + copy`,
      kind: 'ratio',
      value: sync,
      unit: 'ms',
      baseline: a,
      baselineName: 'git clone --no-hardlinks + cp',
      target: 1.5,
      valueText: `${sync.toFixed(0)} ms (worktree ${parts('worktree')}, snapshot ${parts('snapshot')}, transfer ${parts('transfer')})`,
    }),
    figure({
      section: 'sync',
      name: 'sync-in vs kubectl cp of the tree',
      kind: 'ratio',
      value: sync,
      unit: 'ms',
      baseline: b,
      baselineName: 'kubectl cp',
      target: 0.5,
    }),
    incremental?.ms !== undefined
      ? figure({
          section: 'sync',
          name: 'sync-in, second sync after a small change (packages + kubectl exec; daemon syncs at create only)',
          kind: 'info',
          value: incremental.ms,
          unit: 'ms',
          baseline: sync,
          baselineName: 'full sync',
          valueText: `${incremental.ms.toFixed(0)} ms (${(incremental.bytes / 1024).toFixed(0)} KiB payload, ${incremental.incremental ? 'incremental bundle' : 'FULL bundle'})`,
        })
      : figure({
          section: 'sync',
          name: 'sync-in, second sync after a small change',
          kind: 'info',
          skipped: true,
          valueText: `not measured: create-only sync${incremental?.error ? ` (direct attempt failed: ${incremental.error.slice(0, 60)})` : ''}`,
        }),
    figure({
      section: 'sync',
      name: 'create wall time, big repo (CLI spawn → exit)',
      kind: 'info',
      value: median(clauderon.map((p) => p.wall)),
      unit: 'ms',
      valueText: `${median(clauderon.map((p) => p.wall)).toFixed(0)} ms (pod start ${parts('podStart')}, daemon+CLI rest ${parts('daemonOwn')})`,
    }),
  ];
}
