#!/usr/bin/env node
// A stand-in for Claude Code in demos and end-to-end tests (Claude Code cannot be installed here).
// It runs in the session's terminal, shows the prompt and the repository it was given, and answers
// each line typed. `commit <message>` commits the working tree; `exit <code>` ends with that code.
import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';

const prompt = process.argv.slice(2).join(' ');
const git = (...args) => {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return `(git ${args[0]} failed: ${String(e.stderr ?? e.message).trim()})`;
  }
};

process.stdout.write(`demo-agent ready in ${process.cwd()}\r\n`);
process.stdout.write(`task: ${prompt}\r\n`);
process.stdout.write(
  `branch: ${git('rev-parse', '--abbrev-ref', 'HEAD')}  head: ${git('log', '-1', '--format=%h %s')}\r\n`,
);
const dirty = git('status', '--porcelain');
process.stdout.write(`uncommitted changes: ${dirty === '' ? 0 : dirty.split('\n').length}\r\n`);

const rl = createInterface({
  input: process.stdin,
  output: process.stdout,
  prompt: 'agent> ',
  terminal: true,
});
rl.prompt();
rl.on('line', (line) => {
  const text = line.trim();
  const exit = /^exit(?:\s+(\d+))?$/.exec(text);
  if (exit) {
    process.stdout.write(`bye (${exit[1] ?? 0})\r\n`);
    process.exit(Number(exit[1] ?? 0));
  }
  const commit = /^commit\s+(.+)$/.exec(text);
  if (commit) {
    git('add', '-A');
    process.stdout.write(
      `${git('-c', 'user.name=demo-agent', '-c', 'user.email=agent@clauderon.invalid', 'commit', '-q', '-m', commit[1])}\r\n`,
    );
    process.stdout.write(`committed: ${git('log', '-1', '--format=%h %s')}\r\n`);
  } else if (text === 'size') {
    process.stdout.write(`terminal size: ${process.stdout.columns}x${process.stdout.rows}\r\n`);
  } else if (text !== '') {
    process.stdout.write(`agent heard: ${text}\r\n`);
  }
  rl.prompt();
});
rl.on('close', () => process.exit(0));
process.stdout.on('resize', () =>
  process.stdout.write(`\r\n[resized to ${process.stdout.columns}x${process.stdout.rows}]\r\n`),
);
