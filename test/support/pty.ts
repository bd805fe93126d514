import pty from '@lydell/node-pty';
import { CLI, cliEnv } from './cli.js';

/** The real CLI in a pseudo-terminal, with helpers to wait for screen output. */
export class PtyCli {
  readonly proc: pty.IPty;
  #out = '';
  readonly exited: Promise<{ exitCode: number; signal?: number }>;

  constructor(
    args: string[],
    opts: { home: string; env: Record<string, string>; cols?: number; rows?: number },
  ) {
    this.proc = pty.spawn(process.execPath, [CLI, ...args], {
      name: 'xterm-256color',
      cols: opts.cols ?? 100,
      rows: opts.rows ?? 30,
      env: cliEnv(opts.home, opts.env) as Record<string, string>,
    });
    this.proc.onData((d) => {
      this.#out += d;
    });
    this.exited = new Promise((r) => this.proc.onExit(r));
  }

  get output(): string {
    return this.#out;
  }

  /** Output with terminal escape sequences removed, for matching. */
  get text(): string {
    return this.#out.replace(/\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>78]|\r/g, '');
  }

  /** Marks the current output position; waitFor(…, {since}) only looks after it. */
  mark(): number {
    return this.text.length;
  }

  async waitFor(re: RegExp, opts: { since?: number; timeoutMs?: number } = {}): Promise<void> {
    const end = Date.now() + (opts.timeoutMs ?? 20_000);
    while (!re.test(this.text.slice(opts.since ?? 0))) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} in:\n${this.text.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  write(s: string): void {
    this.proc.write(s);
  }

  kill(): void {
    try {
      this.proc.kill();
    } catch {
      // already gone
    }
  }
}
