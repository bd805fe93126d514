// Scale: N sessions created in parallel, the daemon's memory with them live, and `clauderon list` with
// hundreds of sessions (most of them objects written straight into the emulator).
import { createSession } from './create.mjs';
import { figure, median, mustSucceed, NAMESPACE, now, pool, sleep } from './lib.mjs';

const pad = (i) => String(i).padStart(3, '0');
const rssMB = (d) => (d.rssMiB() * 1048576) / 1e6;

/** `clauderon list` end to end (CLI process) and the daemon's list call alone (GET /v1/sessions on its socket). */
async function timeList(ctx, runs) {
  const cli = [];
  const api = [];
  let count = 0;
  for (let i = 0; i < runs; i++) {
    const r = mustSucceed(await ctx.daemon.cli(['list']), 'list');
    cli.push(r.ms);
    count = r.stdout.trim().split('\n').length - 1;
    const t0 = now();
    const res = await ctx.daemon.get('/v1/sessions');
    api.push(now() - t0);
    if (res.status !== 200) throw new Error(`GET /v1/sessions: ${res.status} ${res.body.slice(0, 500)}`);
  }
  return { cliMs: median(cli), apiMs: median(api), count, cli, api };
}

export async function benchScale(ctx) {
  const n = ctx.sizes.scale.sessions;
  const d = ctx.daemon;
  const rssIdle = rssMB(d);
  const names = Array.from({ length: n }, (_, i) => `bench-scale-${pad(i)}`);
  const t0 = now();
  const results = await Promise.all(names.map((name) => createSession(d, { repo: ctx.smallRepo.dir, name })));
  const createWall = now() - t0;
  const failed = results.map((r, i) => [names[i], r]).filter(([, r]) => r.code !== 0);
  for (const [name, r] of failed.slice(0, 3))
    ctx.log(`scale: create ${name} failed (${r.code}): ${r.stderr.slice(-800)}`);
  ctx.log(
    `scale: ${n - failed.length}/${n} parallel creates succeeded in ${(createWall / 1000).toFixed(1)} s`,
  );
  await sleep(2000); // let the daemon settle (GC) before reading its memory
  const rss = rssMB(d);
  const list50 = await timeList(ctx, 5);
  const rssAfterList = rssMB(d);
  ctx.log(
    `scale: daemon RSS ${rssIdle.toFixed(0)} MB idle, ${rss.toFixed(0)} MB with ${n} sessions, ${rssAfterList.toFixed(0)} MB after list`,
  );

  const t1 = now();
  const deletes = await Promise.all(
    names.map((name) => d.cli(['delete', name, '--force'], { timeoutMs: 300_000 })),
  );
  const deleteWall = now() - t1;
  const deleteFailed = deletes.filter((r) => r.code !== 0).length;
  const deleteErrors = deletes
    .map((r, i) =>
      r.code !== 0 ? `${names[i]}: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}` : undefined,
    )
    .filter(Boolean);
  for (const e of deleteErrors.slice(0, 3)) ctx.log(`scale: delete ${e}`);
  // Whatever the parallel delete left is deleted one at a time, so later sections start clean.
  let retried = 0;
  for (const [i, r] of deletes.entries()) {
    if (r.code === 0) continue;
    const again = await d.cli(['delete', names[i], '--force'], { timeoutMs: 300_000 });
    if (again.code === 0) retried++;
  }
  if (deleteFailed > 0)
    ctx.log(`scale: ${retried}/${deleteFailed} failed deletes succeeded when retried one at a time`);
  ctx.result.scale = {
    sessions: n,
    createWallMs: createWall,
    createMs: results.map((r) => r.ms),
    failed: failed.map(([name, r]) => ({ name, code: r.code, stderr: r.stderr.slice(-2000) })),
    rssIdleMB: rssIdle,
    rssMB: rss,
    rssAfterListMB: rssAfterList,
    list: list50,
    deleteWallMs: deleteWall,
    deleteFailed,
    deleteErrors,
    deleteRetriedOk: retried,
  };
  return [
    figure({
      section: 'scale',
      name: `scale: ${n} sessions created in parallel`,
      kind: 'check',
      ok: failed.length === 0,
      targetText: 'all succeed',
      valueText: `${n - failed.length}/${n} in ${(createWall / 1000).toFixed(1)} s (median create ${(median(results.map((r) => r.ms)) / 1000).toFixed(1)} s)`,
    }),
    figure({
      section: 'scale',
      name: `scale: daemon RSS with ${n} live sessions`,
      kind: 'abs',
      value: Math.max(rss, rssAfterList),
      unit: 'MB',
      target: 150,
      baseline: rssIdle,
      baselineName: 'idle daemon',
    }),
    figure({
      section: 'scale',
      name: `scale: clauderon list with ${n} sessions`,
      kind: 'info',
      value: list50.cliMs,
      unit: 'ms',
      valueText: `${list50.cliMs.toFixed(0)} ms (daemon call ${list50.apiMs.toFixed(0)} ms)`,
    }),
    figure({
      section: 'scale',
      name: `scale: ${n} sessions deleted in parallel`,
      kind: 'check',
      ok: deleteFailed === 0,
      targetText: 'all succeed',
      valueText: `${n - deleteFailed}/${n} in ${(deleteWall / 1000).toFixed(1)} s${deleteFailed ? ` (${retried} of the failed ones succeeded on a sequential retry)` : ''}`,
    }),
  ];
}

