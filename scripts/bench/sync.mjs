// Sync-in: a generated repository shipped into a session's claim, against (a) a local clone plus a copy of
// the dirty files and (b) `kubectl cp` of the same tree into the same pod.
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createSession, deleteSession, phases } from './create.mjs';
import { execFileP, figure, median, mustSucceed, NAMESPACE, now, tempDir } from './lib.mjs';

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

export async function benchSync(ctx) {
  const { runs } = ctx.sizes.sync;
  const repo = ctx.bigRepo;
  const clauderon = [];
  const local = [];
  const cp = [];
  for (let i = 0; i < runs; i++) {
    local.push(await localBaseline(repo));
    const name = `bench-sync-${i}`;
    const r = mustSucceed(await createSession(ctx.daemon, { repo: repo.dir, name }), `create ${name}`);
    const p = phases(r);
    clauderon.push(p);
    const c = await kubectlCp(ctx, `clauderon-${name}`, i);
    cp.push(c.ms);
    ctx.log(
      `sync-in run ${i + 1}/${runs}: clauderon ${p.sync.toFixed(0)} ms (worktree ${p.worktree.toFixed(0)}, snapshot ${p.snapshot.toFixed(0)}, transfer ${p.transfer.toFixed(0)}), local clone ${local[i].toFixed(0)} ms, kubectl cp ${c.ms.toFixed(0)} ms (${(c.kib / 1024).toFixed(0)} MiB)`,
    );
    await deleteSession(ctx.daemon, name);
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
    figure({
      section: 'sync',
      name: 'sync-in, second sync after a small change',
      kind: 'info',
      skipped: true,
      valueText: 'not measured: create-only sync',
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
