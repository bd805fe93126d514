import { Readable, Writable } from 'node:stream';
import { ClauderonError } from '@clauderon/protocol';
import { Exec, type KubeConfig, type V1Status } from '@kubernetes/client-node';
import type WebSocket from 'ws';
import { mapKubeError } from './errors.js';

export interface ExecOptions {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  /** Bytes for the command's stdin; sent with backpressure, then (protocol v5) stdin is closed. */
  stdin?: Readable;
  /** The exact number of bytes `stdin` must produce; a different count is an error (length-prefixed protocols). */
  stdinSize?: number;
  /** Called as stdin bytes are handed to the socket. */
  onStdinProgress?(sent: number): void;
  /** Keeps at most this many bytes of stdout and of stderr (default 16 MiB); the rest is dropped. */
  maxOutputBytes?: number;
  signal: AbortSignal;
}

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  /** True when output beyond maxOutputBytes was dropped. */
  truncated?: boolean;
}

export interface ExecStream {
  /** The command's stdout; reading slowly pauses the WebSocket (real backpressure). */
  stdout: Readable;
  /** Resolves when the command has ended and its status arrived; rejects like exec. */
  done: Promise<{ exitCode: number; stderr: Buffer }>;
}

/** The WebSocket subprotocol that can close stdin without closing the connection. */
export const V5_PROTOCOL = 'v5.channel.k8s.io';
const STDIN_FRAME = 32 * 1024;
const STDIN_HIGH_WATER = 1024 * 1024;
const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

/** Exit code from the channel-3 Status; throws for a failure that is not a plain non-zero exit. */
export function exitCodeFromStatus(status: V1Status, action: string): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (status.reason === 'NonZeroExitCode' && cause?.message !== undefined) {
    const n = Number.parseInt(cause.message, 10);
    if (Number.isInteger(n)) return n;
  }
  throw new ClauderonError(
    'KUBE_API',
    `${action}: ${status.message ?? status.reason ?? 'the command failed'}`,
    {
      details: { status: status.reason, code: status.code },
    },
  );
}

class Capture extends Writable {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly max: number) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const room = this.max - this.size;
    if (room > 0) {
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.chunks.push(Buffer.from(part));
      this.size += part.length;
    }
    if (chunk.length > room) this.truncated = true;
    cb();
  }
  get buffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Opens the exec WebSocket through client-node, mapping handshake failures. */
