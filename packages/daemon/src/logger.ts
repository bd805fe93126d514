import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/** Structured logs to $CLAUDERON_HOME/logs/daemon.log, and readable ones to stderr when it is a terminal. */
export function createLogger(logsDir: string, level: string, env: NodeJS.ProcessEnv): Logger {
  mkdirSync(logsDir, { recursive: true, mode: 0o700 });
  const streams: pino.StreamEntry[] = [
    {
      level: level as pino.Level,
      stream: pino.destination({ dest: join(logsDir, 'daemon.log'), mkdir: true, sync: true, mode: 0o600 }),
    },
  ];
  if (process.stderr.isTTY || env.CLAUDERON_LOG_STDERR === '1') {
    streams.push({
      level: level as pino.Level,
      stream: pretty({ destination: 2, colorize: process.stderr.isTTY && !env.NO_COLOR, sync: true }),
    });
  }
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: {
        paths: [
          'token',
          '*.token',
          'authorization',
          '*.authorization',
          'headers.authorization',
          'secret',
          '*.secret',
          'prompt',
          '*.prompt',
        ],
        censor: '[redacted]',
      },
    },
    pino.multistream(streams),
  );
}
