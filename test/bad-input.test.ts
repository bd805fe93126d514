import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, type CliResult, cliEnv, runCli, startDaemon, tempHome } from './support/cli.js';
import { makeRepo, startCluster, type TestCluster } from './support/cluster.js';
import {
  api,
  apiError,
  assertClearError,
  git,
  rawApi,
  runCliRawArg,
  sessionBranches,
  worktrees,
} from './support/robust-util.js';

/**
 * Bad input at every door — CLI flags, config files, the cluster's set-up, the daemon socket and the raw
 * API — must be refused with a message naming the problem, the README's exit code (or HTTP status and error
 * code), and nothing created: no labelled object, no worktree, no session branch, and where the input can
 * be judged locally not even an API request.
 */
describe('bad input', () => {
  let c: TestCluster;
  let repo: { dir: string; cleanup: () => void };
  let scratch: string;
  const extraRepos: string[] = [];

  before(async () => {
    c = await startCluster();
    repo = await makeRepo();
    scratch = mkdtempSync(join(tmpdir(), 'clauderon-bad-'));
  });
  after(async () => {
    if (c && c.daemon.child.exitCode !== null) {
      console.error(
        `the daemon exited early (${c.daemon.child.exitCode}):\n${c.daemon.output().slice(-3000)}`,
      );
    }
    await c?.stop();
    repo?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  const cli = (args: string[], o: { input?: string } = {}) =>
    runCli(args, { home: c.home, env: { ...c.env, CLAUDERON_DEBUG: '1' }, ...o });

  async function assertNothingCreated(): Promise<void> {
    assert.deepEqual(c.labelled(), [], 'no labelled object');
    assert.deepEqual(worktrees(c.home), [], 'no worktree');
    assert.equal(await sessionBranches(repo.dir), '', 'no session branch');
    for (const r of extraRepos) assert.equal(await sessionBranches(r), '', `no session branch in ${r}`);
  }

  /** Creates a session that must succeed, runs `check`, and always deletes it again. */
  async function accepted(
    args: string[],
    name: string,
    check: (r: CliResult) => Promise<void>,
  ): Promise<void> {
    const r = await cli([...args, '--name', name]);
    try {
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse((await cli(['status', name, '-o', 'json'])).stdout);
      assert.equal(s.phase, 'Running');
      await check(r);
    } finally {
      const d = await cli(['delete', name, '--force']);
      assert.equal(d.code, 0, d.stderr);
    }
    await assertNothingCreated();
  }

  /** Mutating API requests (anything but reads and access reviews) since `from`. */
  const writesSince = (from: number) =>
    c.emu.faults.requests
      .slice(from)
      .filter((r) => !['get', 'list', 'watch'].includes(r.verb) && r.resource !== 'selfsubjectaccessreviews');

  /**
   * Runs the CLI and checks a clear refusal with nothing created. `local: true` (the default) also checks
   * that not one API request was made: the input can be judged without the cluster.
   */
  async function refused(
    args: string[],
    want: Parameters<typeof assertClearError>[1],
    opts: { input?: string; local?: boolean; raw?: string } = {},
  ): Promise<CliResult> {
    const before = c.emu.faults.requests.length;
    const r =
      opts.raw !== undefined
        ? await runCliRawArg(args, opts.raw, { home: c.home, env: { ...c.env, CLAUDERON_DEBUG: '1' } })
        : await cli(args, opts.input !== undefined ? { input: opts.input } : {});
    assertClearError(r, want);
    await assertNothingCreated();
    if (opts.local !== false) {
      assert.deepEqual(c.emu.faults.requests.slice(before), [], 'no API request at all');
    } else {
      assert.deepEqual(writesSince(before), [], 'no object written');
    }
    return r;
  }

  const create = (...extra: string[]) => [
    'create',
    '--no-attach',
    '--repo',
    repo.dir,
    '--prompt',
    'p',
    ...extra,
  ];
  const INVALID_NAME = { exit: 2, code: 'CLAUDERON_E_INVALID_NAME' };
  const QTY = { exit: 2, code: 'CLAUDERON_E_INVALID_QUANTITY' };
  const USAGE = { exit: 2, code: 'CLAUDERON_E_USAGE' };
  const REPO = { exit: 2, code: 'CLAUDERON_E_REPO_INVALID' };

  describe('session names on the command line', { concurrency: 4 }, () => {
    test('refuses an upper-case name and suggests a valid one', async () => {
      await refused(create('--name', 'Fix_Login'), {
        ...INVALID_NAME,
        match: /session name "Fix_Login" is not valid/,
        hint: /--name fix-login/,
      });
    });
    test('refuses a name one character over the 40-character limit', async () => {
      await refused(create('--name', 'a'.repeat(41)), {
        ...INVALID_NAME,
        match: /41 characters long; the limit is 40/,
      });
    });
    test('refuses a 5000-character name without echoing all of it', async () => {
      const r = await refused(create('--name', 'b'.repeat(5000)), {
        ...INVALID_NAME,
        match: /5000 characters long/,
      });
      assert.ok(r.stderr.length < 1000, 'the message is short');
    });
    test('refuses an empty name', async () => {
      await refused(create('--name', ''), { ...INVALID_NAME, match: /must not be empty/ });
    });
    test('refuses a name starting with a dash', async () => {
      await refused(create('--name=-lead'), { ...INVALID_NAME, match: /"-lead" is not valid/ });
    });
    test('refuses a name ending with a dash', async () => {
      await refused(create('--name', 'trail-'), { ...INVALID_NAME, match: /"trail-" is not valid/ });
    });
    test('refuses a dotted name', async () => {
      await refused(create('--name', 'a.b'), { ...INVALID_NAME, match: /"a\.b" is not valid/ });
    });
    test('refuses a name with a path traversal', async () => {
      await refused(create('--name', '../etc'), { ...INVALID_NAME, match: /"\.\.\/etc" is not valid/ });
    });
    test('refuses a name with a space', async () => {
      await refused(create('--name', 'a b'), { ...INVALID_NAME, match: /"a b" is not valid/ });
    });
    test('refuses a non-ASCII name', async () => {
      await refused(create('--name', 'café'), { ...INVALID_NAME, match: /"café" is not valid/ });
    });
    test('refuses a name with a terminal escape and shows it escaped, never raw', async () => {
      const r = await refused(create('--name', 'a\x1b[31mb'), { ...INVALID_NAME, match: /"a\\x1b\[31mb"/ });
      assert.ok(!r.stderr.includes('\x1b'), 'no raw escape reaches the terminal');
    });
    test('refuses a name with a newline, shown escaped', async () => {
      await refused(create('--name', 'a\nb'), { ...INVALID_NAME, match: /"a\\x0ab" is not valid/ });
    });
    test('refuses a name that is not valid UTF-8', async () => {
      await refused(
        ['create', '--no-attach', '--repo', repo.dir, '--prompt', 'p', '--name'],
        { ...INVALID_NAME, match: /is not valid/ },
        { raw: '\\377\\376x' },
      );
    });
  });

  describe('session names given to the other commands', { concurrency: 4 }, () => {
    test('status refuses an invalid name before asking the daemon', async () => {
      await refused(['status', 'Bad!'], { ...INVALID_NAME, match: /"Bad!" is not valid/ });
    });
    test('delete checks every name before deleting any', async () => {
      await refused(['delete', 'fine-name', 'x/../y'], {
        ...INVALID_NAME,
        match: /"x\/\.\.\/y" is not valid/,
      });
    });
    test('attach refuses an over-long name', async () => {
      await refused(['attach', 'c'.repeat(64)], { ...INVALID_NAME, match: /64 characters long/ });
    });
    test('logs refuses an invalid name', async () => {
      await refused(['logs', 'UPPER'], { ...INVALID_NAME, match: /"UPPER" is not valid/ });
    });
    test('pull refuses an invalid name', async () => {
      await refused(['pull', 'a..b'], { ...INVALID_NAME, match: /"a\.\.b" is not valid/ });
    });
    test('logs refuses a --tail that is not a whole number', async () => {
      await refused(['logs', 'some-session', '--tail', 'ten'], {
        ...USAGE,
        match: /--tail must be a whole number/,
      });
    });
    test('logs refuses a negative --tail', async () => {
      await refused(['logs', 'some-session', '--tail=-5'], {
        ...USAGE,
        match: /--tail must be a whole number, got "-5"/,
      });
    });
  });

  describe('repositories', () => {
    test('refuses a repository path that does not exist', async () => {
      await refused(['create', '--no-attach', '--prompt', 'p', '--repo', join(scratch, 'missing')], {
        ...REPO,
        match: /missing does not exist or is not a directory/,
        hint: /--repo/,
      });
    });
    test('refuses a file given as the repository', async () => {
      const f = join(scratch, 'a-file');
      writeFileSync(f, 'x');
      await refused(['create', '--no-attach', '--prompt', 'p', '--repo', f], {
        ...REPO,
        match: /a-file does not exist or is not a directory/,
      });
    });
    test('refuses a directory that is not a git repository, with a git init hint', async () => {
      const d = mkdtempSync(join(scratch, 'plain-'));
      await refused(['create', '--no-attach', '--prompt', 'p', '--repo', d], {
        ...REPO,
        match: /is not a git repository/,
        hint: /git init/,
      });
    });
    test('refuses a bare repository: a session needs a working tree', async () => {
      const d = mkdtempSync(join(scratch, 'bare-'));
      await git(d, 'init', '-q', '--bare');
      await refused(['create', '--no-attach', '--prompt', 'p', '--repo', d], {
        ...REPO,
        match: /is a bare repository/,
        hint: /git clone/,
      });
    });
    test('refuses a repository without commits', async () => {
      const d = mkdtempSync(join(scratch, 'empty-'));
      await git(d, 'init', '-q');
      await refused(['create', '--no-attach', '--prompt', 'p', '--repo', d], {
        ...REPO,
        match: /has no commits yet/,
        hint: /commit/,
      });
    });
    test('refuses a --base that is not a commit, after the cluster checks but before any object', async () => {
      await refused(
        create('--name', 'bad-base', '--base', 'no-such-ref'),
        {
          ...REPO,
          match: /base "no-such-ref" is not a commit/,
        },
        { local: false },
      );
    });
    test('refuses a repository path that is not valid UTF-8 (the path cannot be found as given)', async () => {
      await refused(
        ['create', '--no-attach', '--prompt', 'p', '--repo'],
        { ...REPO, match: /does not exist or is not a directory/ },
        { raw: `${scratch}/\\377repo` },
      );
    });
    test('accepts a repository path with control characters, and never echoes them raw', async () => {
      const d = join(scratch, 'ctl\x01\x1b[31mrepo');
      mkdirSync(d);
      await git(d, 'init', '-q', '-b', 'main');
      writeFileSync(join(d, 'f.txt'), 'x\n');
      await git(d, 'add', '-A');
      await git(d, 'commit', '-q', '-m', 'one');
      extraRepos.push(d);
      await accepted(['create', '--no-attach', '--prompt', 'p', '--repo', d], 'ctl-path', async (r) => {
        assert.ok(!r.stderr.includes('\x1b'), 'no raw escape sequence reaches the terminal');
        assert.match(r.stderr, /ctl\\x01\\x1b\[31mrepo/, 'the path is shown escaped');
      });
    });
    test('accepts a detached HEAD: the session branch starts at that commit', async () => {
      const d = mkdtempSync(join(scratch, 'detached-'));
      await git(d, 'init', '-q', '-b', 'main');
      writeFileSync(join(d, 'f.txt'), 'one\n');
      await git(d, 'add', '-A');
      await git(d, 'commit', '-q', '-m', 'one');
      const first = await git(d, 'rev-parse', 'HEAD');
      writeFileSync(join(d, 'f.txt'), 'two\n');
      await git(d, 'commit', '-q', '-am', 'two');
      await git(d, 'checkout', '-q', '--detach', first);
      extraRepos.push(d);
      await accepted(['create', '--no-attach', '--prompt', 'p', '--repo', d], 'detached', async () => {
        assert.equal(
          await git(d, 'rev-parse', 'clauderon/detached'),
          first,
          'branch starts at the detached HEAD',
        );
        assert.equal(
          await git(d, 'rev-parse', 'HEAD'),
          first,
          'the repository is left detached where it was',
        );
      });
    });
    test('accepts a repository with a submodule (shipped as a gitlink)', async () => {
      const sub = mkdtempSync(join(scratch, 'sub-'));
      await git(sub, 'init', '-q', '-b', 'main');
      writeFileSync(join(sub, 'lib.txt'), 'lib\n');
      await git(sub, 'add', '-A');
      await git(sub, 'commit', '-q', '-m', 'lib');
      const d = mkdtempSync(join(scratch, 'super-'));
      await git(d, 'init', '-q', '-b', 'main');
      writeFileSync(join(d, 'top.txt'), 'top\n');
      await git(d, 'add', '-A');
      await git(d, 'commit', '-q', '-m', 'top');
      await git(d, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', sub, 'vendor/lib');
      await git(d, 'commit', '-q', '-m', 'add submodule');
      extraRepos.push(d);
      await accepted(['create', '--no-attach', '--prompt', 'p', '--repo', d], 'with-sub', async () => {
        assert.match(await git(d, 'ls-files', '-s', 'vendor/lib'), /^160000 /, 'the submodule is a gitlink');
      });
    });
  });

  describe('prompts', { concurrency: 4 }, () => {
    const noPrompt = () => ['create', '--no-attach', '--repo', repo.dir];
    test('refuses a create without a prompt', async () => {
      await refused(noPrompt(), { ...USAGE, match: /a prompt is required/, hint: /--prompt-file/ });
    });
    test('refuses an empty prompt', async () => {
      await refused([...noPrompt(), '--prompt', ''], { ...USAGE, match: /the prompt is empty/ });
    });
    test('refuses a prompt of only white space', async () => {
      await refused([...noPrompt(), '--prompt', ' \n\t '], { ...USAGE, match: /the prompt is empty/ });
    });
    test('refuses --prompt together with --prompt-file', async () => {
      await refused([...noPrompt(), '--prompt', 'a', '--prompt-file', '-'], { ...USAGE, match: /not both/ });
    });
    test('refuses a prompt file that does not exist, naming it', async () => {
      await refused([...noPrompt(), '--prompt-file', join(scratch, 'nope.md')], {
        ...USAGE,
        match: /cannot read --prompt-file .*nope\.md/,
      });
    });
    test('refuses a directory as the prompt file', async () => {
      await refused([...noPrompt(), '--prompt-file', scratch], {
        ...USAGE,
        match: /cannot read --prompt-file/,
      });
    });
    test('refuses a prompt file over 1 MB with a hint', async () => {
      const f = join(scratch, 'huge.md');
      writeFileSync(f, 'y'.repeat(1_100_000));
      await refused([...noPrompt(), '--prompt-file', f], {
        ...USAGE,
        match: /the prompt is 1100000 bytes; the limit is 1000000/,
        hint: /file in the repository/,
      });
    });
    test('refuses a prompt over 1 MB on standard input', async () => {
      await refused(
        [...noPrompt(), '--prompt-file', '-'],
        { ...USAGE, match: /the limit is 1000000/ },
        {
          input: 'z'.repeat(1_000_001),
        },
      );
    });
    test('refuses a prompt with a terminal escape sequence', async () => {
      await refused([...noPrompt(), '--prompt', 'fix \x1b[2J it'], { ...USAGE, match: /control characters/ });
    });
    test('refuses a prompt file with a NUL byte', async () => {
      const f = join(scratch, 'nul.md');
      writeFileSync(f, 'fix\0it');
      await refused([...noPrompt(), '--prompt-file', f], { ...USAGE, match: /control characters/ });
    });
    test('refuses a prompt file that is not valid UTF-8', async () => {
      const f = join(scratch, 'latin1.md');
      writeFileSync(f, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
      await refused([...noPrompt(), '--prompt-file', f], { ...USAGE, match: /not valid UTF-8/ });
    });
    test('refuses a prompt argument that is not valid UTF-8', async () => {
      await refused(
        [...noPrompt(), '--prompt'],
        { ...USAGE, match: /not valid UTF-8/ },
        { raw: 'fix \\377 it' },
      );
    });
  });

  // These two get as far as the worktree and snapshot before the argument limit refuses them, so they run
  // on their own, not alongside the local-only refusals above.
  describe('prompts over the Linux single-argument limit', () => {
    const noPrompt = () => ['create', '--no-attach', '--repo', repo.dir];
    test('refuses a 200 KB prompt (over Linux single-argument limit) and removes what it started', async () => {
      const f = join(scratch, 'big.md');
      writeFileSync(f, 'w'.repeat(200_000));
      await refused(
        [...noPrompt(), '--name', 'big-prompt', '--prompt-file', f],
        {
          exit: 2,
          code: 'CLAUDERON_E_INVALID_INPUT',
          match: /limit is 131072.*prompt/,
          hint: /file in the repository/,
        },
        { local: false },
      );
    });
    test('refuses a 200 KB prompt piped on standard input the same way', async () => {
      await refused(
        [...noPrompt(), '--name', 'big-stdin', '--prompt-file', '-'],
        { exit: 2, code: 'CLAUDERON_E_INVALID_INPUT', match: /limit is 131072/ },
        { input: 'v'.repeat(200_000), local: false },
      );
    });
  });

  describe('quantities', { concurrency: 4 }, () => {
    test('refuses a Docker-style memory limit with a hint', async () => {
      await refused(create('--memory-limit', '8g'), {
        ...QTY,
        match: /--memory-limit "8g".*Docker-style/,
        hint: /8Gi/,
      });
    });
    test('refuses a Docker-style memory request in "mb"', async () => {
      await refused(create('--memory-request', '512mb'), { ...QTY, match: /Docker-style/, hint: /512Mi/ });
    });
    test('refuses a Docker-style storage size', async () => {
      await refused(create('--storage-size', '10GB'), {
        ...QTY,
        match: /--storage-size "10GB"/,
        hint: /10Gi/,
      });
    });
    test('refuses a negative CPU limit', async () => {
      await refused(create('--cpu-limit=-1'), { ...QTY, match: /must not be negative/ });
    });
    test('refuses a negative memory request', async () => {
      await refused(create('--memory-request=-1Gi'), { ...QTY, match: /must not be negative/ });
    });
    test('refuses a zero CPU request', async () => {
      await refused(create('--cpu-request', '0'), { ...QTY, match: /greater than zero/ });
    });
    test('refuses milli-bytes of memory and suggests Mi', async () => {
      await refused(create('--memory-limit', '512m'), { ...QTY, match: /fraction of a byte/, hint: /512Mi/ });
    });
    test('refuses a CPU limit that is not a number', async () => {
      await refused(create('--cpu-limit', 'two'), { ...QTY, match: /expected a number/, hint: /500m/ });
    });
    test('refuses a malformed storage size', async () => {
      await refused(create('--storage-size', '1.5.3Gi'), { ...QTY, match: /"1\.5\.3Gi"/ });
    });
  });

  describe('other create flags', { concurrency: 4 }, () => {
    test('refuses an unknown backend', async () => {
      await refused(create('--backend', 'docker'), {
        exit: 2,
        code: 'CLAUDERON_E_UNKNOWN_BACKEND',
        match: /unknown backend "docker"/,
        hint: /kubernetes/,
      });
    });
    test('refuses an unknown pull policy, listing the choices', async () => {
      await refused(create('--pull-policy', 'Sometimes'), { exit: 2, match: /Always, IfNotPresent, Never/ });
    });
    test('refuses an invalid namespace', async () => {
      await refused(create('--namespace', 'Team_A'), { ...INVALID_NAME, match: /--namespace "Team_A"/ });
    });
    test('refuses a namespace over 63 characters', async () => {
      await refused(create('--namespace', 'n'.repeat(64)), { ...INVALID_NAME, match: /invalid --namespace/ });
    });
    test('refuses an image with white space', async () => {
      await refused(create('--image', 'my image:1'), { ...USAGE, match: /invalid --image "my image:1"/ });
    });
    test('refuses an empty image', async () => {
      await refused(create('--image', ''), { ...USAGE, match: /invalid --image ""/ });
    });
    test('refuses an unknown output format', async () => {
      await refused(create('-o', 'yaml'), { ...USAGE, match: /unknown output format "yaml"/ });
    });
    test('refuses an unknown option', async () => {
      await refused(create('--frobnicate'), { exit: 2, match: /unknown option '--frobnicate'/ });
    });
    test('refuses a create without --repo', async () => {
      await refused(['create', '--prompt', 'p'], { exit: 2, match: /required option '--repo <path>'/ });
    });
    test('refuses an unknown command', async () => {
      await refused(['destroy-everything'], { exit: 2, match: /unknown command 'destroy-everything'/ });
    });
  });

  describe('configuration files and environment', { concurrency: 4 }, () => {
    const CONFIG = { exit: 3, code: 'CLAUDERON_E_CONFIG_INVALID' };
    async function withConfig(
      toml: string,
      args: string[] = ['config', 'show'],
      env: Record<string, string> = {},
    ): Promise<CliResult> {
      const { home, cleanup } = tempHome();
      try {
        writeFileSync(join(home, 'config.toml'), toml);
        return await runCli(args, { home, env: { CLAUDERON_DEBUG: '1', ...env } });
      } finally {
        cleanup();
      }
    }
    test('refuses an unknown key, naming it, its line and the likely intended key', async () => {
      const r = await withConfig('[kubernetes]\nnamespce = "x"\n');
      assertClearError(r, {
        ...CONFIG,
        match: /kubernetes\.namespce: unknown key \(did you mean "kubernetes\.namespace"\?\).*config\.toml:2/,
      });
    });
    test('refuses an unknown section', async () => {
      const r = await withConfig('[kubernetess]\nnamespace = "x"\n');
      assertClearError(r, { ...CONFIG, match: /kubernetess: unknown key/ });
    });
    test('refuses malformed TOML with the line and column', async () => {
      const r = await withConfig('[kubernetes\nnamespace = "x"\n');
      assertClearError(r, { ...CONFIG, match: /config\.toml:1:\d+: invalid TOML/, hint: /syntax/ });
    });
    test('refuses a value of the wrong type', async () => {
      const r = await withConfig('[kubernetes]\nnamespace = 5\n');
      assertClearError(r, { ...CONFIG, match: /kubernetes\.namespace: expected a string, got an integer/ });
    });
    test('refuses a value outside its choices', async () => {
      const r = await withConfig('[kubernetes]\nimage_pull_policy = "Sometimes"\n');
      assertClearError(r, {
        ...CONFIG,
        match: /must be one of Always, IfNotPresent, Never, got "Sometimes"/,
      });
    });
    test('refuses a duration that is not one', async () => {
      const r = await withConfig('[kubernetes.timeouts]\npod_start = "forever"\n');
      assertClearError(r, { ...CONFIG, match: /kubernetes\.timeouts\.pod_start: expected a duration/ });
    });
    test('refuses a Docker-style quantity in the config with a hint', async () => {
      const r = await withConfig('[kubernetes.resources]\nmemory_limit = "8g"\n');
      assertClearError(r, { ...CONFIG, match: /kubernetes\.resources\.memory_limit.*Docker-style.*8Gi/ });
    });
    test('refuses an invalid namespace in the config', async () => {
      const r = await withConfig('[kubernetes]\nnamespace = "Bad_NS"\n');
      assertClearError(r, { ...CONFIG, match: /"Bad_NS" is not a valid namespace name/ });
    });
    test('reports every problem at once', async () => {
      const r = await withConfig('[kubernetes]\nnamespce = "x"\nimage_pull_policy = "Sometimes"\n');
      assertClearError(r, { ...CONFIG, match: /2 problems/ });
      assert.match(r.stderr, /namespce/);
      assert.match(r.stderr, /image_pull_policy/);
    });
    test('refuses a bad value from the environment, naming the variable', async () => {
      const r = await withConfig('', ['config', 'show'], { CLAUDERON_KUBERNETES_TIMEOUTS_POD_START: 'soon' });
      assertClearError(r, { ...CONFIG, match: /from CLAUDERON_KUBERNETES_TIMEOUTS_POD_START.*got "soon"/ });
    });
    test('the daemon refuses to start on an invalid config and leaves no socket', async () => {
      const { home, cleanup } = tempHome();
      try {
        writeFileSync(join(home, 'config.toml'), '[daemon]\nlog_levle = "debug"\n');
        const r = await runCli(['daemon'], { home, env: { CLAUDERON_DEBUG: '1' }, timeoutMs: 20_000 });
        assertClearError(r, { ...CONFIG, match: /daemon\.log_levle: unknown key/ });
        const r2 = await runCli(['list'], { home });
        assertClearError(r2, { exit: 4, match: /no clauderon daemon is answering/ });
      } finally {
        cleanup();
      }
    });
  });

  describe('cluster set-up', () => {
    const SETUP = { exit: 8 };
    test('refuses a namespace that does not exist, with the kubectl create namespace hint', async () => {
      await refused(
        create('--name', 'no-ns', '--namespace', 'nope'),
        {
          ...SETUP,
          code: 'CLAUDERON_E_NAMESPACE_MISSING',
          match: /namespace "nope" does not exist/,
          hint: /kubectl create namespace nope/,
        },
        { local: false },
      );
    });
    test('refuses a storage class that does not exist', async () => {
      await refused(
        create('--name', 'no-sc', '--storage-class', 'gold'),
        {
          ...SETUP,
          code: 'CLAUDERON_E_STORAGE_CLASS_MISSING',
          match: /storage class "gold" does not exist/,
          hint: /kubectl get storageclass/,
        },
        { local: false },
      );
    });
    test('refuses when the cluster denies create pods/exec, naming the permission', async () => {
      c.emu.store.create('namespaces', undefined, {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'locked' },
      });
      c.emu.faults.deny({ verb: 'create', resource: 'pods/exec', namespace: 'locked' });
      try {
        await refused(
          create('--name', 'no-exec', '--namespace', 'locked'),
          {
            ...SETUP,
            code: 'CLAUDERON_E_FORBIDDEN',
            match: /not allowed to create pods\/exec in namespace locked/,
            hint: /grant "create pods\/exec"/,
          },
          { local: false },
        );
      } finally {
        c.emu.faults.clear();
      }
    });

    describe('with a service account and a pull secret configured', () => {
      let strict: Awaited<ReturnType<typeof startDaemon>>;
      let strictHome: { home: string; cleanup: () => void };
      before(async () => {
        strictHome = tempHome();
        mkdirSync(join(strictHome.home, 'logs'));
        strict = await startDaemon({
          home: strictHome.home,
          env: {
            ...c.env,
            CLAUDERON_KUBERNETES_SERVICE_ACCOUNT: 'agent-sa',
            CLAUDERON_KUBERNETES_IMAGE_PULL_SECRETS: 'regcred',
          },
        });
      });
      after(async () => {
        await strict?.stop();
        strictHome?.cleanup();
      });
      const strictCli = (args: string[]) =>
        runCli(args, { home: strictHome.home, env: { ...c.env, CLAUDERON_DEBUG: '1' } });
      const strictRefused = async (args: string[], want: Parameters<typeof assertClearError>[1]) => {
        const before = c.emu.faults.requests.length;
        assertClearError(await strictCli(args), want);
        await assertNothingCreated();
        assert.deepEqual(worktrees(strictHome.home), []);
        assert.deepEqual(writesSince(before), [], 'no object written');
      };
      test('refuses a configured service account that does not exist', async () => {
        await strictRefused(create('--name', 'no-sa'), {
          ...SETUP,
          code: 'CLAUDERON_E_SERVICE_ACCOUNT_MISSING',
          match: /service account "agent-sa" does not exist in namespace clauderon/,
          hint: /create serviceaccount agent-sa/,
        });
      });
      test('refuses a configured image pull secret that does not exist', async () => {
        c.emu.store.create('namespaces', undefined, {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: 'has-sa' },
        });
        c.emu.store.create('serviceaccounts', 'has-sa', {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name: 'agent-sa', namespace: 'has-sa' },
        });
        await strictRefused(create('--name', 'no-secret', '--namespace', 'has-sa'), {
          ...SETUP,
          code: 'CLAUDERON_E_PULL_SECRET_MISSING',
          match: /image pull secret "regcred" does not exist in namespace has-sa/,
          hint: /create secret docker-registry regcred/,
        });
      });
    });

    test('refuses create when the daemon runs without the Kubernetes backend', async () => {
      const { home, cleanup } = tempHome();
      mkdirSync(join(home, 'logs'));
      const d = await startDaemon({ home });
      try {
        const before = c.emu.faults.requests.length;
        const r = await runCli(create('--name', 'disabled'), { home, env: { CLAUDERON_DEBUG: '1' } });
        assertClearError(r, {
          exit: 5,
          code: 'CLAUDERON_E_BACKEND_DISABLED',
          match: /backend/i,
          hint: /enable-kubernetes-backend/,
        });
        assert.deepEqual(worktrees(home), []);
        assert.equal(c.emu.faults.requests.length, before);
        await assertNothingCreated();
      } finally {
        await d.stop();
        cleanup();
      }
    });
  });

  describe('the daemon socket', { concurrency: 4 }, () => {
    // Making files of another user takes root (the CI container runs as root).
    const NOT_ROOT = process.getuid?.() === 0 ? false : 'needs root to chown files to uid 1000';
    const daemonIn = (home: string) =>
      runCli(['daemon'], { home, env: { CLAUDERON_DEBUG: '1' }, timeoutMs: 20_000 });
    test('the daemon refuses a CLAUDERON_HOME owned by another user', { skip: NOT_ROOT }, async () => {
      const { home, cleanup } = tempHome();
      try {
        chownSync(home, 1000, 1000);
        const r = await daemonIn(home);
        assertClearError(r, {
          exit: 4,
          code: 'CLAUDERON_E_DAEMON_SOCKET',
          match: /belongs to another user \(uid 1000\)/,
          hint: /CLAUDERON_HOME/,
        });
      } finally {
        cleanup();
      }
    });
    test('the daemon refuses a stale socket owned by another user and leaves it alone', {
      skip: NOT_ROOT,
    }, async () => {
      const { home, cleanup } = tempHome();
      try {
        const sock = join(home, 'clauderon.sock');
        // A listener that exits without closing leaves its socket file behind: a stale socket.
        await new Promise<void>((resolve, reject) => {
          const ch = spawn(process.execPath, [
            '-e',
            `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.exit(0))`,
          ]);
          ch.on('exit', () => resolve());
          ch.on('error', reject);
        });
        chownSync(sock, 1000, 1000);
        const r = await daemonIn(home);
        assertClearError(r, {
          exit: 4,
          code: 'CLAUDERON_E_DAEMON_SOCKET',
          match: /clauderon\.sock belongs to another user \(uid 1000\)/,
        });
        assert.ok(existsSync(sock), "the other user's socket is left in place");
      } finally {
        cleanup();
      }
    });
    test('the daemon refuses a socket path that is a regular file', async () => {
      const { home, cleanup } = tempHome();
      try {
        writeFileSync(join(home, 'clauderon.sock'), 'not a socket');
        const r = await daemonIn(home);
        assertClearError(r, {
          exit: 4,
          code: 'CLAUDERON_E_DAEMON_SOCKET',
          match: /exists and is not a socket/,
        });
      } finally {
        cleanup();
      }
    });
    test('a second daemon on the same home is refused and the first keeps serving', async () => {
      const r = await runCli(['daemon'], {
        home: c.home,
        env: { ...c.env, CLAUDERON_DEBUG: '1' },
        timeoutMs: 20_000,
      });
      assertClearError(r, {
        exit: 4,
        code: 'CLAUDERON_E_DAEMON_RUNNING',
        match: /already running/,
        hint: /CLAUDERON_HOME/,
      });
      const list = await cli(['list', '-o', 'json']);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(JSON.parse(list.stdout).sessions, []);
    });
    test('the CLI explains that no daemon is running', async () => {
      const { home, cleanup } = tempHome();
      try {
        const r = await runCli(['list'], { home, env: { CLAUDERON_DEBUG: '1' } });
        assertClearError(r, {
          exit: 4,
          code: 'CLAUDERON_E_DAEMON_UNREACHABLE',
          match: /no clauderon daemon is answering/,
          hint: /clauderon daemon/,
        });
      } finally {
        cleanup();
      }
    });
    test('the CLI of another user is told the socket is not theirs', { skip: NOT_ROOT }, async () => {
      const r = await new Promise<CliResult>((resolve, reject) => {
        const ch = spawn(process.execPath, [CLI, 'list'], {
          env: cliEnv(c.home, { ...c.env, CLAUDERON_DEBUG: '1', HOME: '/tmp' }),
          uid: 1000,
          gid: 1000,
          cwd: '/',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        ch.stdout.on('data', (d) => {
          stdout += d;
        });
        ch.stderr.on('data', (d) => {
          stderr += d;
        });
        ch.on('error', reject);
        ch.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
      assertClearError(r, {
        exit: 4,
        code: 'CLAUDERON_E_DAEMON_SOCKET',
        match: /permission denied/,
        hint: /another user/,
      });
    });
  });

  describe('API requests straight to the daemon socket', () => {
    const JSON_CT = { 'content-type': 'application/json' };
    const good = () => ({ backend: 'kubernetes', repo: repo.dir, prompt: 'p' });
    /** Sends a request and checks the refusal: status, error code, message, and no API request. */
    async function apiRefused(
      method: string,
      path: string,
      body: string | undefined,
      want: { status: number; code: string; match: RegExp; local?: boolean },
      headers: Record<string, string> = JSON_CT,
    ): Promise<void> {
      const before = c.emu.faults.requests.length;
      const r = await api(c.daemon.socket, method, `/v1${path}`, {
        ...(body !== undefined ? { body } : {}),
        headers: body === undefined ? {} : headers,
      });
      assert.equal(r.status, want.status, r.text);
      const e = apiError(r);
      assert.equal(e.code, want.code, r.text);
      assert.match(e.message ?? '', want.match);
      assert.doesNotMatch(r.text, /\bat .+:\d+:\d+|\[object Object\]|internal error/);
      await assertNothingCreated();
      if (want.local !== false) assert.deepEqual(c.emu.faults.requests.slice(before), [], 'no API request');
      else assert.deepEqual(writesSince(before), []);
    }
    const INPUT = 'CLAUDERON_E_INVALID_INPUT';

    test('malformed JSON is a 400 naming the JSON problem', async () => {
      await apiRefused('POST', '/sessions', '{"backend": "kubernetes", ', {
        status: 400,
        code: INPUT,
        match: /not valid JSON/,
      });
    });
    test('a missing body is a 400', async () => {
      await apiRefused('POST', '/sessions', undefined, {
        status: 400,
        code: INPUT,
        match: /body must be object/,
      });
    });
    test('an empty JSON body is a 400', async () => {
      await apiRefused('POST', '/sessions', '', { status: 400, code: INPUT, match: /cannot be empty/ });
    });
    test('a body that is not JSON is refused', async () => {
      await apiRefused(
        'POST',
        '/sessions',
        'hello',
        { status: 400, code: INPUT, match: /body must be object/ },
        {
          'content-type': 'text/plain',
        },
      );
    });
    test('an unknown field is refused, not ignored', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), name: 'unknown-field', bogus: 1 }), {
        status: 400,
        code: INPUT,
        match: /additional properties/,
      });
    });
    test('a number where the prompt string belongs is refused, not coerced', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), prompt: 5 }), {
        status: 400,
        code: INPUT,
        match: /prompt must be string/,
      });
    });
    test('a number as the session name is refused, not coerced', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), name: 123 }), {
        status: 400,
        code: INPUT,
        match: /name must be string/,
      });
    });
    test('a string where a boolean belongs is refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), includeUncommitted: 'yes' }), {
        status: 400,
        code: INPUT,
        match: /includeUncommitted must be boolean/,
      });
    });
    test('resources that are not an object are refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), resources: '8Gi' }), {
        status: 400,
        code: INPUT,
        match: /resources must be object/,
      });
    });
    test('an unknown backend is refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), backend: 'docker' }), {
        status: 400,
        code: INPUT,
        match: /backend/,
      });
    });
    test('a name over the schema limit is refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), name: 'a'.repeat(300) }), {
        status: 400,
        code: INPUT,
        match: /name must NOT have more than 253 characters/,
      });
    });
    test('a name over the session-name limit is refused with INVALID_NAME', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), name: 'a'.repeat(50) }), {
        status: 400,
        code: 'CLAUDERON_E_INVALID_NAME',
        match: /50 characters long; the limit is 40/,
      });
    });
    test('a prompt over 1 MB is refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), prompt: 'x'.repeat(1_000_001) }), {
        status: 400,
        code: INPUT,
        match: /prompt must NOT have more than 1000000 characters/,
      });
    });
    test('a body over the 4 MiB limit is refused', async () => {
      const body = Buffer.from(JSON.stringify({ ...good(), prompt: 'x'.repeat(5 * 1024 * 1024) }));
      const r = await rawApi(
        c.daemon.socket,
        `POST /v1/sessions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`,
        body,
      );
      assert.ok(r.status === 413 || r.status === 400, `status ${r.status}`);
      assert.equal(apiError(r).code, INPUT);
      assert.match(apiError(r).message ?? '', /too large/i);
      await assertNothingCreated();
    });
    test('a repository path over 4096 characters is refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), repo: `/${'r'.repeat(5000)}` }), {
        status: 400,
        code: INPUT,
        match: /repo must NOT have more than 4096 characters/,
      });
    });
    test('a relative repository path is refused', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), repo: 'relative/dir' }), {
        status: 400,
        code: 'CLAUDERON_E_REPO_INVALID',
        match: /"relative\/dir" is not absolute/,
      });
    });
    test('a prompt with control characters is refused as the CLI would', async () => {
      await apiRefused(
        'POST',
        '/sessions',
        JSON.stringify({ ...good(), name: 'ctl-prompt', prompt: 'a\x1b[2Jb' }),
        {
          status: 400,
          code: INPUT,
          match: /control characters/,
        },
      );
    });
    test('a Docker-style quantity is refused in the create stream', async () => {
      await apiRefused(
        'POST',
        '/sessions',
        JSON.stringify({ ...good(), name: 'api-qty', resources: { memoryLimit: '8g' } }),
        { status: 200, code: 'CLAUDERON_E_INVALID_QUANTITY', match: /Docker-style/ },
      );
    });
    test('a repository that does not exist is refused in the create stream', async () => {
      await apiRefused('POST', '/sessions', JSON.stringify({ ...good(), repo: join(scratch, 'gone') }), {
        status: 200,
        code: 'CLAUDERON_E_REPO_INVALID',
        match: /does not exist/,
      });
    });
    test('an invalid session name in the URL is a 400 (GET)', async () => {
      await apiRefused('GET', '/sessions/Bad_Name', undefined, {
        status: 400,
        code: 'CLAUDERON_E_INVALID_NAME',
        match: /"Bad_Name" is not valid/,
      });
    });
    test('an encoded path traversal as the session name is a 400 (DELETE)', async () => {
      await apiRefused('DELETE', '/sessions/..%2Fetc', undefined, {
        status: 400,
        code: 'CLAUDERON_E_INVALID_NAME',
        match: /"\.\.\/etc" is not valid/,
      });
    });
    test('an over-long session name in the URL is a 400 (pull)', async () => {
      await apiRefused('POST', `/sessions/${'p'.repeat(60)}/pull`, '{}', {
        status: 400,
        code: 'CLAUDERON_E_INVALID_NAME',
        match: /60 characters long/,
      });
    });
    test('an encoded control character in the URL name is a 400 (logs), shown escaped', async () => {
      await apiRefused('GET', '/sessions/a%1Bb/logs', undefined, {
        status: 400,
        code: 'CLAUDERON_E_INVALID_NAME',
        match: /"a\\x1bb" is not valid/,
      });
    });
    test('a session that does not exist is a 404', async () => {
      await apiRefused('GET', '/sessions/never-made', undefined, {
        status: 404,
        code: 'CLAUDERON_E_SESSION_NOT_FOUND',
        match: /"never-made" not found/,
        local: false,
      });
    });
    test('an unknown endpoint is a 404 naming it', async () => {
      await apiRefused('POST', '/sessions/x/explode', '{}', {
        status: 404,
        code: 'CLAUDERON_E_USAGE',
        match: /no such endpoint: POST \/v1\/sessions\/x\/explode/,
      });
    });
  });
});
