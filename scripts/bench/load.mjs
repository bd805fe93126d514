// Load: N sessions each created, attached (a scripted exchange with the demo agent) and deleted, all at
// once; then nothing labelled may remain in the cluster and no worktree on disk.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Term } from './attach.mjs';
import { createSession } from './create.mjs';
import { CLI, cleanEnv, figure, labelledObjects, NODE, now, sleep } from './lib.mjs';
import { git } from './repo.mjs';

async function oneSession(ctx, name) {
  const d = ctx.daemon;
  const t = { start: now() };
  const c = await createSession(d, { repo: ctx.smallRepo.dir, name, prompt: `load test ${name}` });
  if (c.code !== 0)
    throw new Error(`create failed (${c.code}): ${c.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  t.created = now();
  const term = new Term(NODE, [CLI, 'attach', name], cleanEnv(d.env));
  try {
    await term.waitFor((s) => s.includes('agent> '), { timeoutMs: 120_000 });
    term.mark();
    term.write(`hello from ${name}\r`);
    await term.waitFor((s) => s.includes(`agent heard: hello from ${name}`), { timeoutMs: 120_000 });
    t.answered = now();
    term.write('\x10\x11');
    const exit = await Promise.race([term.exited, sleep(60_000).then(() => ({ exitCode: 'timeout' }))]);
    if (exit.exitCode !== 0) throw new Error(`attach ended with ${exit.exitCode}`);
  } finally {
    term.kill();
  }
  t.detached = now();
  const del = await d.cli(['delete', name, '--force'], { timeoutMs: 300_000 });
  if (del.code !== 0)
    throw new Error(`delete failed (${del.code}): ${del.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  t.deleted = now();
  return {
    create: t.created - t.start,
    exchange: t.answered - t.created,
    delete: t.deleted - t.detached,
    total: t.deleted - t.start,
  };
}

export async function benchLoad(ctx) {
  const n = ctx.sizes.load.sessions;
  const names = Array.from({ length: n }, (_, i) => `bench-load-${String(i).padStart(3, '0')}`);
  const t0 = now();
  const results = await Promise.allSettled(names.map((name) => oneSession(ctx, name)));
  const wall = now() - t0;
  const errors = results
    .map((r, i) => (r.status === 'rejected' ? `${names[i]}: ${r.reason?.message ?? r.reason}` : undefined))
    .filter(Boolean);
  const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  const leftovers = (await labelledObjects(ctx.emu)).filter((o) => o.includes('bench-load-'));
  const wtDir = join(ctx.daemon.home, 'worktrees');
  const worktreeDirs = existsSync(wtDir) ? readdirSync(wtDir).filter((f) => f.startsWith('bench-load-')) : [];
  const gitWorktrees = (await git(ctx.smallRepo.dir, 'worktree', 'list', '--porcelain')).stdout
    .split('\n')
    .filter((l) => l.startsWith('worktree ') && l.includes('bench-load-'));
  for (const e of errors.slice(0, 5)) ctx.log(`load: ${e}`);
  ctx.log(
    `load: ${ok.length}/${n} sessions created, attached, answered and deleted in ${(wall / 1000).toFixed(1)} s; leftovers: ${leftovers.length} objects, ${worktreeDirs.length + gitWorktrees.length} worktrees`,
  );
  const med = (k) => {
    const v = ok.map((r) => r[k]).sort((a, b) => a - b);
    return v.length ? v[Math.floor(v.length / 2)] : Number.NaN;
  };
  ctx.result.load = {
    sessions: n,
    wallMs: wall,
    ok: ok.length,
    errors,
    leftovers,
    worktreeDirs,
    gitWorktrees,
    perSession: ok,
  };
  return [
    figure({
      section: 'load',
      name: `load: ${n} sessions created, attached, answered, deleted concurrently`,
      kind: 'check',
      ok: errors.length === 0,
      targetText: 'no error',
      valueText: `${ok.length}/${n} in ${(wall / 1000).toFixed(1)} s (median create ${(med('create') / 1000).toFixed(1)} s, exchange ${(med('exchange') / 1000).toFixed(1)} s, delete ${(med('delete') / 1000).toFixed(1)} s)`,
    }),
    figure({
      section: 'load',
      name: 'load: leftover labelled objects and worktrees',
      kind: 'check',
      ok: leftovers.length === 0 && worktreeDirs.length === 0 && gitWorktrees.length === 0,
      targetText: 'none',
      valueText: `${leftovers.length} objects, ${worktreeDirs.length} worktree dirs, ${gitWorktrees.length} git worktrees`,
    }),
  ];
}
