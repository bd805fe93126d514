import type { ProgressEvent, Session } from '@clauderon/protocol';

export interface Io {
  stdout: NodeJS.WriteStream | NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

export function useColor(io: Io, stream: 'stdout' | 'stderr' = 'stderr'): boolean {
  const s = io[stream] as NodeJS.WriteStream;
  return !io.env.NO_COLOR && io.env.TERM !== 'dumb' && s.isTTY === true;
}

export function paint(io: Io, code: string, text: string, stream: 'stdout' | 'stderr' = 'stderr'): string {
  return useColor(io, stream) ? `\x1b[${code}m${text}\x1b[0m` : text;
}

export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** kubectl-style table: upper-case headers, columns padded to the widest cell, three spaces apart. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

export function sessionsTable(sessions: Session[]): string {
  return table(
    ['NAME', 'PHASE', 'AGENT', 'AGE', 'ATTACHED', 'BRANCH', 'REPO'],
    sessions.map((s) => [
      s.name,
      s.phase,
      s.agent,
      age(s.createdAt),
      String(s.attachedClients),
      s.branch,
      s.repo,
    ]),
  );
}

export function sessionDetails(s: Session): string {
  const rows: [string, string][] = [
    ['Name', s.name],
    ['Backend', s.backend],
    ['Namespace', s.namespace],
    ['Pod', s.podName],
    ['Phase', s.phase],
    ['Agent', s.agent],
    ['Repository', s.repo],
    ['Branch', s.branch],
    ['Created', `${s.createdAt} (${age(s.createdAt)} ago)`],
    ['Attached', String(s.attachedClients)],
  ];
  if (s.message) rows.push(['Message', s.message]);
  return `${rows.map(([k, v]) => `${`${k}:`.padEnd(12)}${v}`).join('\n')}\n`;
}

/**
 * Text from the daemon (paths, names, pod messages) made safe for a terminal: control characters other
 * than tab and newline are shown as \xNN, so a repository path holding an escape sequence cannot repaint
 * the screen.
 */
export function terminalSafe(s: string): string {
  return s.replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/**
 * Progress of a long operation on stderr. On a terminal one line per step, with the current step's byte
 * progress redrawn in place; elsewhere plain lines (byte progress at most every 10%).
 */
export class ProgressRenderer {
  readonly #io: Io;
  readonly #tty: boolean;
  #open = false;
  #lastPct = -1;
  #lastStep = '';

  constructor(io: Io) {
    this.#io = io;
    this.#tty = (io.stderr as NodeJS.WriteStream).isTTY === true && io.env.TERM !== 'dumb';
  }

  event(e: ProgressEvent): void {
    if (e.type !== 'progress') return;
    const tick = paint(this.#io, '32', '✓');
    if (e.bytes && e.bytes.total > 0) {
      const pct = Math.floor((e.bytes.done / e.bytes.total) * 100);
      const text = `  ${terminalSafe(e.message)} ${mib(e.bytes.done)} / ${mib(e.bytes.total)} (${pct}%)`;
      if (this.#tty) {
        this.#io.stderr.write(`\r\x1b[2K${text}`);
        this.#open = true;
      } else if (pct >= this.#lastPct + 10 || pct === 100 || e.step !== this.#lastStep) {
        this.#io.stderr.write(`${text}\n`);
        this.#lastPct = pct;
      }
      this.#lastStep = e.step;
      return;
    }
    this.#lastPct = -1;
    this.#lastStep = e.step;
    this.#io.stderr.write(`${this.#open ? '\r\x1b[2K' : ''}${tick} ${terminalSafe(e.message)}\n`);
    this.#open = false;
  }

  done(): void {
    if (this.#open) this.#io.stderr.write('\n');
    this.#open = false;
  }
}
