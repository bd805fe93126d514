import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CLI, cliEnv, startDaemon } from './support/cli.js';
import { createInBackground, makeRepo, startCluster, type TestCluster } from './support/cluster.js';
import { PtyCli } from './support/pty.js';

const run = promisify(execFile);

describe('session lifecycle beyond the happy path', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  let repoName: string;
  before(async () => {
    c = await startCluster();
    repo = await makeRepo();
    repoName = repo.dir.split('/').pop()!;
  });
  after(async () => {
    await c?.stop();
    repo?.cleanup();
  });

  const podSh = (name: string, script: string) =>
    c.kubectl(['-n', 'clauderon', 'exec', `clauderon-${name}`, '-c', 'agent', '--', 'sh', '-c', script]);

  test('delete refuses a session with commits that were never pulled, until they are pulled', async () => {
    assert.equal(
      (await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', 'unpulled', '--no-attach']))
        .code,
      0,
    );
    await podSh(
      'unpulled',
      `cd /workspace/${repoName} && echo work > agent.txt && git add agent.txt && git -c user.name=a -c user.email=a@a commit -qm "agent work"`,
    );
    const refused = await c.cli(['delete', 'unpulled']);
    assert.equal(refused.code, 7, refused.stderr);
    assert.match(refused.stderr, /1 commit\(s\) that were never pulled back/);
    assert.match(refused.stderr, /clauderon pull unpulled/);
    assert.ok(c.labelled().includes('pods/clauderon-unpulled'), 'nothing was deleted');
    const pull = await c.cli(['pull', 'unpulled']);
    assert.equal(pull.code, 0, pull.stderr);
    assert.match(pull.stdout, /1 new commit\(s\) on clauderon\/unpulled/);
    const del = await c.cli(['delete', 'unpulled']);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(
      (await run('git', ['-C', repo.dir, 'log', '-1', '--format=%s', 'clauderon/unpulled'])).stdout.trim(),
      'agent work',
    );
    await run('git', ['-C', repo.dir, 'branch', '-D', 'clauderon/unpulled']);
  });

  test('create in a terminal attaches by default, like docker run -it', async () => {
    const t = new PtyCli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', 'interactive'], {
      home: c.home,
      env: c.env,
    });
    try {
      await t.waitFor(/session interactive is ready/, { timeoutMs: 60_000 });
      await t.waitFor(/agent> /);
      t.write('hi from create\r');
      await t.waitFor(/agent heard: hi from create/);
      t.write('\x10\x11');
      assert.equal((await t.exited).exitCode, 0);
    } finally {
      t.kill();
    }
    assert.equal((await c.cli(['delete', 'interactive', '--force'])).code, 0);
  });

  test('a second create with a name in use is refused and leaves the first session untouched', async () => {
    assert.equal(
      (await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', 'twice', '--no-attach'])).code,
      0,
    );
    const before = c.labelled().sort();
    const again = await c.cli([
      'create',
      '--repo',
      repo.dir,
      '--prompt',
      'p',
      '--name',
      'twice',
      '--no-attach',
    ]);
    assert.equal(again.code, 7, again.stderr);
    assert.match(again.stderr, /already exists/);
    assert.deepEqual(c.labelled().sort(), before);
    assert.equal(JSON.parse((await c.cli(['status', 'twice', '-o', 'json'])).stdout).phase, 'Running');
    assert.equal((await c.cli(['delete', 'twice', '--force'])).code, 0);
  });

  test('two clients attach at once and both see what either types', async () => {
    assert.equal(
      (await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', 'shared', '--no-attach'])).code,
      0,
    );
    const a = new PtyCli(['attach', 'shared'], { home: c.home, env: c.env });
    const b = new PtyCli(['attach', 'shared'], { home: c.home, env: c.env });
    try {
      await a.waitFor(/agent> /);
      await b.waitFor(/agent> /);
      const status = JSON.parse((await c.cli(['status', 'shared', '-o', 'json'])).stdout);
      assert.equal(status.attachedClients, 2);
      a.write('from a\r');
      await b.waitFor(/agent heard: from a/);
      b.write('from b\r');
      await a.waitFor(/agent heard: from b/);
      a.write('\x10\x11');
      assert.equal((await a.exited).exitCode, 0);
      b.write('still here\r');
      await b.waitFor(/agent heard: still here/);
    } finally {
      a.kill();
      b.kill();
    }
  });

  test('logs -f follows the agent container until it ends', async () => {
    const child = spawn(process.execPath, [CLI, 'logs', 'shared', '-f'], { env: cliEnv(c.home, c.env) });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    await new Promise((r) => setTimeout(r, 500));
    c.emu.faults.exitContainer('clauderon', 'clauderon-shared', 'agent', 0);
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 0);
    void out;
    assert.equal((await c.cli(['delete', 'shared', '--force'])).code, 0);
  });

  test('a restarted daemon with a lost local store adopts running sessions from the cluster', async () => {
    assert.equal(
      (await c.cli(['create', '--repo', repo.dir, '--prompt', 'p', '--name', 'adopted', '--no-attach'])).code,
      0,
    );
    await c.daemon.kill();
    rmSync(join(c.home, 'sessions'), { recursive: true, force: true });
    c.daemon = await startDaemon({ home: c.home, env: c.env });
    const list = JSON.parse((await c.cli(['list', '-o', 'json'])).stdout).sessions;
    assert.deepEqual(
      list.map((s: { name: string; phase: string }) => [s.name, s.phase]),
      [['adopted', 'Running']],
    );
    const a = new PtyCli(['attach', 'adopted'], { home: c.home, env: c.env });
    try {
      await a.waitFor(/agent> /);
      a.write('after restart\r');
      await a.waitFor(/agent heard: after restart/);
      a.write('\x10\x11');
      await a.exited;
    } finally {
      a.kill();
    }
    assert.equal((await c.cli(['delete', 'adopted', '--force'])).code, 0);
    assert.deepEqual(c.labelled(), []);
  });

  test('gc lists objects and worktrees that belong to no session, and removes them with --yes', async () => {
    c.emu.store.create('configmaps', 'clauderon', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: 'clauderon-ghost-ca',
        namespace: 'clauderon',
        labels: { 'app.kubernetes.io/managed-by': 'clauderon', 'clauderon.dev/session': 'ghost' },
      },
      data: {},
    });
    const listed = await c.cli(['gc']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /ConfigMap\/clauderon-ghost-ca/);
    assert.match(listed.stderr, /clauderon gc --yes/);
    assert.ok(c.labelled().includes('configmaps/clauderon-ghost-ca'), 'nothing removed without confirmation');
    const removed = await c.cli(['gc', '--yes']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(c.labelled(), []);
  });

  test('Ctrl-C during create tears down everything the create made', async () => {
    c.emu.faults.addLatency(3000, { verb: 'exec' });
    const create = createInBackground(c, [
      '--repo',
      repo.dir,
      '--prompt',
      'p',
      '--name',
      'interrupted',
      '--no-attach',
    ]);
    await create.reached(/created pod/);
    create.child.kill('SIGINT');
    const code = await create.exited;
    const err = create.stderr();
    c.emu.faults.clear();
    assert.equal(code, 130, err);
    const end = Date.now() + 60_000;
    const wts = () => (existsSync(join(c.home, 'worktrees')) ? readdirSync(join(c.home, 'worktrees')) : []);
    while ((c.labelled().length > 0 || wts().length > 0) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(c.labelled(), []);
    assert.deepEqual(wts(), []);
  });
});
