import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { ClauderonError } from '@clauderon/protocol';

/** Does something answer on this Unix socket? */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Makes the socket path ready to listen on: the directory exists with mode 0700 and is ours; a daemon
 * already answering is an error; a stale socket file (nothing answers) is removed.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new ClauderonError('DAEMON_SOCKET', `${dir} belongs to another user (uid ${st.uid})`, {
      hint: 'set CLAUDERON_HOME to a directory you own',
    });
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);

  let sock: ReturnType<typeof lstatSync> | undefined;
  try {
    sock = lstatSync(path);
  } catch {
    return;
  }
  if (uid !== undefined && sock.uid !== uid) {
    throw new ClauderonError('DAEMON_SOCKET', `${path} belongs to another user (uid ${sock.uid})`, {
      hint: 'remove it, or set CLAUDERON_HOME to a directory you own',
    });
  }
  if (!sock.isSocket()) {
    throw new ClauderonError('DAEMON_SOCKET', `${path} exists and is not a socket`, {
      hint: `remove ${path}`,
    });
  }
  if (await socketAnswers(path)) {
    throw new ClauderonError('DAEMON_RUNNING', `a clauderon daemon is already running on ${path}`, {
      hint: 'stop it first, or set CLAUDERON_HOME to run a second instance',
    });
  }
  unlinkSync(path);
}
