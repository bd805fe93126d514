// Helpers for this package's tests: real git repositories in temporary directories.
import { execFileSync, spawn } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { cleanEnv } from './git.js';

const dirs: string[] = [];

/** A temporary directory removed by `cleanupTemp`. */
export function tempDir(prefix = 'ws-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function cleanupTemp(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

const home = mkdtempSync(join(tmpdir(), 'ws-test-home-'));
dirs.push(home);
const gitEnv = cleanEnv({
  HOME: home,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
});

/** Runs git synchronously and returns stdout. */
export function g(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function write(root: string, rel: string, content: string | Buffer, mode?: number): void {
  const p = join(root, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, content, mode === undefined ? {} : { mode });
}

/** A repository with a few commits on main and no remote. */
export function makeRepo(): string {
  const dir = join(tempDir('ws-repo-'), 'myrepo');
  mkdirSync(dir);
  g(dir, 'init', '-q', '-b', 'main');
  write(dir, 'README.md', '# hello\n');
  write(dir, 'src/app.js', 'console.log(1);\n');
  write(dir, 'src/old.txt', 'to be deleted\n');
  write(dir, 'run.sh', '#!/bin/sh\necho hi\n', 0o644);
  write(dir, '.gitignore', 'secret.env\nbuild/\n');
  g(dir, 'add', '-A');
  g(dir, 'commit', '-q', '-m', 'initial');
  write(dir, 'src/app.js', 'console.log(2);\n');
  g(dir, 'commit', '-q', '-am', 'local commit not on any remote');
  return dir;
}

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `sh -c script` in `cwd`, feeding `input` on stdin. */
export function runScript(script: string, input: Readable | Buffer | null, cwd?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { cwd: cwd ?? tmpdir(), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {}); // the script may stop reading early
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
    if (input === null) child.stdin.end();
    else if (Buffer.isBuffer(input)) child.stdin.end(input);
    else input.pipe(child.stdin);
  });
}

/** Runs `sh -c script` and returns raw stdout bytes. */
export function runScriptRaw(
  script: string,
  cwd: string,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}

/** Every non-ignored file of a working tree: content (base64) or symlink target, and mode. */
export function treeState(root: string): Record<string, string> {
  const list = g(root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard')
    .split('\0')
    .filter(Boolean);
  const state: Record<string, string> = {};
  for (const rel of [...new Set(list)].sort()) {
    const p = join(root, rel);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      continue; // deleted in the working tree
    }
    if (st.isSymbolicLink()) state[rel] = `link:${readlinkSync(p)}`;
    else if (st.isFile()) state[rel] = `${st.mode & 0o100 ? 'x' : '-'}:${readFileSync(p).toString('base64')}`;
    else if (st.isDirectory()) state[rel] = 'dir';
  }
  return state;
}

/** What a user compares: history, status, diffs and files. */
export function repoView(root: string): Record<string, unknown> {
  return {
    log: g(root, 'log', '--format=%H %s'),
    branch: g(root, 'symbolic-ref', '--short', 'HEAD').trim(),
    status: g(root, 'status', '--porcelain=v1', '--untracked-files=all'),
    diff: g(root, 'diff', '--binary'),
    cached: g(root, 'diff', '--cached', '--binary'),
    files: treeState(root),
  };
}

export function listDir(dir: string): string[] {
  return readdirSync(dir);
}
