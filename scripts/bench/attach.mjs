// Attach: output throughput of a large stream and keystroke round-trip latency, `clauderon attach` against
// `kubectl exec -it … -- tmux attach` on the same pod and the same tmux session, both in a pseudo-terminal.
import pty from '@lydell/node-pty';
import { createSession, deleteSession } from './create.mjs';
import {
  CLI,
  cleanEnv,
  figure,
  median,
  mustSucceed,
  NAMESPACE,
  NODE,
  now,
  percentile,
  sleep,
} from './lib.mjs';

const ESCAPES =
  /\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78DEHMNOZc]|[\r\x07\x08\x0e\x0f]/g;
const strip = (s) => s.replace(ESCAPES, '');

/** A client in a pseudo-terminal; waits are checked on every chunk of output (no polling delay). */
export class Term {
  constructor(file, args, env) {
    this.proc = pty.spawn(file, args, { name: 'xterm-256color', cols: 100, rows: 30, env });
    this.buf = '';
    this.chars = 0;
    this.waiter = undefined;
    this.proc.onData((d) => {
      this.chars += d.length;
      this.buf += d;
      if (this.buf.length > 1_000_000) this.buf = this.buf.slice(-65536);
      this.#check();
    });
    this.exited = new Promise((r) => this.proc.onExit(r));
  }
  #check() {
    const w = this.waiter;
    if (w?.test(strip(this.buf.slice(-w.window)))) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.resolve(now());
    }
  }
  /** Forgets the output so far: later waits only look at what comes after. */
  mark() {
    this.buf = '';
  }
  /** Resolves to the time (ms) of the chunk that made `test(text)` true; text = last `window` chars, escapes removed. */
  waitFor(test, { timeoutMs = 30_000, window = 4096 } = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(
          new Error(`timed out waiting for output; last: ${JSON.stringify(strip(this.buf.slice(-600)))}`),
        );
      }, timeoutMs);
      this.waiter = { test, window, resolve, timer };
      this.#check();
    });
  }
  write(s) {
    this.proc.write(s);
  }
  kill() {
    try {
      this.proc.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}

async function measureClient(term, { streamMiB, streamRuns, latencySamples }, label, log) {
  await term.waitFor((t) => t.includes('agent> '), { timeoutMs: 30_000 });
  await sleep(800); // the attach repaints twice (attach-session; refresh-client): let it settle
  // Warm-up exchange.
  term.mark();
  term.write('warm up\r');
  await term.waitFor((t) => t.includes('agent heard: warm up'));
  await sleep(100);

  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const lat = [];
  for (let i = 0; i < latencySamples; i++) {
    const c = letters[i % letters.length];
    term.mark();
    const t0 = now();
    term.write(c);
    const t1 = await term.waitFor((t) => t.includes(c), { timeoutMs: 10_000 });
    lat.push(t1 - t0);
    if (i % 40 === 39 || i === latencySamples - 1) {
      // End the line (readline answers it) so the typed line never wraps.
      term.mark();
      term.write('\r');
      await term.waitFor((t) => t.includes('agent heard:') && t.endsWith('agent> '));
    }
    await sleep(2);
  }

  const tput = [];
  for (let r = 0; r < streamRuns; r++) {
    const tag = `${label}${r}`;
    await sleep(300);
    term.mark();
    const chars0 = term.chars;
    const t0 = now();
    term.write(`stream ${streamMiB} ${tag}\r`);
    const t1 = await term.waitFor((t) => t.includes(`done-${tag}-done`), {
      timeoutMs: 300_000,
      window: 8192,
    });
    const seconds = (t1 - t0) / 1000;
    tput.push({ seconds, mibPerSecond: streamMiB / seconds, charsReceived: term.chars - chars0 });
    log(
      `attach ${label}: ${streamMiB} MiB in ${seconds.toFixed(2)} s (${(streamMiB / seconds).toFixed(1)} MiB/s)`,
    );
    await term
      .waitFor((t) => t.endsWith('agent> '), { timeoutMs: 30_000, window: 256 })
      .catch(() => undefined);
  }
  return { lat, tput };
}

async function runClient(kind, ctx, pod, name) {
  const term =
    kind === 'clauderon'
      ? new Term(NODE, [CLI, 'attach', name], cleanEnv(ctx.daemon.env))
      : new Term(
          'kubectl',
          [
            'exec',
            '-it',
            '-n',
            NAMESPACE,
            pod,
            '-c',
            'agent',
            '--',
            'tmux',
            '-u',
            'attach-session',
            '-t',
            'clauderon',
          ],
          ctx.emu.kubeEnv,
        );
  try {
    const r = await measureClient(term, ctx.sizes.attach, kind, ctx.log);
    // Detach: clauderon's keys, or tmux's prefix + d for the kubectl client.
    term.write(kind === 'clauderon' ? '\x10\x11' : '\x02d');
    await Promise.race([term.exited, sleep(10_000)]);
    return r;
  } finally {
    term.kill();
  }
}

export async function benchAttach(ctx) {
  const name = 'bench-attach';
  const pod = `clauderon-${name}`;
  mustSucceed(
    await createSession(ctx.daemon, { repo: ctx.smallRepo.dir, name, prompt: 'bench-stream' }),
    'create',
  );
  const { streamMiB, latencySamples } = ctx.sizes.attach;
  // kubectl first, then clauderon, then each again: drift over time hits both.
  const k1 = await runClient('kubectl', ctx, pod, name);
  const c1 = await runClient('clauderon', ctx, pod, name);
  await deleteSession(ctx.daemon, name);

  const kLat = k1.lat;
  const cLat = c1.lat;
  const kT = median(k1.tput.map((x) => x.mibPerSecond));
  const cT = median(c1.tput.map((x) => x.mibPerSecond));
  ctx.result.attach = { streamMiB, kubectl: k1, clauderon: c1 };
  const p = (v, q) => percentile(v, q);
  ctx.log(
    `attach latency p50/p99: clauderon ${p(cLat, 50).toFixed(2)}/${p(cLat, 99).toFixed(2)} ms, kubectl ${p(kLat, 50).toFixed(2)}/${p(kLat, 99).toFixed(2)} ms`,
  );
  return [
    figure({
      section: 'attach',
      name: `attach: output throughput (${streamMiB} MiB stream through tmux)`,
      kind: 'ratio',
      value: cT,
      unit: 'MiB/s',
      baseline: kT,
      baselineName: 'kubectl exec -it tmux attach',
      target: 0.8,
      atLeast: true,
    }),
    figure({
      section: 'attach',
      name: `attach: keystroke round trip p50 (N=${latencySamples})`,
      kind: 'info',
      value: p(cLat, 50),
      unit: 'ms',
      baseline: p(kLat, 50),
      baselineName: 'kubectl',
      valueText: `${p(cLat, 50).toFixed(2)} ms`,
    }),
    figure({
      section: 'attach',
      name: `attach: keystroke round trip p99 (N=${latencySamples})`,
      kind: 'delta',
      value: p(cLat, 99),
      unit: 'ms',
      baseline: p(kLat, 99),
      baselineName: 'kubectl',
      target: 2,
    }),
  ];
}
