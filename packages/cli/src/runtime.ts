import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Finds node_modules/.bin/node above this package and re-runs the CLI with it. */
export async function reexecWithProjectNode(argv: string[]): Promise<number> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'node_modules', '.bin', 'node');
    if (existsSync(candidate)) {
      const child = spawn(candidate, [fileURLToPath(new URL('./bin.js', import.meta.url)), ...argv], {
        stdio: 'inherit',
      });
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => child.kill(s));
      return new Promise((resolve) =>
        child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 + (sig === 'SIGINT' ? 2 : 15) : 1))),
      );
    }
    dir = dirname(dir);
  }
  process.stderr.write(
    `error: clauderon needs Node >= 22.19 (this is ${process.version}); run \`npm ci\` in the clauderon checkout to install it\n`,
  );
  return 1;
}
