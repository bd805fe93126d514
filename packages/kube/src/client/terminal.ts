import { Readable, Writable } from 'node:stream';
import { ClauderonError } from '@clauderon/protocol';
import type { KubeConfig, V1Status } from '@kubernetes/client-node';
import { Exec } from '@kubernetes/client-node';
import type WebSocket from 'ws';
import { mapKubeError } from './errors.js';
import { exitCodeFromStatus } from './exec.js';

export interface TerminalOptions {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  cols: number;
  rows: number;
  signal: AbortSignal;
  /** Ping interval on the WebSocket (default 15 s). */
  pingIntervalMs?: number;
  /** No pong for this long means the stream is dead (default 30 s). */
  pongTimeoutMs?: number;
}

export interface TerminalClosed {
  /** The command's exit code, or null when the stream ended without a status. */
  exitCode: number | null;
  /** Why the stream ended abnormally (dead stream, closed without status); absent after close(). */
  error?: Error;
}

export interface Terminal {
  write(data: Buffer | string): void;
  resize(cols: number, rows: number): void;
  /** Output of the terminal. Output that arrives before the first listener is kept for it. */
  onData(cb: (b: Buffer) => void): void;
  closed: Promise<TerminalClosed>;
  close(): void;
  ws: WebSocket;
}

/**
 * The tty's output side as client-node sees it: a Writable with `rows`/`columns` that emits 'resize', which
 * makes client-node's Exec send the size at once and on every resize (its TerminalSizeQueue).
 */
class TerminalOutput extends Writable {
  rows: number;
  columns: number;
  private readonly dataListeners: Array<(b: Buffer) => void> = [];
  private pending: Buffer[] = [];
  constructor(cols: number, rows: number) {
    super();
    this.columns = cols;
    this.rows = rows;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.dataListeners.length === 0) this.pending.push(Buffer.from(chunk));
    else for (const l of this.dataListeners) l(chunk);
    cb();
  }
  addListenerForData(cb: (b: Buffer) => void): void {
    this.dataListeners.push(cb);
    const p = this.pending;
    this.pending = [];
    for (const b of p) cb(b);
  }
  setSize(cols: number, rows: number): void {
    this.columns = cols;
    this.rows = rows;
    this.emit('resize');
  }
}

/**
 * Opens an interactive tty exec (e.g. ATTACH_COMMAND). Resizes go through client-node's TerminalSizeQueue;
 * a ping every 15 s notices a dead stream (no pong within 30 s), which client-node alone never does
 * (kubernetes-client/javascript#478, #2133).
 */
export async function openTerminal(kc: KubeConfig, opts: TerminalOptions): Promise<Terminal> {
  const action = `open a terminal in ${opts.namespace}/${opts.pod} (${opts.container})`;
  const out = new TerminalOutput(opts.cols, opts.rows);
  const input = new Readable({ read() {} });
  let status: V1Status | undefined;
  opts.signal.throwIfAborted();
  let ws: WebSocket;
  try {
    ws = (await new Exec(kc).exec(
      opts.namespace,
      opts.pod,
      opts.container,
      opts.command,
      out,
      null,
      input,
      true,
      (s) => {
        status = s;
      },
    )) as unknown as WebSocket;
  } catch (e) {
    if (opts.signal.aborted) throw new ClauderonError('CANCELLED', `${action}: cancelled`, { cause: e });
    throw mapKubeError(e, { action, namespace: opts.namespace });
  }
  ws.on('error', () => {});

  let closedByUs = false;
  let deadError: Error | undefined;
  let lastPong = Date.now();
  ws.on('pong', () => {
    lastPong = Date.now();
  });
  const pingEvery = opts.pingIntervalMs ?? 15_000;
  const pongTimeout = opts.pongTimeoutMs ?? 30_000;
  const timer = setInterval(() => {
    if (Date.now() - lastPong > pongTimeout) {
      deadError = new ClauderonError(
        'CLUSTER_UNREACHABLE',
        `${action}: the stream stopped answering (no pong)`,
      );
      ws.terminate();
      return;
    }
    try {
      ws.ping();
    } catch {
      // closing already; the close handler reports it
    }
  }, pingEvery);
  timer.unref();

  const close = () => {
    if (closedByUs) return;
    closedByUs = true;
    input.push(null);
    ws.close();
    // A peer that never completes the close handshake must not keep us waiting.
    setTimeout(() => ws.terminate(), 2000).unref();
  };
  const onAbort = () => close();
  opts.signal.addEventListener('abort', onAbort, { once: true });

  const closed = new Promise<TerminalClosed>((resolve) => {
    ws.on('close', (code) => {
      clearInterval(timer);
      opts.signal.removeEventListener('abort', onAbort);
      if (status !== undefined) {
        try {
          return resolve({ exitCode: exitCodeFromStatus(status, action) });
        } catch (e) {
          return resolve({ exitCode: null, error: e as Error });
        }
      }
      if (deadError) return resolve({ exitCode: null, error: deadError });
      if (closedByUs) return resolve({ exitCode: null });
      resolve({
        exitCode: null,
        error: new ClauderonError(
          'KUBE_API',
          `${action}: the stream closed without an exit status (WebSocket code ${code})`,
        ),
      });
    });
  });

  return {
    write(data) {
      if (!closedByUs) input.push(typeof data === 'string' ? Buffer.from(data) : data);
    },
    resize(cols, rows) {
      if (cols > 0 && rows > 0 && (cols !== out.columns || rows !== out.rows)) out.setSize(cols, rows);
    },
    onData(cb) {
      out.addListenerForData(cb);
    },
    closed,
    close,
    ws,
  };
}
