/**
 * Container probes (startup, readiness, liveness) as the kubelet runs them: exec probes run inside the
 * container like an exec; httpGet and tcpSocket probes connect to the port on this machine (containers share
 * the host network); grpc probes count as passing.
 */
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { execSpawn, type Launch, Proc } from './process.js';
import { arr, type Json, num, obj, str } from './util.js';

export interface ProbeResult {
  ok: boolean;
  output: string;
}

export interface ProbeContext {
  launch: Launch;
  /** The container's main process, whose mount namespace exec probes enter (undefined without namespaces). */
  nsPid: number | undefined;
  /** The container spec, for named ports. */
  container: Json;
}

function resolvePort(port: unknown, container: Json): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port === 'string') {
    if (/^\d+$/.test(port)) return Number(port);
    const named = arr(container.ports).find((p) => p.name === port);
    return num(named?.containerPort);
  }
  return undefined;
}

function execProbe(command: string[], ctx: ProbeContext, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const proc = new Proc(execSpawn(ctx.launch, command, ctx.nsPid), {
      env: ctx.launch.env,
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    let output = '';
    proc.on('output', (_s: string, b: Buffer) => {
      if (output.length < 10_240) output += b.toString();
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      output = `command ${JSON.stringify(command.join(' '))} timed out`;
    }, timeoutMs);
    void proc.exited.then((code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, output: output.trim() });
    });
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (r: ProbeResult): void => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(timeoutMs, () => done({ ok: false, output: `dial tcp ${host}:${port}: i/o timeout` }));
    s.on('connect', () => done({ ok: true, output: '' }));
    s.on('error', (e) => done({ ok: false, output: `dial tcp ${host}:${port}: ${e.message}` }));
  });
}

function httpProbe(get: Json, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const scheme = str(get.scheme) === 'HTTPS' ? 'https' : 'http';
    const host = str(get.host) ?? '127.0.0.1';
    const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.32' };
    for (const h of arr(get.httpHeaders))
      if (str(h.name)) headers[str(h.name) as string] = str(h.value) ?? '';
    const opts = {
      host,
      port,
      path: str(get.path) ?? '/',
      method: 'GET',
      headers,
      timeout: timeoutMs,
      rejectUnauthorized: false,
    };
    const req = (scheme === 'https' ? httpsRequest : request)(opts, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve({ ok: code >= 200 && code < 400, output: `HTTP probe failed with statuscode: ${code}` });
    });
    req.on('timeout', () => req.destroy(new Error('context deadline exceeded')));
    req.on('error', (e) =>
      resolve({
        ok: false,
        output: `Get "${scheme}://${host}:${port}${str(get.path) ?? '/'}": ${e.message}`,
      }),
    );
    req.end();
  });
}

/** Runs one probe once. */
export async function runProbe(probe: Json, ctx: ProbeContext): Promise<ProbeResult> {
  const timeoutMs = (num(probe.timeoutSeconds) ?? 1) * 1000;
  const exec = obj(probe.exec);
  if (exec) return execProbe(arr<string>(exec.command).map(String), ctx, timeoutMs);
  const tcp = obj(probe.tcpSocket);
  if (tcp) {
    const port = resolvePort(tcp.port, ctx.container);
    if (port === undefined) return { ok: false, output: `invalid port ${String(tcp.port)}` };
    return tcpProbe(str(tcp.host) ?? '127.0.0.1', port, timeoutMs);
  }
  const get = obj(probe.httpGet);
  if (get) {
    const port = resolvePort(get.port, ctx.container);
    if (port === undefined) return { ok: false, output: `invalid port ${String(get.port)}` };
    return httpProbe(get, port, timeoutMs);
  }
  return { ok: true, output: '' };
}
