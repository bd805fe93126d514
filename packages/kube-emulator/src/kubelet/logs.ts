/**
 * Container logs, stored like the CRI log format (one `<RFC3339Nano> <stream> <F|P> <bytes>` entry per line)
 * so that timestamps, sinceSeconds and tailLines can be answered later, and served as text/plain.
 */
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { LogRequest } from '../contract.js';

export interface LogEntry {
  time: string;
  stream: 'stdout' | 'stderr';
  partial: boolean;
  content: Buffer;
}

const NL = 0x0a;

/** RFC3339 with nanosecond digits, as kubectl prints them. */
function timestamp(): string {
  const d = new Date();
  const ns = String(process.hrtime.bigint() % 1_000_000n).padStart(6, '0');
  return d.toISOString().replace(/\.(\d{3})Z$/, (_m, ms: string) => `.${ms}${ns}Z`);
}

/** The log of one container instance (one run of a container, i.e. one restartCount). */
export class ContainerLog extends EventEmitter {
  private fd: number | undefined;
  ended = false;

  constructor(readonly file: string) {
    super();
    mkdirSync(dirname(file), { recursive: true });
    this.fd = openSync(file, 'a');
    this.setMaxListeners(0);
  }

  write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.fd === undefined) return;
    const time = timestamp();
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      const end = nl === -1 ? chunk.length : nl;
      const entry: LogEntry = { time, stream, partial: nl === -1, content: chunk.subarray(start, end) };
      writeSync(
        this.fd,
        Buffer.concat([
          Buffer.from(`${time} ${stream} ${entry.partial ? 'P' : 'F'} `),
          entry.content,
          Buffer.from('\n'),
        ]),
      );
      this.emit('entry', entry);
      start = end + 1;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (!this.ended) {
      this.ended = true;
      this.emit('end');
    }
  }
}

export function readEntries(file: string): LogEntry[] {
  if (!existsSync(file)) return [];
  const buf = readFileSync(file);
  const out: LogEntry[] = [];
  let start = 0;
  while (start < buf.length) {
    let nl = buf.indexOf(NL, start);
    if (nl === -1) nl = buf.length;
    const line = buf.subarray(start, nl);
    const s1 = line.indexOf(0x20);
    const s2 = line.indexOf(0x20, s1 + 1);
    const s3 = line.indexOf(0x20, s2 + 1);
    if (s1 > 0 && s2 > s1 && s3 > s2) {
      out.push({
        time: line.subarray(0, s1).toString(),
        stream: line.subarray(s1 + 1, s2).toString() === 'stderr' ? 'stderr' : 'stdout',
        partial: line.subarray(s2 + 1, s3).toString() === 'P',
        content: line.subarray(s3 + 1),
      });
    }
    start = nl + 1;
  }
  return out;
}

/** Writes a log as the kubelet serves it; follows `live` until it ends or the client goes. */
export function serveLog(
  req: IncomingMessage,
  res: ServerResponse,
  params: LogRequest,
  file: string,
  live: ContainerLog | undefined,
): void {
  let entries = readEntries(file);
  if (params.sinceSeconds !== undefined) {
    const cutoff = Date.now() - params.sinceSeconds * 1000;
    entries = entries.filter((e) => Date.parse(e.time) >= cutoff);
  }
  if (params.tailLines !== undefined) {
    // Count whole lines: a partial entry belongs to the line that the next full entry ends.
    let lines = 0;
    let i = entries.length;
    while (i > 0) {
      if (!(entries[i - 1] as LogEntry).partial) {
        if (lines === params.tailLines) break;
        lines++;
      }
      i--;
    }
    if (params.tailLines === 0) i = entries.length;
    entries = entries.slice(i);
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-cache' });
  let budget = params.limitBytes ?? Number.POSITIVE_INFINITY;
  let done = false;
  const emit = (e: LogEntry): void => {
    if (done) return;
    let data = e.partial ? e.content : Buffer.concat([e.content, Buffer.from('\n')]);
    if (params.timestamps) data = Buffer.concat([Buffer.from(`${e.time} `), data]);
    if (data.length >= budget) {
      res.write(data.subarray(0, budget));
      finish();
      return;
    }
    budget -= data.length;
    res.write(data);
  };
  const finish = (): void => {
    if (done) return;
    done = true;
    live?.off('entry', emit);
    live?.off('end', finish);
    res.end();
  };
  for (const e of entries) emit(e);
  if (!params.follow || !live || live.ended) {
    finish();
    return;
  }
  live.on('entry', emit);
  live.on('end', finish);
  req.on('close', finish);
  res.on('close', finish);
}
