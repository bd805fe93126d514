import { AGENT_CONTAINER, type KubeClient } from '@clauderon/kube';
import type { AttachControl } from '@clauderon/protocol';
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';

const MAX_RECONNECTS = 5;

function agentState(p: V1Pod | undefined) {
  return p?.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state;
}

/**
 * Relays one attached client: its WebSocket on the daemon socket ↔ a tty exec of `tmux attach` in the pod.
 * A dead exec leg is re-opened (tmux redraws the screen) with a visible notice; when the agent's tmux
 * session ends, the client gets the agent's exit code.
 */
export async function bridgeTerminal(opts: {
  kube: KubeClient;
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  ws: WebSocket;
  size: { cols: number; rows: number };
  log: Logger;
  signal: AbortSignal;
}): Promise<void> {
  const { kube, ws, log } = opts;
  let size = opts.size;
  let detached = false;
  let current:
    | { write(d: Buffer | string): void; resize(c: number, r: number): void; close(): void }
    | undefined;
  const send = (c: AttachControl) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(c));
  };
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      current?.write(data);
      return;
    }
    try {
      const msg = JSON.parse(data.toString('utf8')) as AttachControl;
      if (msg.type === 'resize' && msg.cols > 0 && msg.rows > 0) {
        size = { cols: Math.min(msg.cols, 1000), rows: Math.min(msg.rows, 1000) };
        current?.resize(size.cols, size.rows);
      } else if (msg.type === 'detach') {
        detached = true;
        current?.close();
      }
    } catch {
      // Not a control message: ignore, as a terminal would ignore garbage.
    }
  });
  ws.once('close', () => current?.close());

  let reconnects = 0;
  while (!opts.signal.aborted && !detached && ws.readyState === WebSocket.OPEN) {
    const term = await kube.openTerminal({
      namespace: opts.namespace,
      pod: opts.pod,
      container: opts.container,
      command: opts.command,
      cols: size.cols,
      rows: size.rows,
      signal: opts.signal,
    });
    current = term;
    term.onData((b: Buffer) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(b, { binary: true });
    });
    const end = await term.closed;
    current = undefined;
    if (detached || opts.signal.aborted || ws.readyState !== WebSocket.OPEN) return;

    if (end.error || end.exitCode === null) {
      // The exec stream died (network, API server restart). Reattach if the agent is still there.
      const pod = await kube.getPod(opts.namespace, opts.pod, { signal: opts.signal }).catch(() => undefined);
      if (agentState(pod)?.running && reconnects < MAX_RECONNECTS) {
        reconnects++;
        log.warn({ err: end.error, reconnects }, 'terminal stream lost; reconnecting');
        send({
          type: 'notice',
          message: `connection to the agent lost; reconnecting (attempt ${reconnects})…`,
        });
        await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** reconnects, 4000)));
        continue;
      }
      send({
        type: 'notice',
        message: `connection to the agent lost: ${end.error?.message ?? 'stream closed'}`,
      });
      ws.close(1011, 'terminal lost');
      return;
    }
    reconnects = 0;

    // tmux attach ended by itself: the agent's session is over (or someone detached every client).
    let pod: V1Pod | undefined;
    try {
      pod = await kube.waitForPod(opts.namespace, opts.pod, (p) => agentState(p)?.running === undefined, {
        signal: AbortSignal.any([opts.signal, AbortSignal.timeout(15_000)]),
        timeoutMs: 15_000,
        failFast: false,
        what: 'the agent to exit',
      });
    } catch {
      pod = undefined;
    }
    const terminated = agentState(pod)?.terminated;
    if (terminated) {
      send({ type: 'notice', message: `the agent exited with code ${terminated.exitCode}` });
      send({ type: 'exit', code: terminated.exitCode });
      ws.close(1000);
      return;
    }
    send({ type: 'notice', message: 'the terminal was detached' });
    send({ type: 'exit', code: 0 });
    ws.close(1000);
    return;
  }
}
