#!/usr/bin/env node
// clauderon's benchmark suite: `npm run bench` (builds first). Every figure is compared with a baseline
// measured in the same run on the same machine and printed with its target and MET/MISSED; the full
// results go to bench-results/<timestamp>.json. Method and figures: docs/benchmarks.md.
//
// Sizes: the default run uses the sizes of the issue; BENCH_QUICK=1 uses small ones. Single knobs:
// BENCH_REPO_FILES, BENCH_REPO_KIB, BENCH_SYNC_RUNS, BENCH_STREAM_MIB, BENCH_STREAM_RUNS,
// BENCH_LATENCY_SAMPLES, BENCH_SCALE_SESSIONS, BENCH_LIST_SESSIONS, BENCH_LOAD_SESSIONS, BENCH_CLI_RUNS,
// BENCH_TIME_SCALE (the emulator's simulated kubelet delays), BENCH_ONLY=cli,create,sync,attach,scale,load.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { benchAttach } from './bench/attach.mjs';
import { benchCliStart } from './bench/cli-start.mjs';
import { benchCreate } from './bench/create.mjs';
import {
  cleanupAll,
  execFileP,
  installAgent,
  NODE,
  now,
  ROOT,
  renderTable,
  startDaemon,
  startEmulator,
} from './bench/lib.mjs';
import { benchLoad } from './bench/load.mjs';
import { generateRepo } from './bench/repo.mjs';
import { benchList, benchScale } from './bench/scale.mjs';
import { benchSync } from './bench/sync.mjs';

const quick = process.env.BENCH_QUICK === '1';
const num = (name, full, small) => {
  const v = process.env[name];
  return v !== undefined && v !== '' ? Number(v) : quick ? small : full;
};
const sizes = {
  repo: { files: num('BENCH_REPO_FILES', 5000, 500), avgKiB: num('BENCH_REPO_KIB', 10, 4) },
  sync: { runs: num('BENCH_SYNC_RUNS', 2, 1) },
  attach: {
    streamMiB: num('BENCH_STREAM_MIB', 20, 4),
    streamRuns: num('BENCH_STREAM_RUNS', 3, 2),
    latencySamples: num('BENCH_LATENCY_SAMPLES', 200, 50),
  },
  scale: {
    sessions: num('BENCH_SCALE_SESSIONS', 50, 10),
    listSessions: num('BENCH_LIST_SESSIONS', 500, 100),
  },
  load: { sessions: num('BENCH_LOAD_SESSIONS', 50, 10) },
  cli: { runs: num('BENCH_CLI_RUNS', 30, 10) },
  timeScale: num('BENCH_TIME_SCALE', 1, 0.1),
};
const only = new Set(
  (process.env.BENCH_ONLY ?? 'cli,create,sync,attach,scale,load').split(',').map((s) => s.trim()),
);

const started = Date.now();
const log = (m) =>
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${m}\n`);

const figures = [];
const result = {
  startedAt: new Date(started).toISOString(),
  quick,
  sizes,
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memMiB: Math.round(totalmem() / 1048576),
    node: process.version,
    nodePath: NODE,
  },
};
const errors = [];

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping everything the bench started`);
    cleanupAll().finally(() => process.exit(130));
  });
}

let ctx;
async function section(name, fn) {
  if (!only.has(name)) return;
  const t0 = now();
  log(`${name}: start`);
  try {
    await ctx.ensureDaemon?.();
    const f = await fn();
    figures.push(...f);
  } catch (e) {
    errors.push({ section: name, error: String(e?.stack ?? e) });
    log(`${name}: FAILED: ${e?.stack ?? e}`);
    figures.push({
      section: name,
      name: `${name}: benchmark failed`,
      kind: 'check',
      met: false,
      valueText: String(e?.message ?? e)
        .split('\n')[0]
        .slice(0, 80),
    });
  }
  result.sectionSeconds = { ...(result.sectionSeconds ?? {}), [name]: (now() - t0) / 1000 };
  log(`${name}: done in ${((now() - t0) / 1000).toFixed(1)} s`);
}

try {
  result.git = (
    await execFileP('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).catch(() => ({ stdout: '' }))
  ).stdout.trim();
  ctx = { sizes, log, result };

  // Before anything else runs on the machine: process start-up times are the most sensitive to noise.
  await section('cli', () => benchCliStart(ctx));

  if (['create', 'sync', 'attach', 'scale', 'load'].some((s) => only.has(s))) {
    log('generating repositories');
    ctx.smallRepo = await generateRepo({
      files: 20,
      avgKiB: 1,
      commits: 2,
      perCommit: 5,
      modified: 2,
      staged: 1,
      untracked: 1,
    });
    if (only.has('sync')) ctx.bigRepo = await generateRepo(sizes.repo);
    log('starting the emulator and the daemon');
    const deaths = [];
    result.deaths = deaths;
    const onDeath = ({ what, code, signal, log: out }) => {
      const file = join(ROOT, 'bench-results', `${what}-death-${Date.now()}.log`);
      mkdirSync(join(ROOT, 'bench-results'), { recursive: true });
      writeFileSync(file, out);
      deaths.push({ what, at: new Date().toISOString(), code, signal, log: file });
      log(`THE ${what.toUpperCase()} DIED (exit ${code}, signal ${signal}); its output is in ${file}`);
    };
    ctx.emu = await startEmulator({ timeScale: sizes.timeScale, onDeath });
    ctx.agentPath = installAgent();
    ctx.daemon = await startDaemon({ emu: ctx.emu, agentPath: ctx.agentPath, onDeath });
    // A daemon that died in one section is restarted (same home) so the next section still measures.
    ctx.ensureDaemon = async () => {
      if (ctx.daemon.child.exitCode === null && ctx.daemon.child.signalCode === null) return;
      log('restarting the daemon');
      ctx.daemon = await startDaemon({
        emu: ctx.emu,
        agentPath: ctx.agentPath,
        onDeath,
        home: ctx.daemon.home,
      });
    };

    await section('create', () => benchCreate(ctx));
    await section('sync', () => benchSync(ctx));
    await section('attach', () => benchAttach(ctx));
    await section('scale', () => benchScale(ctx));
    await section('load', () => benchLoad(ctx));
    // Last: it leaves hundreds of fake sessions in the emulator, which is thrown away afterwards.
    await section('scale', () => benchList(ctx));
  }
} catch (e) {
  errors.push({ section: 'setup', error: String(e?.stack ?? e) });
  log(`setup failed: ${e?.stack ?? e}`);
} finally {
  await cleanupAll();
}

result.finishedAt = new Date().toISOString();
result.seconds = (Date.now() - started) / 1000;
result.figures = figures;
result.errors = errors;
const table = renderTable(figures);
const dir = join(ROOT, 'bench-results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `${result.startedAt.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`\n${table}\n\n`);
const missed = figures.filter((f) => f.met === false).length;
const met = figures.filter((f) => f.met === true).length;
process.stdout.write(
  `${met} MET, ${missed} MISSED, ${errors.length} section error(s); ${result.seconds.toFixed(0)} s on ${result.machine.cpus} CPUs${quick ? ' (BENCH_QUICK sizes)' : ''}\nresults: ${file}\n`,
);
process.exitCode = errors.length > 0 ? 1 : 0;
