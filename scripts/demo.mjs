#!/usr/bin/env node
// `npm run demo`: the whole story with no cluster. The Kubernetes API emulator stands in for the cluster and
// a demo agent stands in for Claude Code (which cannot be installed here). Everything runs under temporary
// directories and is removed at the end; the script exits non-zero if any step fails or anything is left.
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { start } from '@clauderon/kube-emulator';
import pty from '@lydell/node-pty';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const bold = (s) => (process.stdout.isTTY && !process.env.NO_COLOR ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s) => console.log(`\n${bold(`==> ${s}`)}`);
const cleanups = [];
let daemon;

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'clauderon-demo-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  // Session pods run as uid 1000 with an emptyDir on /tmp: the demo agent lives in a world-readable /var/tmp dir.
  const agentDir = mkdtempSync('/var/tmp/clauderon-demo-agent-');
  chmodSync(agentDir, 0o755);
  copyFileSync(join(ROOT, 'scripts/demo-agent.mjs'), join(agentDir, 'demo-agent.mjs'));
  cleanups.push(() => rmSync(agentDir, { recursive: true, force: true }));

  step('Starting the Kubernetes API emulator as the cluster');
  const emu = await start({ stateDir: join(work, 'cluster'), timeScale: 0.2 });
  cleanups.push(() => emu.stop());
  emu.store.create('namespaces', undefined, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'clauderon' },
  });
  console.log(`cluster ${emu.url}, kubeconfig ${emu.kubeconfigPath}, namespace clauderon`);

  step('Making a repository with a local commit, an uncommitted edit and an untracked file');
  const repo = join(work, 'project');
  // Local git calls are short; the in-process emulator only has to wait a few milliseconds.
  const git = (...args) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' });
  execFileSync('git', ['init', '-q', '-b', 'main', repo]);
  git('config', 'user.name', 'demo');
  git('config', 'user.email', 'demo@example.invalid');
  writeFileSync(join(repo, 'app.js'), 'console.log("hello");\n');
  git('add', '-A');
  git('commit', '-q', '-m', 'first commit');
  writeFileSync(join(repo, 'app.js'), 'console.log("hello, world");\n');
  git('commit', '-q', '-am', 'local commit, never pushed');
  writeFileSync(join(repo, 'app.js'), 'console.log("hello, world!"); // uncommitted\n');
  writeFileSync(join(repo, 'TODO.md'), '- untracked notes\n');
  console.log(git('log', '--oneline').trim());
  console.log(git('status', '--short').trim());

  const home = join(work, 'home');
  const env = {
    ...process.env,
    CLAUDERON_HOME: home,
    KUBECONFIG: emu.kubeconfigPath,
    CLAUDERON_PROXY_LISTEN: '127.0.0.1:0',
    CLAUDERON_AGENT_COMMAND: `node,${join(agentDir, 'demo-agent.mjs')},{prompt}`,
    NO_COLOR: process.env.NO_COLOR ?? '',
  };
  // Asynchronous on purpose: the emulator runs in this process and must keep answering.
  const cli = (...args) =>
    new Promise((resolve, reject) => {
      console.log(`$ clauderon ${args.join(' ')}`);
      const child = spawn(process.execPath, [CLI, ...args], { env, stdio: 'inherit' });
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`clauderon ${args[0]} exited with ${code}`)),
      );
    });

  step('Starting the daemon with the Kubernetes backend enabled');
  daemon = spawn(process.execPath, [CLI, 'daemon', '--enable-kubernetes-backend'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let daemonOut = '';
  daemon.stderr.on('data', (d) => {
    daemonOut += d;
  });
  const until = Date.now() + 30_000;
  while (!daemonOut.includes('listening on')) {
    if (daemon.exitCode !== null || Date.now() > until)
      throw new Error(`the daemon did not start:\n${daemonOut}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log(daemonOut.trim());

  step('Creating a session');
  await cli(
    'create',
    '--repo',
    repo,
    '--prompt',
    'Make the greeting friendlier',
    '--name',
    'demo',
    '--no-attach',
  );
  await cli('list');

  step('Attaching: the agent answers, we detach (Ctrl-P Ctrl-Q) and it keeps running');
  const screen = await attachAndType(env, ['hello agent'], /agent heard: hello agent/);
  console.log(indent(screen));
  await cli('status', 'demo');

  step('Reattaching: the screen comes back; the agent commits its work');
  console.log(
    indent(
      await attachAndType(env, ['commit friendlier greeting'], /committed: [0-9a-f]+ friendlier greeting/),
    ),
  );

  step('Pulling the session branch back into the repository');
  await cli('pull', 'demo');
  console.log(git('log', '--oneline', 'clauderon/demo').trim());

  step('Deleting the session');
  await cli('delete', 'demo');
  const left = ['pods', 'persistentvolumeclaims', 'configmaps', 'secrets'].flatMap((r) =>
    emu.store.list(r).filter((o) => o.metadata.labels?.['app.kubernetes.io/managed-by'] === 'clauderon'),
  );
  const worktrees = existsSync(join(home, 'worktrees')) ? readdirSync(join(home, 'worktrees')) : [];
  if (left.length > 0 || worktrees.length > 0) {
    throw new Error(
      `left behind: ${[...left.map((o) => `${o.kind}/${o.metadata.name}`), ...worktrees].join(', ')}`,
    );
  }
  console.log('nothing left behind: no labelled object in the cluster, no worktree');
  console.log(
    `the agent's commit stays on your branch: ${git('log', '-1', '--format=%h %s', 'clauderon/demo').trim()}`,
  );
}

/** Attaches in a pseudo-terminal, types each line, waits for `expect`, detaches; returns the screen text. */
function attachAndType(env, lines, expect) {
  return new Promise((resolve, reject) => {
    const term = pty.spawn(process.execPath, [CLI, 'attach', 'demo'], {
      name: 'xterm-256color',
      cols: 100,
      rows: 20,
      env,
    });
    let out = '';
    let typed = false;
    const timer = setTimeout(() => {
      term.kill();
      reject(new Error(`attach did not show ${expect}:\n${plain(out)}`));
    }, 30_000);
    term.onData((d) => {
      out += d;
      if (!typed && plain(out).includes('agent> ')) {
        typed = true;
        for (const l of lines) term.write(`${l}\r`);
      }
      if (expect.test(plain(out))) {
        expect = /$^/; // match once
        setTimeout(() => term.write('\x10\x11'), 200);
      }
    });
    term.onExit(({ exitCode }) => {
      clearTimeout(timer);
      if (exitCode !== 0) reject(new Error(`attach exited ${exitCode}:\n${plain(out)}`));
      else resolve(plain(out));
    });
  });
}

function plain(s) {
  return s.replace(/\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>78]|\r/g, '');
}

function indent(s) {
  return s
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '')
    .map((l) => `  | ${l}`)
    .join('\n');
}

let code = 0;
try {
  await main();
  console.log(`\n${bold('Demo finished.')}`);
} catch (e) {
  console.error(`\ndemo failed: ${e instanceof Error ? e.message : e}`);
  code = 1;
} finally {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
  }
  for (const c of cleanups.reverse()) await c();
}
process.exit(code);