async function connect(
  kc: KubeConfig,
  opts: ExecOptions,
  stdout: Writable,
  stderr: Writable | null,
  stdin: Readable | null,
  tty: boolean,
  onStatus: (s: V1Status) => void,
): Promise<WebSocket> {
  const action = `exec in ${opts.namespace}/${opts.pod} (${opts.container})`;
  opts.signal.throwIfAborted();
  try {
    const opening = new Exec(kc).exec(
      opts.namespace,
      opts.pod,
      opts.container,
      opts.command,
      stdout,
      stderr,
      stdin,
      tty,
      onStatus,
    ) as unknown as Promise<WebSocket>;
    // client-node waits for the upgrade without a deadline: an API server that never answers must not
    // outlive our signal. On abort, give up now and close the socket whenever it does open.
    const ws = await new Promise<WebSocket>((resolve, reject) => {
      const onAbort = () => {
        opening.then(
          (w) => w.terminate(),
          () => {},
        );
        reject(opts.signal.reason);
      };
      opts.signal.addEventListener('abort', onAbort, { once: true });
      opening.then(
        (w) => {
          opts.signal.removeEventListener('abort', onAbort);
          resolve(w);
        },
        (e: unknown) => {
          opts.signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
    // A handshake error after open would otherwise be an unhandled 'error' event.
    ws.on('error', () => {});
    if (opts.signal.aborted) {
      ws.terminate();
      opts.signal.throwIfAborted();
    }
    return ws;
  } catch (e) {
    if (opts.signal.aborted) throw new ClauderonError('CANCELLED', `${action}: cancelled`, { cause: e });
    const m = mapKubeError(e, { action, namespace: opts.namespace });
    if (m.code === 'CLAUDERON_E_KUBE_API' && (m.details?.status === 404 || m.details?.status === 400)) {
      throw new ClauderonError(
        'KUBE_API',
        `${action}: the pod or container is not there or not running (HTTP ${m.details.status})`,
        {
          details: m.details,
          cause: e,
        },
      );
    }
    throw m;
  }
}

/**
 * Pumps `src` into the exec's stdin channel in frames of 32 KiB, waiting whenever more than 1 MiB is
 * queued on the socket (client-node's own stdin pump ignores backpressure). After the last byte it sends
 * the v5 "close stdin" frame when v5 was negotiated; on older protocols the remote must know the length.
 * Resolves when all is handed over, or early (without error) if the socket closes first.
 */
export async function pumpStdin(
  ws: WebSocket,
  src: Readable,
  opts: { signal: AbortSignal; size?: number; onProgress?(sent: number): void },
): Promise<void> {
  let queued = 0;
  let sent = 0;
  let read = 0;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  ws.on('close', notify);
  const open = () => ws.readyState === ws.OPEN;
  try {
    for await (const chunk of src) {
      const buf: Buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      read += buf.length;
      for (let off = 0; off < buf.length; off += STDIN_FRAME) {
        if (!open() || opts.signal.aborted) return;
        const part = buf.subarray(off, off + STDIN_FRAME);
        const frame = Buffer.allocUnsafe(part.length + 1);
        frame[0] = 0;
        part.copy(frame, 1);
        queued += frame.length;
        ws.send(frame, (err) => {
          queued -= frame.length;
          if (!err) {
            sent += part.length;
            opts.onProgress?.(sent);
          }
          notify();
        });
        // Backpressure: while too much is queued, stop reading the source (for-await pulls no more).
        while (open() && (queued > STDIN_HIGH_WATER || ws.bufferedAmount > STDIN_HIGH_WATER)) {
          await new Promise<void>((r) => {
            wake = r;
          });
        }
      }
    }
    if (opts.size !== undefined && read !== opts.size) {
      throw new ClauderonError('INTERNAL', `stdin produced ${read} bytes, ${opts.size} were announced`);
    }
    if (open() && ws.protocol === V5_PROTOCOL) ws.send(Buffer.from([255, 0]));
  } finally {
    ws.off('close', notify);
  }
}

/** Runs a command and collects stdout, stderr (capped) and the exit code from the channel-3 Status. */
export async function exec(kc: KubeConfig, opts: ExecOptions): Promise<ExecResult> {
  const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const out = new Capture(max);
  const err = new Capture(max);
  const { finished } = await run(kc, opts, out, err);
  const exitCode = await finished;
  const result: ExecResult = { exitCode, stdout: out.buffer, stderr: err.buffer };
  if (out.truncated || err.truncated) result.truncated = true;
  return result;
}

/** Runs a command with stdout as a Readable; slow reading pauses the socket. */
export async function execStream(kc: KubeConfig, opts: ExecOptions): Promise<ExecStream> {
  let ws: WebSocket | undefined;
  let pausedByUs = false;
  const stdout = new Readable({
    read() {
      if (pausedByUs && ws) {
        pausedByUs = false;
        ws.resume();
      }
    },
  });
  // Without a listener a destroy(err) would crash the process; consumers attach their own too.
  stdout.on('error', () => {});
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!stdout.push(chunk) && ws && !pausedByUs) {
        pausedByUs = true;
        ws.pause();
      }
      cb();
    },
    final(cb) {
      stdout.push(null);
      cb();
    },
  });
  const err = new Capture(opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT);
  const started = await run(kc, opts, sink, err);
  ws = started.ws;
  const done = started.finished.then(
    (exitCode) => ({ exitCode, stderr: err.buffer }),
    (e: unknown) => {
      stdout.destroy(e as Error);
      throw e;
    },
  );
  done.catch(() => {}); // handled by whoever awaits `done`; never an unhandled rejection
  return { stdout, done };
}

async function run(
  kc: KubeConfig,
  opts: ExecOptions,
  out: Writable,
  err: Writable,
): Promise<{ ws: WebSocket; finished: Promise<number> }> {
  const action = `exec ${JSON.stringify(opts.command[0] ?? '')} in ${opts.namespace}/${opts.pod} (${opts.container})`;
  let status: V1Status | undefined;
  // client-node is given a stdin that never produces data: it only makes the request ask for stdin; the
  // bytes are pumped by pumpStdin with backpressure.
  const stdinMarker = opts.stdin ? new Readable({ read() {} }) : null;
  const ws = await connect(kc, opts, out, err, stdinMarker, false, (s) => {
    status = s;
  });
  let pumpError: unknown;
  const finished = new Promise<number>((resolve, reject) => {
    const onAbort = () => ws.terminate();
    opts.signal.addEventListener('abort', onAbort, { once: true });
    ws.on('close', (code) => {
      opts.signal.removeEventListener('abort', onAbort);
      if (opts.stdin && !opts.stdin.destroyed) opts.stdin.destroy();
      if (opts.signal.aborted) return reject(new ClauderonError('CANCELLED', `${action}: cancelled`));
      if (pumpError !== undefined)
        return reject(mapKubeError(pumpError, { action, namespace: opts.namespace }));
      if (status === undefined) {
        // Not success: the stream died (network, kubelet restart) and the command's fate is unknown.
        return reject(
          new ClauderonError(
            'KUBE_API',
            `${action}: the stream closed without an exit status (WebSocket code ${code})`,
            {
              details: { wsCode: code },
            },
          ),
        );
      }
      try {
        resolve(exitCodeFromStatus(status, action));
      } catch (e) {
        reject(e);
      }
    });
  });
  finished.catch(() => {});
  if (opts.stdin) {
    const pumpOpts: Parameters<typeof pumpStdin>[2] = { signal: opts.signal };
    if (opts.stdinSize !== undefined) pumpOpts.size = opts.stdinSize;
    if (opts.onStdinProgress) pumpOpts.onProgress = opts.onStdinProgress;
    pumpStdin(ws, opts.stdin, pumpOpts).catch((e: unknown) => {
      pumpError = e;
      ws.terminate();
    });
  }
  return { ws, finished };
}
