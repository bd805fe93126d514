#!/usr/bin/env node
// Entry point. Kept tiny so `clauderon --version` starts as fast as Node itself; everything else is
// loaded only when needed. This file is the CLI's only caller of process.exit.
import { VERSION } from '@clauderon/protocol/version';

const argv = process.argv.slice(2);
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
} else if (major < 22 || (major === 22 && minor < 19)) {
  // Started by an old system Node: re-run under the project's own Node (the `node` npm package).
  const { reexecWithProjectNode } = await import('./runtime.js');
  process.exit(await reexecWithProjectNode(argv));
} else {
  const { main } = await import('./main.js');
  const code = await main(argv);
  // Writes to a pipe are asynchronous: exiting at once would cut large output (`list -o json | jq`).
  const flushed = (s: NodeJS.WriteStream) => new Promise<void>((resolve) => s.write('', () => resolve()));
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}
