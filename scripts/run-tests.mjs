// Runs every compiled test file with Node's own test runner and ends with the one summary line CI reads:
// `N passed, N failed`. Extra arguments narrow the run to files whose path contains one of them.
import { spawn } from 'node:child_process';
import { globSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const filters = process.argv.slice(2);
let files = [...globSync('packages/*/dist/**/*.test.js'), ...globSync('test/dist/**/*.test.js')].sort();
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'clauderon-tests-'));
const tap = join(dir, 'report.tap');
const concurrency = process.env.CLAUDERON_TEST_CONCURRENCY ?? '3';
const child = spawn(
  process.execPath,
  [
    '--enable-source-maps',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=300000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { stdio: 'inherit', env: { ...process.env, CLAUDERON_TEST: '1' } },
);
child.on('exit', (code, signal) => {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  try {
    const text = readFileSync(tap, 'utf8');
    passed = Number(/^# pass (\d+)/m.exec(text)?.[1] ?? 0);
    failed =
      Number(/^# fail (\d+)/m.exec(text)?.[1] ?? 0) + Number(/^# cancelled (\d+)/m.exec(text)?.[1] ?? 0);
    skipped = Number(/^# skipped (\d+)/m.exec(text)?.[1] ?? 0);
  } catch {
    failed = Math.max(failed, 1);
  }
  rmSync(dir, { recursive: true, force: true });
  if (code !== 0 && failed === 0) failed = 1;
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code ?? (signal ? 1 : 0));
});
