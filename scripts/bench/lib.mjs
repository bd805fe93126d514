// Shared plumbing for the benchmark suite: processes it starts (and always stops), the emulator as the
// cluster, a daemon, the CLI with timestamped output, statistics and the result table.
import { execFile, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'packages/cli/dist/bin.js');
export const EMULATOR_BIN = join(ROOT, 'packages/kube-emulator/dist/bin.js');
/** The project's Node (the bench itself is run by it through npm's PATH). */
export const NODE = process.execPath;
export const NAMESPACE = 'clauderon';

export const execFileP = promisify(execFile);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();

// ---- everything the bench starts is registered here and torn down on exit, failure or signal ---------

const cleanups = [];
/** Registers a teardown step; returns a function that runs it early (and unregisters it). */
export function onCleanup(fn) {
  const entry = { fn, done: false };
  cleanups.push(entry);
  return async () => {
    if (entry.done) return;
    entry.done = true;
    await fn();
  };
}
let cleaning;
/** Runs every teardown step, newest first; concurrent calls share one run. */
export function cleanupAll() {
  cleaning ??= runCleanups().finally(() => {
    cleaning = undefined;
  });
  return cleaning;
}
async function runCleanups() {
  while (cleanups.length > 0) {
    const entry = cleanups.pop();
    if (entry.done) continue;
    entry.done = true;
    try {
      await entry.fn();
    } catch (e) {
      process.stderr.write(`bench: cleanup failed: ${e?.message ?? e}\n`);
    }
  }
}

export function tempDir(prefix, base = tmpdir()) {
  const dir = mkdtempSync(join(base, prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Environment for the CLI/daemon: nothing inherited from a real clauderon set-up. */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('CLAUDERON_') && k !== 'KUBECONFIG') env[k] = v;
  return { ...env, NO_COLOR: '1', ...extra };
}

function waitForLine(child, re, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start in ${timeoutMs} ms:\n${out.slice(-2000)}`));
    }, timeoutMs);
    const onData = (d) => {
      out += d;
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${out.slice(-2000)}`));
    });
  });
}

