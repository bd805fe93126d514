/**
 * Exec and attach over WebSocket with the Kubernetes channel protocol (v5.channel.k8s.io, else v4): binary
 * frames whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, 255 close).
 * Flow control both ways keeps memory bounded: the process's output is paused while the socket has a backlog,
 * and the socket is paused while the process's stdin is full.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { StreamRequest } from '../contract.js';
import type { Proc } from './process.js';

const V5 = 'v5.channel.k8s.io';
const V4 = 'v4.channel.k8s.io';
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

export interface StreamTarget {
  namespace: string;
  pod: string;
  /** exec: a fresh process; attach: the container's main process (not owned by the stream). */
  proc: Proc;
  owned: boolean;
  /** attach: close the process's stdin when this attacher detaches (container stdinOnce). */
  stdinOnce?: boolean;
}

interface Session {
  ws: WebSocket;
  namespace: string;
  pod: string;
}

/** The Status sent on channel 3 at the end of an exec. */
export function exitStatus(code: number, command: string[]): Record<string, unknown> {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

/** Parses one or more resize messages (`{"Width":W,"Height":H}` or `{"height":H,"width":W}`). */
export function parseResize(payload: Buffer): { cols: number; rows: number } | undefined {
  let last: { cols: number; rows: number } | undefined;
  for (const part of payload.toString('utf8').split(/\n|(?<=\})\s*(?=\{)/)) {
    if (!part.trim()) continue;
    try {
      const o = JSON.parse(part) as Record<string, unknown>;
      let cols: number | undefined;
      let rows: number | undefined;
      for (const [k, v] of Object.entries(o)) {
        if (k.toLowerCase() === 'width' && typeof v === 'number') cols = v;
        if (k.toLowerCase() === 'height' && typeof v === 'number') rows = v;
      }
      if (cols !== undefined && rows !== undefined) last = { cols, rows };
    } catch {
      // ignore malformed resize
    }
  }
  return last;
}

export class StreamServer {
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 256 * 1024 * 1024,
    handleProtocols: (protocols: Set<string>) => (protocols.has(V5) ? V5 : protocols.has(V4) ? V4 : false),
  });
  private readonly sessions = new Set<Session>();

  /** Upgrades the request and connects it to `target()` (called once the socket is open). */
  handle(
    kind: 'exec' | 'attach',
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    params: StreamRequest,
    target: () => StreamTarget,
  ): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      let t: StreamTarget;
      try {
        t = target();
      } catch (err) {
        ws.send(
          Buffer.concat([
            Buffer.from([3]),
            Buffer.from(
              JSON.stringify({
                metadata: {},
                status: 'Failure',
                message: `Internal error occurred: ${(err as Error).message}`,
                reason: 'InternalError',
                details: { causes: [{ message: (err as Error).message }] },
                code: 500,
              }),
            ),
          ]),
        );
        ws.close(1000);
        return;
      }
      this.run(kind, ws, params, t);
    });
  }

  private run(kind: 'exec' | 'attach', ws: WebSocket, params: StreamRequest, t: StreamTarget): void {
    const session: Session = { ws, namespace: t.namespace, pod: t.pod };
    this.sessions.add(session);
    const proc = t.proc;
    const v5 = ws.protocol === V5;
    const tty = params.tty;
    const wantStdout = params.stdout;
    const wantStderr = params.stderr && !tty;
    let closed = false;
    let paused = false;

    const send = (ch: number, data: Buffer, cb?: () => void): void => {
      if (closed || ws.readyState !== ws.OPEN) return;
      const frame = Buffer.allocUnsafe(data.length + 1);
      frame[0] = ch;
      data.copy(frame, 1);
      ws.send(frame, { binary: true }, cb);
    };
    const afterSend = (): void => {
      if (paused && ws.bufferedAmount < LOW_WATER) {
        paused = false;
        if (t.owned) proc.resumeOutput();
      }
    };
    // Tell the client the stream is up: an empty frame on the lowest writable channel.
    send(wantStdout ? 1 : wantStderr ? 2 : 3, Buffer.alloc(0));

    const onOutput = (stream: 'stdout' | 'stderr', b: Buffer): void => {
      const ch = tty || stream === 'stdout' ? 1 : 2;
      if ((ch === 1 && !wantStdout) || (ch === 2 && !wantStderr)) return;
      send(ch, b, afterSend);
      if (t.owned && !paused && ws.bufferedAmount > HIGH_WATER) {
        paused = true;
        proc.pauseOutput();
      }
    };
    proc.on('output', onOutput);

    let stdinClosed = false;
    const closeStdin = (): void => {
      if (stdinClosed) return;
      stdinClosed = true;
      if (t.owned || t.stdinOnce) proc.endStdin();
    };

    ws.on('message', (data: Buffer) => {
      if (!Buffer.isBuffer(data) || data.length === 0) return;
      const ch = data[0];
      if (ch === 0) {
        if (!params.stdin || stdinClosed) return;
        if (!proc.write(data.subarray(1))) {
          ws.pause();
          proc.once('drain', () => ws.resume());
        }
      } else if (ch === 4) {
        const size = parseResize(data.subarray(1));
        if (size && tty && size.cols > 0 && size.rows > 0) proc.resize(size.cols, size.rows);
      } else if (ch === 255 && v5) {
        if (data[1] === 0 && params.stdin) closeStdin();
      }
    });
    ws.on('error', () => {});

    const cleanup = (): void => {
      proc.off('output', onOutput);
      proc.off('exit', onExit);
      this.sessions.delete(session);
    };
    ws.on('close', () => {
      const early = !closed;
      closed = true;
      cleanup();
      if (paused && t.owned) proc.resumeOutput();
      ws.resume();
      if (early && proc.running) {
        // The client went away first. A terminal hangs up (SIGHUP), as a runtime closing the pty would;
        // it must not type an end-of-file (^D) into it, which a program such as a tmux client would pass
        // on to whatever it is attached to. Without a terminal, its stdin is simply over.
        if (t.owned && tty) proc.kill('SIGHUP');
        else if (params.stdin) closeStdin();
      }
    });
    const onExit = (code: number): void => {
      if (closed) return;
      const status = kind === 'exec' ? exitStatus(code, params.command) : exitStatus(code, ['attach']);
      // Output from a paused process is flushed before 'exit' fires, so the status comes last.
      send(3, Buffer.from(JSON.stringify(status)));
      closed = true;
      // Reading may be paused for a full stdin that will never drain now: read the client's close frame.
      ws.resume();
      ws.close(1000);
      cleanup();
    };
    if (!proc.running) setImmediate(() => onExit(proc.exitCode ?? 0));
    else proc.on('exit', onExit);
  }

  /** Closes streams abnormally (fault injection); returns how many. */
  killStreams(namespace?: string, pod?: string): number {
    let n = 0;
    for (const s of [...this.sessions]) {
      if (namespace !== undefined && s.namespace !== namespace) continue;
      if (pod !== undefined && s.pod !== pod) continue;
      s.ws.terminate();
      this.sessions.delete(s);
      n++;
    }
    return n;
  }

  closeAll(): void {
    for (const s of this.sessions) s.ws.terminate();
    this.sessions.clear();
    this.wss.close();
  }
}
