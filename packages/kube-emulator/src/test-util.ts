import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Emulator, type StartOptions, start } from './index.js';

/** Starts an emulator on a fresh state directory; `cleanup` stops it and removes the directory. */
export async function startTestEmulator(
  opts: Partial<StartOptions> = {},
): Promise<{ emu: Emulator; dir: string; cleanup: () => Promise<void> }> {
  const dir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'kube-emu-test-'));
  const emu = await start({ ...opts, stateDir: dir });
  return {
    emu,
    dir,
    cleanup: async () => {
      await emu.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A plain HTTPS request to the emulator that trusts its CA. */
export function raw(
  emu: Emulator,
  method: string,
  path: string,
  opts: { token?: string | null; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const url = new URL(path, emu.url);
  const headers: Record<string, string> = { accept: 'application/json', ...(opts.headers ?? {}) };
  const token = opts.token === undefined ? emu.token : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (opts.body !== undefined) {
    payload = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  return new Promise((ok, fail) => {
    const req = request(url, { method, headers, ca: emu.caPem, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        ok({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', fail);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', fail);
    req.end(payload);
  });
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real kubectl against the emulator with a private discovery cache. */
export function kubectl(
  emu: Emulator,
  cacheDir: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<KubectlResult> {
  return new Promise((ok) => {
    execFile(
      'kubectl',
      args,
      {
        env: {
          KUBECONFIG: emu.kubeconfigPath,
          KUBECACHEDIR: cacheDir,
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: cacheDir,
        },
        timeout: timeoutMs,
      },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        ok({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Polls `fn` until it returns a truthy value. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 15_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