/** Copies a real session's objects under another session name (nodeName elsewhere: the kubelet ignores them). */
function fakeFrom(seedName, obj, name) {
  const o = structuredClone(obj);
  for (const k of [
    'uid',
    'resourceVersion',
    'creationTimestamp',
    'managedFields',
    'ownerReferences',
    'finalizers',
    'generation',
  ])
    delete o.metadata[k];
  const status = o.status;
  delete o.status;
  const text = JSON.stringify(o).replaceAll(seedName, name);
  const out = JSON.parse(text);
  if (out.kind === 'Pod') out.spec.nodeName = 'bench-elsewhere';
  return {
    body: out,
    status: status ? JSON.parse(JSON.stringify(status).replaceAll(seedName, name)) : undefined,
  };
}

export async function benchList(ctx) {
  const total = ctx.sizes.scale.listSessions;
  const seed = 'benchseed';
  mustSucceed(
    await createSession(ctx.daemon, { repo: ctx.smallRepo.dir, name: seed }),
    'create seed session',
  );
  const base = `/api/v1/namespaces/${NAMESPACE}`;
  const objects = [
    ['pods', await ctx.emu.api('GET', `${base}/pods/clauderon-${seed}`)],
    [
      'persistentvolumeclaims',
      await ctx.emu.api('GET', `${base}/persistentvolumeclaims/clauderon-${seed}-workspace`),
    ],
    ['configmaps', await ctx.emu.api('GET', `${base}/configmaps/clauderon-${seed}-ca`)],
    ['secrets', await ctx.emu.api('GET', `${base}/secrets/clauderon-${seed}-proxy`)],
  ];
  const t0 = now();
  const fakes = Array.from({ length: total - 1 }, (_, i) => `benchfake-${pad(i)}`);
  await pool(fakes, 16, async (name) => {
    for (const [resource, obj] of objects) {
      const { body, status } = fakeFrom(seed, obj, name);
      await ctx.emu.api('POST', `${base}/${resource}`, body);
      if (resource === 'pods' && status)
        await ctx.emu.api(
          'PATCH',
          `${base}/pods/${body.metadata.name}/status`,
          { status },
          'application/merge-patch+json',
        );
    }
  });
  ctx.log(
    `list: wrote ${fakes.length} fake sessions (${fakes.length * 4} objects) into the emulator in ${((now() - t0) / 1000).toFixed(1)} s`,
  );
  const runs = ctx.sizes.cli.runs >= 20 ? 7 : 3;
  await timeList(ctx, 1); // warm-up
  const l = await timeList(ctx, runs);
  const json = JSON.parse(mustSucceed(await ctx.daemon.cli(['list', '-o', 'json']), 'list -o json').stdout);
  const sessions = Array.isArray(json) ? json : json.sessions;
  const running = sessions.filter((s) => s.phase === 'Running').length;
  ctx.log(
    `list: ${sessions.length} sessions (${running} Running): clauderon list ${l.cliMs.toFixed(0)} ms, daemon call ${l.apiMs.toFixed(0)} ms`,
  );
  ctx.result.list = { sessions: sessions.length, running, ...l, rssMB: rssMB(ctx.daemon) };
  return [
    figure({
      section: 'scale',
      name: `scale: clauderon list with ${sessions.length} sessions (CLI process, median of ${runs})`,
      kind: 'abs',
      value: l.cliMs,
      unit: 'ms',
      target: 100,
    }),
    figure({
      section: 'scale',
      name: `scale: daemon list call alone with ${sessions.length} sessions (GET /v1/sessions)`,
      kind: 'info',
      value: l.apiMs,
      unit: 'ms',
    }),
  ];
}
