import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Emulator } from '@clauderon/kube-emulator';
import { CLI, type CliResult, cliEnv } from './cli.js';

const run = promisify(execFile);

/** Session worktrees under a CLAUDERON_HOME. */
export function worktrees(home: string): string[] {
  const dir = join(home, 'worktrees');
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** `clauderon/*` branches of a repository, one per line ('' when none). */
export async function sessionBranches(repo: string): Promise<string> {
  return (await run('git', ['-C', repo, 'branch', '--list', 'clauderon/*'])).stdout.trim();
}

/** Every object clauderon labelled in this emulator, as "resource/name". */
export function labelledIn(emu: Emulator): string[] {
  const out: string[] = [];
  for (const r of ['pods', 'persistentvolumeclaims', 'configmaps', 'secrets'] as const) {
    for (const o of emu.store.list(r)) {
      if (o.metadata.labels?.['app.kubernetes.io/managed-by'] === 'clauderon')
        out.push(`${r}/${o.metadata.name}`);
    }
  }
  return out;
}

/** git in `cwd` with a fixed identity. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await run('git', args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@t',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@t',
    },
  });
  return r.stdout.trim();
}

/**
 * Asserts the CLI failed the way the README promises: one `error:` line naming the problem, no stack trace,
 * no "[object Object]", no "internal error", and (CLAUDERON_DEBUG=1) the error code when one is given.
 */
export function assertClearError(
  r: CliResult,
  want: { exit: number; code?: string; match?: RegExp; hint?: RegExp },
): void {
  const all = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.code, want.exit, `exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^error: \S/m, 'an error line');
  assert.doesNotMatch(all, /\n\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
  assert.doesNotMatch(all, /\[object Object\]|internal error|undefined/, 'no internal leak');
  if (want.code) assert.match(r.stderr, new RegExp(`\\(${want.code}\\)`), 'error code');
  if (want.match) assert.match(r.stderr, want.match);
  if (want.hint) assert.match(r.stderr, new RegExp(`^hint: .*${want.hint.source}`, 'm'));
}

/**
 * Runs the CLI with extra raw (possibly non-UTF-8) bytes as the last argument, which a JS string cannot
 * carry: a shell builds that argument with printf.
 */
export function runCliRawArg(
  args: string[],
  printfArg: string,
  opts: { home: string; env?: Record<string, string> },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      '/bin/sh',
      ['-c', `exec "$@" "$(printf '${printfArg}')"`, 'sh', process.execPath, CLI, ...args],
      { env: cliEnv(opts.home, opts.env), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export interface ApiResult {
  status: number;
  text: string;
  /** The JSON body, or for an NDJSON stream its last event. */
  json: Record<string, unknown> | undefined;
}

/** One request straight to the daemon socket. `body` strings are sent as they are. */
export function api(
  socketPath: string,
  method: string,
  path: string,
  opts: { body?: string | Buffer; headers?: Record<string, string | number> } = {},
): Promise<ApiResult> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ socketPath, method, path, headers: opts.headers ?? {} }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const lines = text.split('\n').filter((l) => l.trim() !== '');
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(lines.at(-1) ?? '') as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
    });
    // A server may answer (413, say) and close before reading all of a big body: that EPIPE is no failure.
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    req.end(opts.body);
  });
}

/** The error body of an API answer: the plain body, or the `error` event that ends a stream. */
export function apiError(r: ApiResult): { code?: string; message?: string; hint?: string } {
  const j = r.json ?? {};
  if (j.type === 'error') return j.error as { code?: string; message?: string };
  return j as { code?: string; message?: string };
}

export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 50,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * A request written on a raw socket, for bodies the server refuses before reading them (413): the write
 * may fail with EPIPE while the answer is already there. Resolves to the status and the body of the answer.
 */
export function rawApi(socketPath: string, head: string, body: Buffer): Promise<ApiResult> {
  return new Promise((resolve) => {
    const s = connect({ path: socketPath });
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0);
      const payload = text.slice(text.indexOf('\r\n\r\n') + 4);
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(payload) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      resolve({ status, text: payload, json });
    });
    s.write(head);
    s.end(body);
  });
}
