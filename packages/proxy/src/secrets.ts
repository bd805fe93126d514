import { readFileSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ClauderonError } from '@clauderon/protocol';

/** Where a secret may come from: the first set environment variable, else the file under secrets/. */
export interface SecretRef {
  env?: readonly string[];
  file?: string;
}

/** Reads secrets on demand. Values are returned only to the code that sets them on upstream requests. */
export interface SecretSource {
  /** The secret, or undefined when neither the variables nor the file hold one. Throws when the file is unsafe. */
  get(ref: SecretRef): string | undefined;
  /** Describes where a secret would come from, for logs (names only, never values). */
  describe(ref: SecretRef): string;
}

function modeError(path: string, mode: number): ClauderonError {
  return new ClauderonError(
    'PROXY',
    `Secret file ${path} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}; secret files must be readable by their owner only (0600 or stricter).`,
    { hint: `Run: chmod 600 ${path}` },
  );
}

function checkName(file: string): void {
  if (file !== basename(file) || file === '.' || file === '..' || file === '') {
    throw new ClauderonError('PROXY', `Secret file name "${file}" must be a plain file name under secrets/.`);
  }
}

/**
 * The secret source of a clauderon home: environment variables from `env`, or files under `${home}/secrets/`.
 * Every file already in that directory is checked here, so an unsafe mode is reported at startup.
 */
export async function loadSecretSource(
  home: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<SecretSource> {
  const dir = join(home, 'secrets');
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  for (const name of names) {
    const path = join(dir, name);
    const st = await stat(path);
    if (st.isFile() && (st.mode & 0o077) !== 0) throw modeError(path, st.mode);
  }
  const fromFile = (file: string): string | undefined => {
    checkName(file);
    const path = join(dir, file);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      return undefined;
    }
    if ((st.mode & 0o077) !== 0) throw modeError(path, st.mode);
    const value = readFileSync(path, 'utf8').trim();
    return value === '' ? undefined : value;
  };
  return {
    get(ref) {
      for (const name of ref.env ?? []) {
        const v = env[name]?.trim();
        if (v) return v;
      }
      return ref.file === undefined ? undefined : fromFile(ref.file);
    },
    describe(ref) {
      const parts = [...(ref.env ?? []).map((e) => `$${e}`)];
      if (ref.file !== undefined) parts.push(join(dir, ref.file));
      return parts.join(' or ');
    },
  };
}
