/** Test harness: a FakeStore, a kubelet on a temp state dir, and a tiny HTTP front that routes exec/attach/log. */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { KObject, Kubelet } from '../../contract.js';
import { startKubelet } from '../index.js';
import { FakeStore } from './fake-store.js';

export interface Harness {
  store: FakeStore;
  kubelet: Kubelet;
  stateDir: string;
  base: string;
  close(): Promise<void>;
}

export async function startHarness(
  opts: { timeScale?: number; failImagePattern?: RegExp } = {},
): Promise<Harness> {
  const store = new FakeStore();
  const stateDir = mkdtempSync(join(tmpdir(), 'kubelet-test-'));
  const kubelet = startKubelet({
    store,
    stateDir,
    timeScale: opts.timeScale ?? 0.001,
    failImagePattern: opts.failImagePattern,
  });
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/log$/.exec(u.pathname);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const q = u.searchParams;
    const n = (k: string): number | undefined => (q.has(k) ? Number(q.get(k)) : undefined);
    kubelet.handleLog(req, res, {
      namespace: m[1] as string,
      pod: m[2] as string,
      container: q.get('container') ?? 'main',
      follow: q.get('follow') === 'true',
      previous: q.get('previous') === 'true',
      timestamps: q.get('timestamps') === 'true',
      tailLines: n('tailLines'),
      limitBytes: n('limitBytes'),
      sinceSeconds: n('sinceSeconds'),
    });
  });
  server.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach)$/.exec(u.pathname);
    if (!m) {
      socket.destroy();
      return;
    }
    const q = u.searchParams;
    const b = (k: string): boolean => q.get(k) === 'true' || q.get(k) === '1';
    kubelet.handleStream(m[3] as 'exec' | 'attach', req, socket, head, {
      namespace: m[1] as string,
      pod: m[2] as string,
      container: q.get('container') ?? 'main',
      command: q.getAll('command'),
      stdin: b('stdin'),
      stdout: b('stdout'),
      stderr: b('stderr'),
      tty: b('tty'),
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    store,
    kubelet,
    stateDir,
    base,
    async close() {
      await kubelet.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: tests read deep status fields without ceremony.
export type Loose = Record<string, any>;

export function loose(v: unknown): Loose {
  return (v ?? {}) as Loose;
}

export function pod(name: string, spec: Record<string, unknown>, ns = 'default'): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: { restartPolicy: 'Always', ...spec },
    status: { phase: 'Pending' },
  };
}

export function phaseOf(o: KObject | undefined): string | undefined {
  return (o?.status as { phase?: string } | undefined)?.phase;
}

export function containerState(o: KObject | undefined, name = 'main', init = false): Loose | undefined {
  const list = ((o?.status as Record<string, unknown> | undefined)?.[
    init ? 'initContainerStatuses' : 'containerStatuses'
  ] ?? []) as Array<Loose>;
  return list.find((c) => c.name === name);
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  status: Record<string, unknown> | undefined;
  closeCode: number;
  protocol: string;
  frames: number[];
}

/** Runs an exec over a raw WebSocket; `input` is sent on stdin followed by the v5 close signal. */
export function rawExec(
  base: string,
  podName: string,
  command: string[],
  opts: {
    input?: Buffer;
    tty?: boolean;
    stderr?: boolean;
    protocols?: string[];
    kind?: 'exec' | 'attach';
    container?: string;
    onOpen?: (ws: WebSocket) => void;
  } = {},
): Promise<ExecResult> {
  const q = new URLSearchParams();
  for (const c of command) q.append('command', c);
  q.set('container', opts.container ?? 'main');
  q.set('stdout', 'true');
  q.set('stderr', String(opts.stderr ?? !opts.tty));
  q.set('stdin', String(opts.input !== undefined));
  q.set('tty', String(opts.tty ?? false));
  const ws = new WebSocket(
    `ws://${base}/api/v1/namespaces/default/pods/${podName}/${opts.kind ?? 'exec'}?${q}`,
    opts.protocols ?? ['v5.channel.k8s.io', 'v4.channel.k8s.io'],
  );
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const frames: number[] = [];
  let status: Record<string, unknown> | undefined;
  return new Promise((resolve, reject) => {
    ws.on('open', () => {
      opts.onOpen?.(ws);
      if (opts.input !== undefined) {
        ws.send(Buffer.concat([Buffer.from([0]), opts.input]));
        if (ws.protocol === 'v5.channel.k8s.io') ws.send(Buffer.from([255, 0]));
      }
    });
    ws.on('message', (d: Buffer) => {
      frames.push(d[0] as number);
      if (d[0] === 1) out.push(d.subarray(1));
      else if (d[0] === 2) err.push(d.subarray(1));
      else if (d[0] === 3) status = JSON.parse(d.subarray(1).toString());
    });
    ws.on('error', reject);
    ws.on('close', (code) =>
      resolve({
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        status,
        closeCode: code,
        protocol: ws.protocol,
        frames,
      }),
    );
  });
}
