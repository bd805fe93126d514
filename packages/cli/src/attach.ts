import type { AttachControl, ErrorBody } from '@clauderon/protocol';
import { ClauderonError } from '@clauderon/protocol/core';
import WebSocket from 'ws';
import type { DaemonClient } from './client.js';
import type { Io } from './output.js';

/** Parses "ctrl-p,ctrl-q" (Docker's syntax) into the bytes the terminal sends. */
export function parseDetachKeys(spec: string): Buffer {
  const bytes: number[] = [];
  for (const part of spec.split(',').map((s) => s.trim().toLowerCase())) {
    const m = /^ctrl-(.)$/.exec(part);
    if (m) {
      const c = m[1]!;
      const code =
        c === '@'
          ? 0
          : c >= 'a' && c <= 'z'
            ? c.charCodeAt(0) - 96
            : '[\\]^_'.includes(c)
              ? c.charCodeAt(0) - 64
              : -1;
      if (code < 0)
        throw new ClauderonError('USAGE', `invalid detach key "${part}"`, { hint: 'use e.g. ctrl-p,ctrl-q' });
      bytes.push(code);
    } else if (part.length === 1) {
      bytes.push(part.charCodeAt(0));
    } else {
      throw new ClauderonError('USAGE', `invalid detach key "${part}"`, { hint: 'use e.g. ctrl-p,ctrl-q' });
    }
  }
  if (bytes.length === 0) throw new ClauderonError('USAGE', 'empty detach key sequence');
  return Buffer.from(bytes);
}

/** Splits typed input into what to send now and whether the detach sequence completed. */
export class DetachMatcher {
  readonly #seq: Buffer;
  #matched = 0;

  constructor(seq: Buffer) {
    this.#seq = seq;
  }

  feed(chunk: Buffer): { send: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      if (b === this.#seq[this.#matched]) {
        this.#matched++;
        if (this.#matched === this.#seq.length) return { send: Buffer.from(out), detach: true };
        continue;
      }
      // A broken partial match: what was held back is ordinary input after all.
      for (let i = 0; i < this.#matched; i++) out.push(this.#seq[i]!);
      this.#matched = 0;
      if (b === this.#seq[0]) this.#matched = 1;
      else out.push(b);
    }
    return { send: Buffer.from(out), detach: false };
  }
}

type TtyIn = NodeJS.ReadStream & { setRawMode?: (raw: boolean) => void; isTTY?: boolean };

/**
 * Connects the local terminal to a session: raw mode in, bytes out, resize following the terminal,
 * detach keys leaving the agent running. Resolves to the exit code: the agent's when it exits, 0 on detach.
 */
export async function attachTerminal(opts: {
  client: DaemonClient;
  name: string;
  io: Io;
  stdin: TtyIn;
  detachKeys: string;
}): Promise<number> {
  const { client, name, io, stdin } = opts;
  const out = io.stdout as NodeJS.WriteStream;
  const matcher = new DetachMatcher(parseDetachKeys(opts.detachKeys));
  const size = () => ({ cols: out.columns || 80, rows: out.rows || 24 });
  const ws = new WebSocket(client.attachUrl(name, size().cols, size().rows), { perMessageDeflate: false });
  const raw = stdin.isTTY === true && typeof stdin.setRawMode === 'function';

  return new Promise<number>((resolve, reject) => {
    let exitCode: number | undefined;
    let detached = false;
    let serverError: ErrorBody | undefined;
    const control = (c: AttachControl) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(c));
    };
    const onInput = (chunk: Buffer) => {
      const { send, detach } = matcher.feed(chunk);
      if (send.length > 0 && ws.readyState === WebSocket.OPEN) ws.send(send, { binary: true });
      if (detach) {
        detached = true;
        control({ type: 'detach' });
        ws.close(1000, 'detach');
      }
    };
    const onResize = () => control({ type: 'resize', ...size() });
    const cleanup = () => {
      stdin.off('data', onInput);
      out.off?.('resize', onResize);
      if (raw) stdin.setRawMode!(false);
      stdin.pause();
    };

    ws.on('open', () => {
      if (raw) stdin.setRawMode!(true);
      stdin.on('data', onInput);
      stdin.resume();
      out.on?.('resize', onResize);
      onResize();
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        io.stdout.write(data);
        return;
      }
      let msg: AttachControl | { type: 'error'; error: ErrorBody };
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        return;
      }
      if (msg.type === 'notice') io.stderr.write(`\r\n[clauderon] ${msg.message}\r\n`);
      else if (msg.type === 'exit') exitCode = msg.code;
      else if (msg.type === 'error') serverError = msg.error;
    });
    ws.on('error', (e: NodeJS.ErrnoException) => {
      cleanup();
      if (['ENOENT', 'ECONNREFUSED'].includes(e.code ?? '')) {
        reject(
          new ClauderonError('DAEMON_UNREACHABLE', `no clauderon daemon is answering on ${client.socket}`, {
            hint: 'start it with `clauderon daemon --enable-kubernetes-backend`',
          }),
        );
      } else reject(new ClauderonError('DAEMON_UNREACHABLE', `attach failed: ${e.message}`));
    });
    ws.on('close', (code, reason) => {
      cleanup();
      if (serverError) return reject(ClauderonError.fromBody(serverError));
      if (detached) {
        io.stderr.write(
          `\r\ndetached from ${name}; the agent keeps running. Reattach with: clauderon attach ${name}\n`,
        );
        return resolve(0);
      }
      if (exitCode !== undefined) return resolve(exitCode);
      if (code === 1001) return reject(new ClauderonError('DAEMON_UNREACHABLE', 'the daemon shut down'));
      reject(
        new ClauderonError(
          'INTERNAL',
          `the terminal closed unexpectedly (${code}${reason.length ? ` ${reason}` : ''})`,
        ),
      );
    });
  });
}
