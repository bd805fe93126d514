import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import {
  clauderonPaths,
  effectiveConfigJson,
  loadConfig,
  renderEffectiveConfig,
  resolveHome,
} from '@clauderon/config';
import type { CreateSessionRequest, Session } from '@clauderon/protocol';
import { ClauderonError, VERSION, validateQuantity, validateSessionName } from '@clauderon/protocol/core';
import { Command, CommanderError, Option } from 'commander';
import { DaemonClient } from './client.js';
import { type Io, ProgressRenderer, paint, sessionDetails, sessionsTable, terminalSafe } from './output.js';

export interface MainOptions {
  io?: Io;
  stdin?: NodeJS.ReadStream;
}

/** Shape of the daemon package's entry, loaded at run time so the CLI never links against the daemon. */
interface DaemonEntry {
  runDaemon(opts: { env: NodeJS.ProcessEnv; flags?: Record<string, unknown> }): Promise<number>;
}

/** Largest prompt the CLI sends (the agent argument limit in the pod is lower and checked there). */
const PROMPT_MAX = 1_000_000;

const BACKENDS: Record<string, CreateSessionRequest['backend']> = {
  kubernetes: 'kubernetes',
  k8s: 'kubernetes',
};

function json(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function wantsJson(o: { output?: string; json?: boolean }): boolean {
  if (o.output !== undefined && o.output !== 'json' && o.output !== 'table' && o.output !== 'wide') {
    throw new ClauderonError('USAGE', `unknown output format "${o.output}"`, { hint: 'use -o json' });
  }
  return o.json === true || o.output === 'json';
}

/** Runs the CLI; resolves to the exit code. This is the one error boundary. */
export async function main(argv: string[], opts: MainOptions = {}): Promise<number> {
  const io: Io = opts.io ?? { stdout: process.stdout, stderr: process.stderr, env: process.env };
  const stdin = opts.stdin ?? process.stdin;
  const env = io.env;
  const paths = () => clauderonPaths(resolveHome(env));
  const client = () => new DaemonClient(paths().socket);
  const interrupt = new AbortController();
  const onSigint = () => interrupt.abort();
  process.once('SIGINT', onSigint);
  let exitCode = 0;

  const program = new Command('clauderon')
    .description('Run AI coding-agent sessions in isolated Kubernetes pods.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  program
    .command('daemon')
    .description('Run the clauderon daemon in the foreground (listens on $CLAUDERON_HOME/clauderon.sock)')
    .option('--enable-kubernetes-backend', 'enable the experimental Kubernetes backend')
    .addHelpText(
      'after',
      '\nExamples:\n  clauderon daemon --enable-kubernetes-backend\n  CLAUDERON_HOME=/tmp/c2 clauderon daemon',
    )
    .action(async (o: { enableKubernetesBackend?: boolean }) => {
      const spec = '@clauderon/daemon';
      const daemon = (await import(spec)) as DaemonEntry;
      process.off('SIGINT', onSigint);
      exitCode = await daemon.runDaemon({
        env,
        ...(o.enableKubernetesBackend ? { flags: { 'features.kubernetes_backend': true } } : {}),
      });
    });

  program
    .command('create')
    .description(
      'Create a session: a worktree of your repository synced into a pod, with the agent started on your prompt',
    )
    .requiredOption('--repo <path>', 'git repository to work on')
    .option('--prompt <text>', 'the task for the agent')
    .option('--prompt-file <file>', 'read the prompt from a file ("-" for standard input)')
    .addOption(
      new Option('--backend <backend>', 'where the session runs: kubernetes (alias k8s)').default(
        'kubernetes',
      ),
    )
    .option(
      '--name <name>',
      'session name (lower-case letters, digits, "-"; at most 40); derived from the repo if omitted',
    )
    .option('--base <ref>', 'start the session branch from this ref instead of HEAD')
    .option('--image <image>', 'agent image')
    .addOption(
      new Option('--pull-policy <policy>', 'image pull policy').choices(['Always', 'IfNotPresent', 'Never']),
    )
    .option('--cpu-limit <q>', 'CPU limit (Kubernetes quantity, e.g. 4 or 500m)')
    .option('--memory-limit <q>', 'memory limit (e.g. 8Gi)')
    .option('--cpu-request <q>', 'CPU request')
    .option('--memory-request <q>', 'memory request')
    .option('--storage-class <name>', 'StorageClass of the workspace claim')
    .option('--storage-size <q>', 'size of the workspace claim (e.g. 20Gi)')
    .option('--namespace <ns>', 'namespace to create the session in')
    .option(
      '--no-uncommitted',
      "start clean: leave the repository's uncommitted and untracked changes behind",
    )
    .option('--no-attach', 'print the session and return instead of attaching')
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .addHelpText(
      'after',
      '\nExamples:\n  clauderon create --repo ~/project --prompt "fix the flaky login test"\n' +
        '  clauderon create --backend k8s --repo . --prompt-file task.md --cpu-limit 4 --memory-limit 8Gi --no-attach',
    )
    .action(async (o: Record<string, string | boolean | undefined>) => {
      const req = await buildCreateRequest(o, stdin);
      const asJson = wantsJson(o as { output?: string; json?: boolean });
      const progress = new ProgressRenderer(io);
      const c = client();
      const events = c.stream('POST', '/sessions', req, interrupt.signal);
      let session: Session | undefined;
      try {
        for (;;) {
          const n = await events.next();
          if (n.done) {
            if (n.value.type === 'result') session = n.value.session;
            break;
          }
          progress.event(n.value);
        }
      } finally {
        progress.done();
      }
      if (!session) throw new ClauderonError('INTERNAL', 'create finished without a session');
      if (asJson) json(io, session);
      else io.stdout.write(`${session.name}\n`);
      if (o.attach !== false && !asJson && (stdin as { isTTY?: boolean }).isTTY) {
        exitCode = await attach(session.name, undefined);
      } else if (!asJson) {
        io.stderr.write(`${paint(io, '2', `attach with: clauderon attach ${session.name}`)}\n`);
      }
    });

  const attach = async (name: string, detachKeys: string | undefined) => {
    validateSessionName(name);
    const keys = detachKeys ?? loadConfig({ env }).config.attach.detach_keys;
    // Loaded on demand: the WebSocket library is most of the CLI's start-up cost and only attach needs it.
    const { attachTerminal } = await import('./attach.js');
    return attachTerminal({ client: client(), name, io, stdin, detachKeys: keys });
  };

  program
    .command('attach <name>')
    .description("Attach your terminal to a session's agent (detach with Ctrl-P Ctrl-Q)")
    .option('--detach-keys <keys>', 'detach key sequence, e.g. ctrl-p,ctrl-q')
    .addHelpText(
      'after',
      '\nExamples:\n  clauderon attach fix-login\n  clauderon attach fix-login --detach-keys ctrl-a,d',
    )
    .action(async (name: string, o: { detachKeys?: string }) => {
      exitCode = await attach(name, o.detachKeys);
    });

  program
    .command('delete <names...>')
    .alias('rm')
    .description('Delete sessions: pod, workspace claim, config maps, secrets and the local worktree')
    .option('--force', 'delete even when the session has commits that were never pulled back')
    .addHelpText('after', '\nExamples:\n  clauderon delete fix-login\n  clauderon rm a b c --force')
    .action(async (names: string[], o: { force?: boolean }) => {
      for (const n of names) validateSessionName(n);
      const progress = new ProgressRenderer(io);
      for (const name of names) {
        const events = client().stream(
          'DELETE',
          `/sessions/${name}${o.force ? '?force=1' : ''}`,
          undefined,
          interrupt.signal,
        );
        for (;;) {
          const n = await events.next();
          if (n.done) break;
          progress.event(n.value);
        }
        progress.done();
        io.stdout.write(`${name}\n`);
      }
    });

  program
    .command('list')
    .alias('ls')
    .description('List sessions (from the cluster)')
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .addHelpText('after', "\nExamples:\n  clauderon ls\n  clauderon list -o json | jq -r '.sessions[].name'")
    .action(async (o: { output?: string; json?: boolean }) => {
      const asJson = wantsJson(o);
      const sessions = await client().list(interrupt.signal);
      if (asJson) json(io, { sessions });
      else if (sessions.length === 0)
        io.stderr.write('No sessions. Create one with: clauderon create --repo . --prompt "…"\n');
      else io.stdout.write(sessionsTable(sessions));
    });

  program
    .command('status <name>')
    .description('Show one session')
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .addHelpText('after', '\nExamples:\n  clauderon status fix-login\n  clauderon status fix-login -o json')
    .action(async (name: string, o: { output?: string; json?: boolean }) => {
      validateSessionName(name);
      const asJson = wantsJson(o);
      const s = await client().get(name, interrupt.signal);
      if (asJson) json(io, s);
      else io.stdout.write(sessionDetails(s));
    });

  program
    .command('logs <name>')
    .description("Print the agent container's log")
    .option('-f, --follow', 'keep streaming new output')
    .option('--tail <n>', 'only the last N lines')
    .addHelpText('after', '\nExamples:\n  clauderon logs fix-login --tail 100\n  clauderon logs fix-login -f')
    .action(async (name: string, o: { follow?: boolean; tail?: string }) => {
      validateSessionName(name);
      if (o.tail !== undefined && !/^\d+$/.test(o.tail))
        throw new ClauderonError('USAGE', `--tail must be a whole number, got "${o.tail}"`);
      const q = new URLSearchParams();
      if (o.follow) q.set('follow', '1');
      if (o.tail !== undefined) q.set('tail', o.tail);
      const s = await client().text(`/sessions/${name}/logs?${q}`, interrupt.signal);
      try {
        for await (const chunk of s) io.stdout.write(chunk as Buffer);
      } catch (e) {
        if (!interrupt.signal.aborted) throw e;
      }
    });

  program
    .command('pull <name>')
    .description("Bring the session branch's commits back into your local repository")
    .option('--uncommitted', "also apply the pod's uncommitted changes to the local worktree")
    .option('--force', 'allow a non-fast-forward update of the local session branch')
    .addHelpText(
      'after',
      '\nExamples:\n  clauderon pull fix-login\n  clauderon pull fix-login --uncommitted\n  git log clauderon/fix-login',
    )
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .action(
      async (
        name: string,
        o: { uncommitted?: boolean; force?: boolean; output?: string; json?: boolean },
      ) => {
        validateSessionName(name);
        const progress = new ProgressRenderer(io);
        const events = client().stream(
          'POST',
          `/sessions/${name}/pull`,
          { uncommitted: o.uncommitted === true, force: o.force === true },
          interrupt.signal,
        );
        for (;;) {
          const n = await events.next();
          if (n.done) {
            progress.done();
            if (n.value.type === 'done') {
              if (wantsJson(o)) json(io, n.value.data);
              else io.stdout.write(`${n.value.message}\n`);
            }
            break;
          }
          progress.event(n.value);
        }
      },
    );

  program
    .command('gc')
    .description(
      'Find (and with confirmation remove) cluster objects and worktrees that belong to no session',
    )
    .option('-y, --yes', 'remove without asking')
    .addHelpText('after', '\nExamples:\n  clauderon gc\n  clauderon gc --yes')
    .action(async (o: { yes?: boolean }) => {
      const c = client();
      const found = await c.gc(false, interrupt.signal);
      if (found.orphans.length === 0) {
        io.stderr.write('Nothing to clean up.\n');
        return;
      }
      io.stdout.write(`${found.orphans.join('\n')}\n`);
      let yes = o.yes === true;
      if (!yes && (stdin as { isTTY?: boolean }).isTTY) {
        const rl = createInterface({ input: stdin, output: io.stderr });
        yes = /^y(es)?$/i.test(
          (await rl.question(`Remove these ${found.orphans.length} objects? [y/N] `)).trim(),
        );
        rl.close();
      }
      if (!yes) {
        io.stderr.write('Left in place. Run `clauderon gc --yes` to remove them.\n');
        return;
      }
      const done = await c.gc(true, interrupt.signal);
      io.stderr.write(`Removed ${done.removed.length} objects.\n`);
    });

  const proxy = program.command('proxy').description('The credential proxy');
  proxy
    .command('ca')
    .description(
      "Print the proxy's CA certificate (what session pods trust; the key never leaves this machine)",
    )
    .action(async () => {
      io.stdout.write(await client().proxyCa(interrupt.signal));
    });

  program
    .command('doctor [session]')
    .description(
      'Check the set-up: kubeconfig, cluster permissions, the proxy, and (with a session) that its pod reaches the proxy and trusts its CA',
    )
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .action(async (session: string | undefined, o: { output?: string; json?: boolean }) => {
      if (session !== undefined) validateSessionName(session);
      const health = await client().health(interrupt.signal);
      const checks = [
        {
          name: 'daemon',
          ok: true,
          detail: `clauderon ${health.version} (pid ${health.pid}) on ${paths().socket}`,
        },
        ...(await client().doctor(session, interrupt.signal)),
      ];
      if (wantsJson(o)) json(io, { checks });
      else {
        for (const c of checks) {
          io.stdout.write(
            `${c.ok ? paint(io, '32', '✓', 'stdout') : paint(io, '31', '✗', 'stdout')} ${c.name}: ${c.detail}\n`,
          );
          if (!c.ok && 'hint' in c && c.hint) io.stdout.write(`  hint: ${c.hint}\n`);
        }
      }
      const failed = checks.filter((c) => !c.ok);
      if (failed.length > 0) {
        throw new ClauderonError(
          'CHECKS_FAILED',
          `${failed.length} check(s) failed: ${failed.map((c) => c.name).join(', ')}`,
        );
      }
    });

  const config = program.command('config').description('Show the configuration');
  config
    .command('show')
    .description('Print the effective configuration and where each value came from')
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .option('--enable-kubernetes-backend', 'show the values as the daemon would see them with this flag')
    .action((o: { output?: string; json?: boolean; enableKubernetesBackend?: boolean }) => {
      const loaded = loadConfig({
        env,
        ...(o.enableKubernetesBackend ? { flags: { 'features.kubernetes_backend': true } } : {}),
      });
      if (wantsJson(o)) json(io, effectiveConfigJson(loaded));
      else {
        io.stderr.write(
          `# ${loaded.paths.configFile}${loaded.fileFound ? '' : ' (not found; defaults apply)'}\n`,
        );
        io.stdout.write(renderEffectiveConfig(loaded));
      }
    });
  config
    .command('paths')
    .description('Print the files and socket clauderon uses')
    .option('-o, --output <format>', 'output format: json')
    .option('--json', 'same as -o json')
    .action((o: { output?: string; json?: boolean }) => {
      const p = paths();
      if (wantsJson(o)) json(io, p);
      else
        io.stdout.write(
          `${Object.entries(p)
            .map(([k, v]) => `${k.padEnd(10)} ${v}`)
            .join('\n')}\n`,
        );
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return 0;
      return 2;
    }
    return reportError(io, e);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function reportError(io: Io, e: unknown): number {
  // Messages carry paths, names and pod output: escape control characters so none reaches the terminal raw.
  if (e instanceof ClauderonError) {
    io.stderr.write(`${paint(io, '31', 'error:')} ${terminalSafe(e.message)}\n`);
    if (e.hint) io.stderr.write(`${paint(io, '33', 'hint:')} ${terminalSafe(e.hint)}\n`);
    if (process.env.CLAUDERON_DEBUG) io.stderr.write(`(${e.code})\n`);
    return e.exitCode;
  }
  // A bug, not a user error: one line, and the stack only when asked for.
  const message = e instanceof Error ? e.message : String(e);
  io.stderr.write(`${paint(io, '31', 'error:')} internal error: ${terminalSafe(message)}\n`);
  if (process.env.CLAUDERON_DEBUG && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
  return 1;
}

/**
 * A stream as UTF-8 text. It is read to the end (the writer of a pipe must not see EPIPE) but only the
 * first bytes past the prompt limit are kept: that is enough to refuse it.
 */
async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let kept = 0;
  for await (const c of stream) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    if (kept <= PROMPT_MAX) {
      chunks.push(b);
      kept += b.length;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function buildCreateRequest(
  o: Record<string, string | boolean | undefined>,
  stdin: NodeJS.ReadStream,
): Promise<CreateSessionRequest> {
  const backend = BACKENDS[String(o.backend)];
  if (!backend) {
    throw new ClauderonError('UNKNOWN_BACKEND', `unknown backend "${o.backend}"`, {
      hint: 'use --backend kubernetes (or k8s)',
    });
  }
  if (o.prompt !== undefined && o.promptFile !== undefined)
    throw new ClauderonError('USAGE', 'give --prompt or --prompt-file, not both');
  let prompt: string;
  if (typeof o.promptFile === 'string') {
    try {
      // Standard input is read as a stream: a pipe is non-blocking once Node has opened it, and a
      // synchronous read of it fails with EAGAIN (`cat task.md | clauderon create --prompt-file -`).
      prompt = o.promptFile === '-' ? await readStream(stdin) : readFileSync(o.promptFile, 'utf8');
    } catch (e) {
      throw new ClauderonError('USAGE', `cannot read --prompt-file ${o.promptFile}: ${(e as Error).message}`);
    }
  } else if (typeof o.prompt === 'string') {
    prompt = o.prompt;
  } else {
    throw new ClauderonError('USAGE', 'a prompt is required', {
      hint: 'pass --prompt "…" or --prompt-file FILE',
    });
  }
  if (prompt.trim() === '') throw new ClauderonError('USAGE', 'the prompt is empty');
  if (Buffer.byteLength(prompt) > PROMPT_MAX) {
    throw new ClauderonError(
      'USAGE',
      `the prompt is ${Buffer.byteLength(prompt)} bytes; the limit is 1000000`,
      {
        hint: 'put large context into a file in the repository and refer to it in the prompt',
      },
    );
  }
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(prompt) || prompt.includes('\ufffd')) {
    throw new ClauderonError('USAGE', 'the prompt contains control characters or is not valid UTF-8', {
      hint: 'remove terminal escape codes and binary data from the prompt',
    });
  }
  const repo = resolve(String(o.repo).replace(/^~(?=$|\/)/, process.env.HOME ?? '~'));
  try {
    if (!statSync(repo).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new ClauderonError('REPO_INVALID', `repository ${repo} does not exist or is not a directory`, {
      hint: 'pass --repo PATH of a git repository',
    });
  }
  const req: CreateSessionRequest = { backend, repo, prompt, includeUncommitted: o.uncommitted !== false };
  if (typeof o.name === 'string') req.name = validateSessionName(o.name);
  if (typeof o.base === 'string') req.base = o.base;
  if (typeof o.image === 'string') {
    if (o.image.trim() === '' || /\s/.test(o.image))
      throw new ClauderonError('USAGE', `invalid --image "${o.image}"`);
    req.image = o.image;
  }
  if (typeof o.pullPolicy === 'string')
    req.pullPolicy = o.pullPolicy as NonNullable<CreateSessionRequest['pullPolicy']>;
  if (typeof o.namespace === 'string') {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(o.namespace) || o.namespace.length > 63) {
      throw new ClauderonError('INVALID_NAME', `invalid --namespace "${o.namespace}"`, {
        hint: 'namespaces are lower-case DNS labels',
      });
    }
    req.namespace = o.namespace;
  }
  if (typeof o.storageClass === 'string') req.storageClass = o.storageClass;
  if (typeof o.storageSize === 'string')
    req.storageSize = validateQuantity(o.storageSize, 'storage', '--storage-size');
  const resources: NonNullable<CreateSessionRequest['resources']> = {};
  if (typeof o.cpuLimit === 'string') resources.cpuLimit = validateQuantity(o.cpuLimit, 'cpu', '--cpu-limit');
  if (typeof o.memoryLimit === 'string')
    resources.memoryLimit = validateQuantity(o.memoryLimit, 'memory', '--memory-limit');
  if (typeof o.cpuRequest === 'string')
    resources.cpuRequest = validateQuantity(o.cpuRequest, 'cpu', '--cpu-request');
  if (typeof o.memoryRequest === 'string')
    resources.memoryRequest = validateQuantity(o.memoryRequest, 'memory', '--memory-request');
  if (Object.keys(resources).length > 0) req.resources = resources;
  return req;
}
