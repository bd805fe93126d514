// Generated repositories for the benchmarks: history written with `git fast-import` (fast, no working-tree
// churn), then checked out and made dirty (unstaged and staged edits, untracked files, a deletion).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execFileP, tempDir } from './lib.mjs';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'bench',
  GIT_AUTHOR_EMAIL: 'bench@clauderon.invalid',
  GIT_COMMITTER_NAME: 'bench',
  GIT_COMMITTER_EMAIL: 'bench@clauderon.invalid',
};
export const git = (dir, ...args) =>
  execFileP('git', ['-C', dir, ...args], { env: GIT_ENV, maxBuffer: 256 * 1024 * 1024 });

/** Base64 text in 76-column lines: compresses like real minified/generated text would not, i.e. barely. */
function content(bytes) {
  const raw = randomBytes(Math.ceil((bytes * 3) / 4))
    .toString('base64')
    .slice(0, bytes);
  return Buffer.from(raw.replace(/.{76}/g, '$&\n'));
}

function duBytes(dir) {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += duBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/**
 * A repository of `files` files (about `avgKiB` each) in 50 directories, with `commits` more commits that
 * each rewrite `perCommit` files, then dirty: `modified` unstaged edits, `staged` staged edits,
 * `untracked` new files and one deleted file. Returns its directory, sizes and the dirty paths.
 */
export async function generateRepo({
  files = 5000,
  avgKiB = 10,
  commits = 20,
  perCommit = 100,
  modified = 40,
  staged = 10,
  untracked = 20,
} = {}) {
  const dir = tempDir('clauderon-bench-repo-');
  await git(dir, 'init', '-q', '-b', 'main');
  const paths = Array.from(
    { length: files },
    (_, i) => `src/mod-${String(i % 50).padStart(2, '0')}/file-${String(i).padStart(5, '0')}.txt`,
  );
  const size = () => Math.round((avgKiB * 1024 * (0.2 + 1.6 * Math.random())) / 1) || 1;

  const fi = spawn('git', ['-C', dir, 'fast-import', '--quiet'], {
    env: GIT_ENV,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let err = '';
  fi.stdin.on('error', () => {}); // reported by the exit code below
  fi.stderr.on('data', (d) => {
    err += d;
  });
  const done = new Promise((resolve, reject) => {
    fi.on('error', reject);
    fi.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`git fast-import: ${code} ${err}`))));
  });
  const write = async (buf) => {
    if (!fi.stdin.write(buf)) await new Promise((r) => fi.stdin.once('drain', r));
  };
  let mark = 0;
  let time = 1_700_000_000;
  const commit = async (changes, message) => {
    const marks = [];
    for (const p of changes) {
      const data = content(size());
      mark++;
      await write(`blob\nmark :${mark}\ndata ${data.length}\n`);
      await write(data);
      await write('\n');
      marks.push([p, mark]);
    }
    time += 3600;
    const id = `bench <bench@clauderon.invalid> ${time} +0000`;
    let text = `commit refs/heads/main\nauthor ${id}\ncommitter ${id}\ndata ${Buffer.byteLength(message)}\n${message}\n`;
    for (const [p, m] of marks) text += `M 100644 :${m} ${p}\n`;
    await write(`${text}\n`);
  };
  await write('feature done\n');
  await commit(paths, 'initial import');
  for (let c = 1; c <= commits; c++) {
    const start = (c * 997) % files;
    const changes = Array.from({ length: perCommit }, (_, k) => paths[(start + k * 37) % files]);
    await commit([...new Set(changes)], `change ${c}`);
  }
  await write('done\n');
  fi.stdin.end();
  await done;
  await git(dir, 'reset', '--hard', '-q');

  // Uncommitted work: unstaged edits, staged edits, untracked files, one deletion; an ignored file too.
  const dirty = [];
  for (let i = 0; i < modified; i++) {
    const p = paths[(i * 101 + 7) % files];
    writeFileSync(join(dir, p), content(size()));
    dirty.push(p);
  }
  const stagedPaths = [];
  for (let i = 0; i < staged; i++) {
    const p = paths[(i * 211 + 13) % files];
    if (dirty.includes(p)) continue;
    writeFileSync(join(dir, p), content(size()));
    stagedPaths.push(p);
  }
  if (stagedPaths.length > 0) await git(dir, 'add', '--', ...stagedPaths);
  dirty.push(...stagedPaths);
  for (let i = 0; i < untracked; i++) {
    const p = `new/untracked-${i}.txt`;
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), content(size()));
    dirty.push(p);
  }
  const deleted = paths[files - 1];
  rmSync(join(dir, deleted));
  writeFileSync(join(dir, '.gitignore'), 'ignored.log\n');
  dirty.push('.gitignore');
  writeFileSync(join(dir, 'ignored.log'), 'ignored\n');

  const gitBytes = duBytes(join(dir, '.git'));
  const totalBytes = duBytes(dir);
  const commitCount = Number((await git(dir, 'rev-list', '--count', 'HEAD')).stdout.trim());
  return { dir, dirty, deleted: [deleted], files, commits: commitCount, gitBytes, totalBytes };
}
