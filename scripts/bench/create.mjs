// Create: API requests per create (first, with preflight, and a later one) and the daemon's own time.
import { figure, mustSucceed } from './lib.mjs';

/** `clauderon create --no-attach`, timed. */
export async function createSession(d, { repo, name, prompt = 'bench', timeoutMs = 600_000 }) {
  return d.cli(['create', '--repo', repo, '--prompt', prompt, '--name', name, '--no-attach'], { timeoutMs });
}

export async function deleteSession(d, name) {
  return mustSucceed(await d.cli(['delete', name, '--force'], { timeoutMs: 300_000 }), `delete ${name}`);
}

/**
 * Splits a create's wall time using the arrival times of the CLI's progress lines (see runCli):
 *  - sync: worktree + snapshot (after preflight until "snapshot ready") plus the transfer (from "workspace
 *    container running" until "workspace synced");
 *  - podStart: "created pod" → "workspace container running", and "workspace synced" → "agent started";
 *  - daemonOwn: the rest of spawn → "is ready" (validation, preflight, object creation, bookkeeping, the
 *    CLI's own start and request), i.e. an upper bound of the daemon's own time;
 *  - cliExit: "is ready" → process exit.
 */
export function phases(r) {
  const at = (re) => r.lines.find((l) => re.test(l.text))?.t;
  const t = {
    validate: at(/validated session/),
    preflight: at(/cluster checks passed/),
    worktree: at(/worktree .* on branch/),
    snapshot: at(/snapshot ready/),
    pod: at(/created pod /),
    running: at(/workspace container running/) ?? at(/syncing workspace/),
    synced: at(/workspace synced/),
    started: at(/agent started/),
    ready: at(/session .* is ready/),
  };
  for (const [k, v] of Object.entries(t))
    if (v === undefined) throw new Error(`create output lacks the "${k}" step:\n${r.stderr}`);
  const worktree = t.worktree - t.preflight;
  const snapshot = t.snapshot - t.worktree;
  const transfer = t.synced - t.running;
  const sync = worktree + snapshot + transfer;
  const podStart = t.running - t.pod + (t.started - t.synced);
  const wall = r.t1 - r.t0;
  const toReady = t.ready - r.t0;
  return {
    wall,
    toReady,
    sync,
    worktree,
    snapshot,
    transfer,
    podStart,
    daemonOwn: toReady - sync - podStart,
    beforeFirstEvent: t.validate - r.t0,
    preflight: t.preflight - t.validate,
    objects: t.pod - t.snapshot,
    cliExit: r.t1 - t.ready,
  };
}

function breakdown(requests) {
  const by = {};
  for (const q of requests) {
    const key = `${q.watch ? 'watch' : q.verb} ${q.resource}${q.subresource ? `/${q.subresource}` : ''}`;
    by[key] = (by[key] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(by).sort((a, b) => b[1] - a[1]));
}

async function countedCreate(ctx, name) {
  await ctx.emu.resetRequests();
  const r = mustSucceed(await createSession(ctx.daemon, { repo: ctx.smallRepo.dir, name }), `create ${name}`);
  const { requests } = await ctx.emu.requests();
  const api = requests.filter((q) => q.resource !== undefined || q.verb !== undefined);
  const watches = api.filter((q) => q.watch).length;
  return {
    name,
    total: api.length,
    watches,
    nonWatch: api.length - watches,
    breakdown: breakdown(api),
    phases: phases(r),
  };
}

export async function benchCreate(ctx) {
  // The daemon's start-up reconcile (it lists the managed objects) runs in the background after start:
  // let it finish so that its requests are not counted as the first create's.
  for (let i = 0; i < 50; i++) {
    const { requests } = await ctx.emu.requests();
    if (
      ['pods', 'persistentvolumeclaims', 'configmaps', 'secrets'].every((r) =>
        requests.some((q) => q.verb === 'list' && q.resource === r),
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const first = await countedCreate(ctx, 'bench-create-1');
  const second = await countedCreate(ctx, 'bench-create-2');
  ctx.log(
    `create: first ${first.total} requests (${first.watches} watches), second ${second.total} (${second.watches} watches)`,
  );
  const figures = [];
  for (const [label, c] of [
    ['first (with preflight)', first],
    ['subsequent', second],
  ]) {
    figures.push(
      figure({
        section: 'create',
        name: `create: API requests, ${label} (excl. watches)`,
        kind: 'abs',
        value: c.nonWatch,
        unit: 'req',
        target: 10,
        valueText: `${c.nonWatch} (+${c.watches} watches, ${c.total} total)`,
        detail: c.breakdown,
      }),
    );
  }
  for (const [label, c] of [
    ['first', first],
    ['subsequent', second],
  ]) {
    const p = c.phases;
    figures.push(
      figure({
        section: 'create',
        name: `create: daemon's own time, ${label} (small repo)`,
        kind: 'info',
        value: p.daemonOwn,
        unit: 'ms',
        valueText: `${p.daemonOwn.toFixed(0)} ms of ${p.toReady.toFixed(0)} ms (sync ${p.sync.toFixed(0)}, pod start ${p.podStart.toFixed(0)})`,
        detail: p,
      }),
    );
  }
  ctx.result.create = { first, second };
  // The attach benchmark reuses nothing from here: remove both sessions.
  await deleteSession(ctx.daemon, 'bench-create-1');
  await deleteSession(ctx.daemon, 'bench-create-2');
  return figures;
}