function stopChild(child, signal = 'SIGTERM', graceMs = 15_000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

/**
 * Keeps the tail of a child's output, registers its clean-up, and reports a death that was not asked for
 * (with the output) to `onDeath`.
 */
function superviseChild(child, what, onDeath, maxLog = 4_000_000) {
  let log = '';
  const keep = (d) => {
    log += d;
    if (log.length > maxLog) log = log.slice(-maxLog / 2);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let stopping = false;
  const stop = onCleanup(() => {
    stopping = true;
    return stopChild(child);
  });
  child.once('exit', (code, signal) => {
    if (!stopping) onDeath?.({ what, code, signal, log });
  });
  return { log: () => log, stop };
}

// ---- the emulator (a child process: its work does not share the bench's event loop) -------------------

export async function startEmulator({ timeScale = 0.1, onDeath } = {}) {
  const stateDir = tempDir('clauderon-bench-emu-');
  const kubeconfig = join(stateDir, 'kubeconfig');
  const child = spawn(
    NODE,
    [EMULATOR_BIN, '--state-dir', stateDir, '--kubeconfig', kubeconfig, '--time-scale', String(timeScale)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const { stop } = superviseChild(child, 'emulator', onDeath);
  const m = await waitForLine(child, /kube-emulator ready (\S+)/, 30_000, 'the emulator');
  const url = new URL(m[1]);
  const kc = JSON.parse(readFileSync(kubeconfig, 'utf8'));
  const ca = Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64');
  const token = kc.users[0].user.token;

  /** One API request; resolves to the parsed JSON body (throws on >= 400). */
  const api = (method, path, body, contentType = 'application/json') =>
    new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = httpsRequest(
        {
          host: url.hostname,
          port: url.port,
          method,
          path,
          ca,
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/json',
            ...(data ? { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => {
            if ((res.statusCode ?? 500) >= 400)
              reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
            else resolve(text ? JSON.parse(text) : undefined);
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });

  const kubeEnv = cleanEnv({ KUBECONFIG: kubeconfig, KUBECACHEDIR: join(stateDir, 'kubecache') });
  const emu = {
    url: url.href,
    kubeconfig,
    stateDir,
    child,
    api,
    kubeEnv,
    kubectl: (args, opts = {}) =>
      execFileP('kubectl', args, { env: kubeEnv, maxBuffer: 64 * 1024 * 1024, ...opts }),
    /** The emulator's request log (see packages/kube-emulator/README.md). */
    requests: () => api('GET', '/emulator/requests'),
    resetRequests: () => api('DELETE', '/emulator/requests'),
    stop,
  };
  await api('POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NAMESPACE },
  });
  return emu;
}

/** Every object clauderon labelled, as "resource/name" (for "nothing left behind" checks). */
export async function labelledObjects(emu) {
  const out = [];
  for (const r of ['pods', 'persistentvolumeclaims', 'configmaps', 'secrets']) {
    const list = await emu.api(
      'GET',
      `/api/v1/namespaces/${NAMESPACE}/${r}?labelSelector=${encodeURIComponent('app.kubernetes.io/managed-by=clauderon')}`,
    );
    for (const o of list.items) out.push(`${r}/${o.metadata.name}`);
  }
  return out;
}

// ---- the agent (pods run as uid 1000, and a pod's /tmp is an emptyDir: install it under /var/tmp) ------

export function installAgent() {
  const dir = mkdtempSync('/var/tmp/clauderon-bench-agent-');
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  copyFileSync(join(ROOT, 'scripts/demo-agent.mjs'), join(dir, 'demo-agent.mjs'));
  copyFileSync(join(dirname(fileURLToPath(import.meta.url)), 'agent.mjs'), join(dir, 'bench-agent.mjs'));
  for (const f of ['demo-agent.mjs', 'bench-agent.mjs']) chmodSync(join(dir, f), 0o755);
  return join(dir, 'bench-agent.mjs');
}

// ---- the daemon -------------------------------------------------------------------------------------------

export async function startDaemon({
  emu,
  agentPath,
  extraEnv = {},
  home = tempDir('clauderon-bench-home-'),
  onDeath,
}) {
  mkdirSync(join(home, 'logs'), { recursive: true });
  const env = {
    CLAUDERON_HOME: home,
    KUBECONFIG: emu.kubeconfig,
    CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND: '1',
    CLAUDERON_PROXY_LISTEN: '127.0.0.1:0',
    CLAUDERON_AGENT_COMMAND: `node,${agentPath},{prompt}`,
    CLAUDERON_KUBERNETES_TIMEOUTS_POD_START: '120s',
    CLAUDERON_KUBERNETES_TIMEOUTS_IMAGE_PULL: '60s',
    CLAUDERON_KUBERNETES_TIMEOUTS_SYNC: '600s',
    ...extraEnv,
  };
  const child = spawn(NODE, [CLI, 'daemon'], {
    env: cleanEnv({ ...env, CLAUDERON_LOG_STDERR: '1' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { log: daemonLog, stop } = superviseChild(child, 'daemon', onDeath);
  await waitForLine(child, /listening on/, 30_000, 'the daemon');
  const socket = join(home, 'clauderon.sock');
  return {
    home,
    env,
    child,
    pid: child.pid,
    socket,
    log: daemonLog,
    stop,
    /** VmRSS of the daemon process, in MiB. */
    rssMiB: () => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : Number.NaN;
    },
    /** GET on the daemon's socket API; resolves to {status, body}. */
    get: (path) =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ socketPath: socket, path, method: 'GET' }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode, body: text }));
        });
        req.on('error', reject);
        req.end();
      }),
    cli: (args, opts = {}) => runCli(args, { env, ...opts }),
  };
}

// ---- the CLI -----------------------------------------------------------------------------------------------

/**
 * Runs the CLI to completion. `lines` holds each stderr line with the time (performance.now(), ms) the
 * bench received it: the CLI writes progress to a pipe, which Node writes synchronously, so arrival times
 * track the daemon's progress events closely.
 */
export function runCli(args, { env, input = '', timeoutMs = 300_000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(NODE, [CLI, ...args], { env: cleanEnv(env), stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    let partial = '';
    const lines = [];
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      const t = now();
      stderr += d;
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop();
      for (const text of parts) lines.push({ t, text });
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, lines, t0, t1: now(), ms: now() - t0 });
    });
    child.stdin.end(input);
  });
}

