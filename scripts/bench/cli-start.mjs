// CLI start: `clauderon --version` against `node -e 0`, both with the project's Node, interleaved.
import { spawnSync } from 'node:child_process';
import { CLI, cleanEnv, figure, median, NODE, now } from './lib.mjs';

function timed(args) {
  const env = cleanEnv();
  const t0 = now();
  const r = spawnSync(NODE, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = now() - t0;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

export async function benchCliStart(ctx) {
  const { runs } = ctx.sizes.cli;
  // Warm the page cache and the compile cache once each.
  timed(['-e', '0']);
  timed([CLI, '--version']);
  const node = [];
  const cli = [];
  for (let i = 0; i < runs; i++) {
    node.push(timed(['-e', '0']));
    cli.push(timed([CLI, '--version']));
  }
  const n = median(node);
  const c = median(cli);
  ctx.log(
    `cli start: clauderon --version ${c.toFixed(1)} ms, node -e 0 ${n.toFixed(1)} ms (median of ${runs})`,
  );
  ctx.result.cliStart = { runs, nodeMs: node, cliMs: cli };
  return [
    figure({
      section: 'cli',
      name: `CLI start: clauderon --version (median of ${runs})`,
      kind: 'ratio',
      value: c,
      unit: 'ms',
      baseline: n,
      baselineName: 'node -e 0',
      target: 1.3,
    }),
  ];
}
