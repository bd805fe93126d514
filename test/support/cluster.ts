import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Emulator, start } from '@clauderon/kube-emulator';
import { CLI, cliEnv, ROOT, type RunningDaemon, runCli, startDaemon, tempHome } from './cli.js';

const run = promisify(execFile);

/**
 * Session pods run as uid 1000 on the emulator, so the demo agent must live where that user can read it
 * (test temp dirs are 0700). Returns its path in a world-readable directory outside /tmp.
 */
export function installDemoAgent(): { path: string; cleanup: () => void } {
  // Not under /tmp: session pods mount an emptyDir there, which hides the host's /tmp from the agent.
  const dir = mkdtempSync('/var/tmp/clauderon-agent-');
  chmodSync(dir, 0o755);
  const path = join(dir, 'demo-agent.mjs');
  copyFileSync(join(ROOT, 'scripts/demo-agent.mjs'), path);
  chmodSync(path, 0o755);
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestCluster {
  emu: Emulator;
  home: string;
  daemon: RunningDaemon;
  env: Record<string, string>;
  kubectl(args: string[]): Promise<{ stdout: string; stderr: string }>;
  cli(args: string[], opts?: { input?: string; timeoutMs?: number }): ReturnType<typeof runCli>;
  /** Every object clauderon labelled, as "kind/name" (for "nothing left behind" checks). */
  labelled(): string[];
  stop(): Promise<void>;
}

/** The emulator as the cluster, a `clauderon` namespace, and a real daemon with the backend enabled. */
export async function startCluster(
  opts: {
    emulator?: Parameters<typeof start>[0] extends infer O ? Partial<O> : never;
    env?: Record<string, string>;
    configToml?: string;
  } = {},
): Promise<TestCluster> {
  const stateDir = mkdtempSync(join(tmpdir(), 'clauderon-emu-'));
  const emu = await start({ stateDir, timeScale: 0.1, ...opts.emulator });
  emu.store.create('namespaces', undefined, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'clauderon' },
  });
  const agent = installDemoAgent();
  const { home, cleanup } = tempHome();
  if (opts.configToml) writeFileSync(join(home, 'config.toml'), opts.configToml);
  mkdirSync(join(home, 'logs'), { recursive: true });
  const env: Record<string, string> = {
    KUBECONFIG: emu.kubeconfigPath,
    CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND: '1',
    CLAUDERON_PROXY_LISTEN: '127.0.0.1:0',
    CLAUDERON_AGENT_COMMAND: `node,${agent.path},{prompt}`,
    CLAUDERON_KUBERNETES_TIMEOUTS_POD_START: '60s',
    CLAUDERON_KUBERNETES_TIMEOUTS_IMAGE_PULL: '30s',
    ...opts.env,
  };
  let daemon: RunningDaemon;
  try {
    daemon = await startDaemon({ home, env });
  } catch (e) {
    // Never leave the emulator (and its pods) running when the daemon could not start.
    await emu.stop();
    cleanup();
    agent.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
    throw e;
  }
  const kubeEnv = {
    ...process.env,
    KUBECONFIG: emu.kubeconfigPath,
    KUBECACHEDIR: join(stateDir, 'kubecache'),
  };
  const cluster: TestCluster = {
    emu,
    home,
    daemon,
    env,
    kubectl: (args) => run('kubectl', args, { env: kubeEnv }),
    cli: (args, o = {}) => runCli(args, { home, env, ...o }),
    labelled: () => {
      const out: string[] = [];
      for (const r of ['pods', 'persistentvolumeclaims', 'configmaps', 'secrets'] as const) {
        for (const o of emu.store.list(r)) {
          if (o.metadata.labels?.['app.kubernetes.io/managed-by'] === 'clauderon')
            out.push(`${r}/${o.metadata.name}`);
        }
      }
      return out;
    },
    stop: async () => {
      // The daemon may have been replaced by a test (restart cases): stop the current one.
      await cluster.daemon.stop();
      await emu.stop();
      cleanup();
      agent.cleanup();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** A git repository with history, a local-only commit, staged/unstaged edits and an untracked file. */
export async function makeRepo(): Promise<{ dir: string; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'clauderon-repo-'));
  const git = (...args: string[]) =>
    run('git', args, {
      cwd: dir,
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@t',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@t',
      },
    });
  await git('init', '-q', '-b', 'main');
  writeFileSync(join(dir, 'README.md'), '# demo\n');
  writeFileSync(join(dir, 'app.js'), 'console.log("v1");\n');
  writeFileSync(join(dir, '.gitignore'), 'secret.env\n');
  await git('add', '-A');
  await git('commit', '-q', '-m', 'first');
  writeFileSync(join(dir, 'app.js'), 'console.log("v2");\n');
  await git('commit', '-q', '-am', 'local only');
  writeFileSync(join(dir, 'app.js'), 'console.log("v3 uncommitted");\n');
  writeFileSync(join(dir, 'README.md'), '# demo\nstaged\n');
  await git('add', 'README.md');
  writeFileSync(join(dir, 'notes.txt'), 'untracked\n');
  writeFileSync(join(dir, 'secret.env'), 'IGNORED=1\n');
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A `clauderon create` running in the background, for tests that interrupt it part-way. */
export interface BackgroundCreate {
  child: ChildProcess;
  stderr: () => string;
  /** Resolves once the progress output matches `re` (fails after 60 s). */
  reached(re: RegExp): Promise<void>;
  exited: Promise<number | null>;
}

export function createInBackground(c: TestCluster, args: string[]): BackgroundCreate {
  const child = spawn(process.execPath, [CLI, 'create', ...args], {
    env: cliEnv(c.home, c.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => child.on('close', r));
  return {
    child,
    stderr: () => err,
    exited,
    async reached(re) {
      const deadline = Date.now() + 60_000;
      while (!re.test(err)) {
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`create never reached ${re}:\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
