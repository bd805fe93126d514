#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { start } from './index.js';

const { values } = parseArgs({
  options: {
    'state-dir': { type: 'string' },
    kubeconfig: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    token: { type: 'string' },
    'fail-image': { type: 'string' },
    'time-scale': { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
  },
});

if (!values['state-dir'] || !values.kubeconfig) {
  process.stderr.write(
    'usage: kube-emulator --state-dir DIR --kubeconfig FILE [--port N] [--host ADDR] [--token T] [--fail-image REGEX] [--time-scale X] [-v]\n',
  );
  process.exit(2);
}

// Signal handlers go in before anything is announced: a SIGTERM sent right after the ready line must stop
// the emulator cleanly, not kill it by the default action.
let emu: Awaited<ReturnType<typeof start>> | undefined;
let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  // A signal during start-up is acted on once start-up is done (see below).
  if (!emu) return;
  emu.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`kube-emulator: stop failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

emu = await start({
  stateDir: values['state-dir'],
  kubeconfigPath: values.kubeconfig,
  ...(values.port ? { port: Number(values.port) } : {}),
  ...(values.host ? { host: values.host } : {}),
  ...(values.token ? { token: values.token } : {}),
  ...(values['fail-image'] ? { failImagePattern: new RegExp(values['fail-image']) } : {}),
  ...(values['time-scale'] ? { timeScale: Number(values['time-scale']) } : {}),
  ...(values.verbose ? { log: (m: string) => process.stderr.write(`${m}\n`) } : {}),
});
process.stdout.write(`kube-emulator ready ${emu.url} kubeconfig=${emu.kubeconfigPath}\n`);

if (stopping) {
  stopping = false;
  shutdown();
}