/** Fails loudly with the CLI's own output. */
export function mustSucceed(r, what) {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr.slice(-3000)}`);
  return r;
}

// ---- statistics ----------------------------------------------------------------------------------------------

export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}
export const median = (values) => {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Runs async tasks with at most `limit` at a time; resolves to their results in order. */
export async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return out;
}

// ---- results ------------------------------------------------------------------------------------------------

/**
 * One figure of the report. kind 'ratio': value / baseline must be ≤ target (or ≥ target when `atLeast`);
 * 'abs': value itself against the target (≤, or ≥ with atLeast); 'delta': value − baseline ≤ target;
 * 'check': pass/fail; 'info': no target.
 */
export function figure(f) {
  const r = { ...f };
  if (f.kind === 'ratio' && Number.isFinite(f.value) && Number.isFinite(f.baseline) && f.baseline > 0) {
    r.ratio = f.value / f.baseline;
    r.met = f.atLeast ? r.ratio >= f.target : r.ratio <= f.target;
  } else if (f.kind === 'abs' && Number.isFinite(f.value)) {
    r.met = f.atLeast ? f.value >= f.target : f.value <= f.target;
  } else if (f.kind === 'delta' && Number.isFinite(f.value) && Number.isFinite(f.baseline)) {
    r.delta = f.value - f.baseline;
    r.met = r.delta <= f.target;
  } else if (f.kind === 'check') {
    r.met = f.ok === true;
  }
  return r;
}

function fmt(v, unit) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return 'n/a';
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)}${unit ? ` ${unit}` : ''}`;
}

export function renderTable(figures) {
  const rows = [['figure', 'value', 'baseline', 'ratio', 'target', 'result']];
  for (const f of figures) {
    const target =
      f.kind === 'ratio'
        ? `${f.atLeast ? '≥' : '≤'} ${f.target}×`
        : f.kind === 'abs'
          ? `${f.atLeast ? '≥' : '≤'} ${fmt(f.target, f.unit)}`
          : f.kind === 'delta'
            ? `≤ +${fmt(f.target, f.unit)}`
            : f.kind === 'check'
              ? (f.targetText ?? 'pass')
              : '';
    const ratio =
      f.ratio !== undefined
        ? `${f.ratio.toFixed(2)}×`
        : f.delta !== undefined
          ? `${f.delta >= 0 ? '+' : ''}${fmt(f.delta, f.unit)}`
          : '';
    const result = f.skipped
      ? 'not measured'
      : f.met === undefined
        ? f.kind === 'info'
          ? 'info'
          : 'n/a'
        : f.met
          ? 'MET'
          : 'MISSED';
    rows.push([
      f.name,
      f.valueText ?? fmt(f.value, f.unit),
      f.baselineText ??
        (f.baseline !== undefined
          ? `${fmt(f.baseline, f.unit)}${f.baselineName ? ` (${f.baselineName})` : ''}`
          : ''),
      ratio,
      target,
      result,
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => [...r[i]].length)));
  const line = (r) => `| ${r.map((c, i) => c + ' '.repeat(widths[i] - [...c].length)).join(' | ')} |`;
  return [
    line(rows[0]),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.slice(1).map(line),
  ].join('\n');
}
