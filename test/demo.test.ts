import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from './support/cli.js';

// The README's main job: `npm run demo` must work on a fresh machine with no cluster.
test('the demo creates, attaches to, pulls from and deletes a session, leaving nothing behind', async () => {
  const child = spawn(process.execPath, [join(ROOT, 'scripts/demo.mjs')], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 0, out.slice(-3000));
  assert.match(out, /agent heard: hello agent/);
  assert.match(out, /1 new commit\(s\) on clauderon\/demo/);
  assert.match(out, /nothing left behind/);
  assert.match(out, /Demo finished\./);
});
