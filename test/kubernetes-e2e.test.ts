import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { makeRepo, startCluster, type TestCluster } from './support/cluster.js';
import { PtyCli } from './support/pty.js';

const run = promisify(execFile);

describe('kubernetes backend end to end (real CLI → daemon → emulator)', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  before(async () => {
    c = await startCluster({
      emulator: { failImagePattern: /does-not-exist/ },
      env: { ANTHROPIC_API_KEY: 'sk-e2e-not-a-real-key' },
    });
    repo = await makeRepo();
  });
  after(async () => {
    await c?.stop();
    repo?.cleanup();
  });

  const git = async (dir: string, ...args: string[]) => (await run('git', ['-C', dir, ...args])).stdout;
  const podGit = async (pod: string, ...args: string[]) =>
    (
      await c.kubectl([
        '-n',
        'clauderon',
        'exec',
        pod,
        '-c',
        'agent',
        '--',
        'git',
        '-C',
        `/workspace/${repo.dir.split('/').pop()}`,
        ...args,
      ])
    ).stdout;

  test('create ships local commits, uncommitted edits and untracked files; the pod repository matches the worktree', async () => {
    const r = await c.cli([
      'create',
      '--repo',
      repo.dir,
      '--prompt',
      'improve the app',
      '--name',
      'e2e-one',
      '--no-attach',
      '--cpu-limit',
      '2',
      '--memory-limit',
      '1Gi',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'e2e-one');
    assert.match(r.stderr, /workspace synced/);
    const wt = join(c.home, 'worktrees', 'e2e-one');
    assert.equal(
      await podGit('clauderon-e2e-one', 'log', '--format=%H %s'),
      await git(wt, 'log', '--format=%H %s'),
    );
    assert.equal(
      await podGit('clauderon-e2e-one', 'status', '--porcelain'),
      await git(wt, 'status', '--porcelain'),
    );
    assert.equal(await podGit('clauderon-e2e-one', 'diff', 'HEAD'), await git(wt, 'diff', 'HEAD'));
    assert.equal(
      await podGit('clauderon-e2e-one', 'rev-parse', '--abbrev-ref', 'HEAD'),
      'clauderon/e2e-one\n',
    );
    assert.match(await podGit('clauderon-e2e-one', 'status', '--porcelain'), /notes\.txt/);
    assert.doesNotMatch(
      await podGit('clauderon-e2e-one', 'status', '--porcelain', '--ignored'),
      /secret\.env/,
    );
    const pod = JSON.parse(
      (await c.kubectl(['-n', 'clauderon', 'get', 'pod', 'clauderon-e2e-one', '-o', 'json'])).stdout,
    );
    assert.deepEqual(pod.spec.containers[0].resources.limits, { cpu: '2', memory: '1Gi' });
  });

  test('list and status report the session from the cluster', async () => {
    const r = await c.cli(['list', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout).sessions.find((x: { name: string }) => x.name === 'e2e-one');
    assert.equal(s.phase, 'Running');
    assert.equal(s.agent, 'running');
    assert.equal(s.branch, 'clauderon/e2e-one');
    const table = await c.cli(['ls']);
    assert.match(table.stdout, /^NAME\s+PHASE\s+AGENT/m);
    assert.match(table.stdout, /e2e-one\s+Running\s+running/);
  });

  test('doctor checks the cluster, the proxy, and from inside the pod the proxy and its CA', async () => {
    const r = await c.cli(['doctor', 'e2e-one']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /✓ cluster/);
    assert.match(r.stdout, /✓ proxy: listening/);
    assert.match(r.stdout, /✓ session e2e-one: proxy reachable from the pod/);
    assert.match(r.stdout, /✓ session e2e-one: TLS through the proxy trusted/);
    const ca = await c.cli(['proxy', 'ca']);
    assert.equal(ca.code, 0);
    assert.match(ca.stdout, /^-----BEGIN CERTIFICATE-----/);
    assert.doesNotMatch(ca.stdout, /PRIVATE KEY/);
  });

  test('attach: type, see the agent answer, resize, detach, reattach and see the screen, pull, then exit code', async () => {
    const a = new PtyCli(['attach', 'e2e-one'], { home: c.home, env: c.env, cols: 100, rows: 30 });
    try {
      await a.waitFor(/agent> /);
      a.write('hello there\r');
      await a.waitFor(/agent heard: hello there/);
      // The terminal size must reach the agent's tmux window in the pod.
      a.proc.resize(120, 40);
      const deadline = Date.now() + 15_000;
      let size = '';
      while (Date.now() < deadline) {
        size = (
          await c.kubectl([
            '-n',
            'clauderon',
            'exec',
            'clauderon-e2e-one',
            '-c',
            'agent',
            '--',
            'tmux',
            'display-message',
            '-p',
            '-t',
            'clauderon',
            '#{window_width}x#{window_height}',
          ])
        ).stdout.trim();
        if (size === '120x40') break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(size, '120x40');
      a.write('\x10\x11');
      const exit = await a.exited;
      assert.equal(exit.exitCode, 0);
      assert.match(a.text, /detached from e2e-one/);
    } finally {
      a.kill();
    }
    const status = JSON.parse((await c.cli(['status', 'e2e-one', '-o', 'json'])).stdout);
    assert.equal(status.phase, 'Running', 'the agent keeps running after detach');

    const b = new PtyCli(['attach', 'e2e-one'], { home: c.home, env: c.env, cols: 120, rows: 40 });
    try {
      await b.waitFor(/agent heard: hello there/);
      b.write('commit agent work\r');
      await b.waitFor(/committed: [0-9a-f]+ agent work/);
      const pull = await c.cli(['pull', 'e2e-one']);
      assert.equal(pull.code, 0, pull.stderr);
      assert.match(await git(repo.dir, 'log', '-1', '--format=%s', 'clauderon/e2e-one'), /agent work/);
      const m = b.mark();
      b.write('exit 3\r');
      await b.waitFor(/bye \(3\)/, { since: m });
      const exit = await b.exited;
      assert.equal(exit.exitCode, 3, b.text.slice(-500));
    } finally {
      b.kill();
    }
  });

  test('logs prints the agent container log', async () => {
    const r = await c.cli(['logs', 'e2e-one']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /agent exited with code 3/);
  });

  test('delete leaves no labelled object and no worktree; a second delete succeeds', async () => {
    const r = await c.cli(['delete', 'e2e-one', '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(c.labelled(), []);
    assert.equal(existsSync(join(c.home, 'worktrees', 'e2e-one')), false);
    const again = await c.cli(['delete', 'e2e-one']);
    assert.equal(again.code, 0, again.stderr);
    const st = await c.cli(['status', 'e2e-one']);
    assert.equal(st.code, 6);
  });

  test('bad names and quantities are refused before any API call', async () => {
    const before = c.emu.faults.requests.length;
    for (const args of [
      ['--name', 'Bad_Name'],
      ['--name', 'x'.repeat(41)],
      ['--memory-limit', '8g'],
      ['--cpu-limit', '-1'],
      ['--storage-size', 'lots'],
    ]) {
      const r = await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--no-attach', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /error: /);
    }
    const memory = await c.cli([
      'create',
      '--repo',
      repo.dir,
      '--prompt',
      'p',
      '--no-attach',
      '--memory-limit',
      '8g',
    ]);
    assert.match(memory.stderr, /did you mean 8Gi/);
    assert.equal(c.emu.faults.requests.length, before, 'no request reached the cluster');
  });

  test('an image that cannot be pulled fails fast with the Event text and leaves nothing', async () => {
    const r = await c.cli([
      'create',
      '--repo',
      repo.dir,
      '--prompt',
      'p',
      '--name',
      'badimage',
      '--no-attach',
      '--image',
      'registry.invalid/does-not-exist:1',
    ]);
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /does-not-exist/);
    assert.match(r.stderr, /pull/i);
    assert.deepEqual(c.labelled(), []);
    assert.deepEqual(readdirSync(join(c.home, 'worktrees')), []);
    assert.equal((await git(repo.dir, 'branch', '--list', 'clauderon/badimage')).trim(), '');
  });
});
