import { ClauderonError } from '@clauderon/protocol';
import { type SimpleGit, simpleGit } from 'simple-git';

// Variables that would redirect or reconfigure git behind our back (a daemon started from inside a git hook
// inherits GIT_DIR, say), or that simple-git refuses to pass on. We always hand git a cleaned environment.
const DROP_ENV = /^(GIT_.*|EDITOR|VISUAL|PAGER|SSH_ASKPASS|PREFIX)$/i;

/** The process environment without variables that would change which repository git works on. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !DROP_ENV.test(k)) env[k] = v;
  }
  // Never stop to ask for credentials or an editor: the daemon has no terminal.
  env.GIT_TERMINAL_PROMPT = '0';
  return { ...env, ...extra };
}

export interface GitOptions {
  signal?: AbortSignal | undefined;
  env?: Record<string, string>;
  /** `-c key=value` settings for every command. */
  config?: string[];
}

/**
 * A simple-git instance for `dir` that rejects on every non-zero exit (simple-git resolves when git exits
 * non-zero without writing to stderr, e.g. `rev-parse --verify -q`), with a cleaned environment.
 */
export function git(dir: string, opts: GitOptions = {}): SimpleGit {
  const g = simpleGit({
    baseDir: dir,
    maxConcurrentProcesses: 4,
    trimmed: false,
    // simple-git strips or refuses GIT_* variables unless listed; these are the ones we set on purpose.
    allowEnvironment: ['GIT_TERMINAL_PROMPT', ...Object.keys(opts.env ?? {})],
    config: ['core.quotePath=true', ...(opts.config ?? [])],
    ...(opts.signal ? { abort: opts.signal } : {}),
    errors(error, result) {
      if (error) return error;
      if (result.exitCode !== 0) {
        const stderr = Buffer.concat(result.stdErr).toString('utf8').trim();
        return new Error(stderr || `git exited with code ${result.exitCode}`);
      }
      return undefined;
    },
  });
  g.env(cleanEnv(opts.env));
  return g;
}

/** Runs `git args` in `dir` and returns stdout; rejects on a non-zero exit. */
export async function run(dir: string, args: string[], opts: GitOptions = {}): Promise<string> {
  if (opts.signal?.aborted) throw cancelled();
  try {
    return await git(dir, opts).raw(args);
  } catch (e) {
    if (opts.signal?.aborted) throw cancelled(e);
    throw e;
  }
}

function cancelled(cause?: unknown): ClauderonError {
  return new ClauderonError('CANCELLED', 'the operation was cancelled', cause === undefined ? {} : { cause });
}

/** Rethrows `e` when it is a cancellation, so wrappers do not turn it into another error. */
export function rethrowCancel(e: unknown): void {
  if (e instanceof ClauderonError && e.code === 'CLAUDERON_E_CANCELLED') throw e;
}

/** Like `run` but resolves to null instead of rejecting (for probes such as `rev-parse --verify`). */
export async function tryRun(dir: string, args: string[], opts: GitOptions = {}): Promise<string | null> {
  try {
    return await run(dir, args, opts);
  } catch (e) {
    rethrowCancel(e);
    return null;
  }
}

/** Resolves a commit-ish to a full commit id, or null. */
export async function resolveCommit(dir: string, rev: string, opts: GitOptions = {}): Promise<string | null> {
  if (rev.startsWith('-')) return null;
  const out = await tryRun(
    dir,
    ['rev-parse', '--verify', '--quiet', '--end-of-options', `${rev}^{commit}`],
    opts,
  );
  const id = out?.trim();
  return id ? id : null;
}

/** Is commit `a` an ancestor of (or equal to) commit `b`? */
export async function isAncestor(dir: string, a: string, b: string, opts: GitOptions = {}): Promise<boolean> {
  return (await tryRun(dir, ['merge-base', '--is-ancestor', a, b], opts)) !== null;
}

/** The message of an error thrown by git, first line only where it is long. */
export function gitMessage(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.trim().replace(/^(fatal|error): /, '');
}
