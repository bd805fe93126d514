/**
 * How a container process is launched on this machine: the host filesystem is the image, each container gets
 * a private mount namespace (`unshare --mount`) with its volumes bind-mounted at their mountPaths, and runs as
 * the pod's user (`setpriv`). Exec enters the same namespace with `nsenter --mount=/proc/<pid>/ns/mnt`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IPty } from '@lydell/node-pty';
import * as pty from '@lydell/node-pty';
import { exitCodeOf, killGroup, shq } from './util.js';

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
  /** The source is a file (a subPath into a ConfigMap key, say): the target is created as a file. */
  file: boolean;
}

export interface Launch {
  argv: string[];
  env: Record<string, string>;
  workingDir?: string | undefined;
  uid?: number | undefined;
  gid?: number | undefined;
  groups: number[];
  mounts: Mount[];
}

export interface Spawnable {
  file: string;
  args: string[];
  cwd: string;
  /** uid/gid for the spawn call itself (only used without namespaces). */
  uid?: number | undefined;
  gid?: number | undefined;
  /** While /proc/<pid>/cmdline still contains this, the mount script has not exec'd the command yet. */
  setupMarker?: string;
}

/** Resolves once the process has finished its mount setup (exec'd its command) or has exited. */
export async function waitForSetup(proc: Proc, sp: Spawnable): Promise<void> {
  const marker = sp.setupMarker;
  if (!marker || proc.pid === undefined) return;
  for (let i = 0; i < 4000 && proc.running; i++) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8');
    } catch {
      return;
    }
    if (cmdline.length > 0 && !cmdline.includes(marker)) return;
    await new Promise((r) => setTimeout(r, 3));
  }
}

/** The mount namespace of a process (`mnt:[inode]`), or undefined. */
export function mountNamespaceOf(pid: number | undefined): string | undefined {
  if (pid === undefined) return undefined;
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/**
 * Signals every process in a container's private mount namespace: the emulator's stand-in for a cgroup, so
 * processes that left the process group (a daemonising tmux server, say) still go with the container.
 */
export function killNamespace(ns: string | undefined, signal: NodeJS.Signals): void {
  if (!ns || ns === mountNamespaceOf(process.pid)) return;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (mountNamespaceOf(Number(entry)) !== ns) continue;
    try {
      process.kill(Number(entry), signal);
    } catch {
      // gone meanwhile
    }
  }
}

/** Root in an unprivileged container may lack CAP_SYS_ADMIN: try a bind mount in a throw-away namespace. */
function canMount(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'kubelet-probe-'));
  try {
    const r = spawnSync(
      '/usr/bin/unshare',
      ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', 'mount --bind "$1" "$1"', 'probe', dir],
      { stdio: 'ignore', timeout: 10_000 },
    );
    return r.status === 0;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let nsAvailable: boolean | undefined;

/** True when this process may create mount namespaces (root with unshare and nsenter present). */
export function mountNamespacesAvailable(): boolean {
  if (nsAvailable === undefined) {
    nsAvailable =
      process.getuid?.() === 0 &&
      existsSync('/usr/bin/unshare') &&
      existsSync('/usr/bin/nsenter') &&
      existsSync('/usr/bin/setpriv') &&
      canMount();
  }
  return nsAvailable;
}

function userSwitch(l: Launch): string {
  if (l.uid === undefined && l.gid === undefined && l.groups.length === 0) return '';
  const parts = ['setpriv', `--reuid=${l.uid ?? 0}`, `--regid=${l.gid ?? 0}`];
  parts.push(l.groups.length > 0 ? `--groups=${l.groups.join(',')}` : '--clear-groups');
  return `${parts.join(' ')} -- `;
}

function cdScript(wd: string | undefined): string {
  if (!wd) return 'cd / 2>/dev/null || true\n';
  return `mkdir -p ${shq(wd)} 2>/dev/null || true\ncd ${shq(wd)}\n`;
}

/** The launch of a container's main process. */
export function mainSpawn(l: Launch, useNs: boolean): Spawnable {
  if (!useNs) {
    const cwd = l.workingDir && existsSync(l.workingDir) ? l.workingDir : '/';
    return {
      file: l.argv[0] ?? 'true',
      args: l.argv.slice(1),
      cwd,
      uid: l.uid,
      gid: l.gid ?? (l.uid !== undefined ? 0 : undefined),
    };
  }
  // Sources are opened first and mounted through /proc/self/fd, because a mount (an emptyDir at /tmp, say)
  // can hide the host path of a later source (a state dir under /tmp). bash can hold any number of fds.
  const bash = existsSync('/bin/bash');
  const lines = ['set -e'];
  const sorted = [...l.mounts].sort((a, b) => a.target.split('/').length - b.target.split('/').length);
  const src = sorted.map((m, i) => {
    if (!bash) return shq(m.source);
    lines.push(`exec {s${i}}<${shq(m.source)}`);
    return `/proc/self/fd/$s${i}`;
  });
  sorted.forEach((m, i) => {
    const t = shq(m.target);
    if (m.file) lines.push(`mkdir -p "$(dirname ${t})"`, `[ -e ${t} ] || : > ${t}`);
    else lines.push(`mkdir -p ${t}`);
    lines.push(`mount -c --bind ${src[i]} ${t}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${t}`);
  });
  if (bash && sorted.length > 0) lines.push(`exec ${sorted.map((_m, i) => `{s${i}}<&-`).join(' ')}`);
  const script = `${lines.join('\n')}\n${cdScript(l.workingDir)}exec ${userSwitch(l)}"$@"\n`;
  return {
    file: '/usr/bin/unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '--',
      bash ? '/bin/bash' : '/bin/sh',
      '-c',
      script,
      'container',
      ...l.argv,
    ],
    cwd: '/',
    setupMarker: script,
  };
}

/** The launch of an exec'd command inside a running container (`nsPid` is its main process). */
export function execSpawn(l: Launch, argv: string[], nsPid: number | undefined): Spawnable {
  if (nsPid === undefined) {
    const cwd = l.workingDir && existsSync(l.workingDir) ? l.workingDir : '/';
    return {
      file: argv[0] ?? 'true',
      args: argv.slice(1),
      cwd,
      uid: l.uid,
      gid: l.gid ?? (l.uid !== undefined ? 0 : undefined),
    };
  }
  const wd = l.workingDir ? `cd ${shq(l.workingDir)} 2>/dev/null || cd /\n` : 'cd /\n';
  const script = `${wd}exec ${userSwitch(l)}"$@"\n`;
  return {
    file: '/usr/bin/nsenter',
    args: [`--mount=/proc/${nsPid}/ns/mnt`, '--', '/bin/sh', '-c', script, 'exec', ...argv],
    cwd: '/',
  };
}

/** HOME as a container runtime picks it: from /etc/passwd for the uid, else `/`. */
export function homeFor(uid: number | undefined): string {
  const u = uid ?? 0;
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (Number(f[2]) === u && f[5]) return f[5];
    }
  } catch {
    // no passwd file
  }
  return u === 0 ? '/root' : '/';
}

export interface ProcOptions {
  env: Record<string, string>;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  cols?: number;
  rows?: number;
  /** On exit of the leader, SIGKILL what is left of its process group (a container's cgroup going away). */
  killGroupOnExit?: boolean;
}

/** A running process (pipes or a pseudo-terminal) with the few operations exec, attach and logs need. */
export class Proc extends EventEmitter {
  readonly pid: number | undefined;
  readonly tty: boolean;
  readonly exited: Promise<number>;
  exitCode: number | undefined;
  /** The container's mount namespace, once set up: its processes are signalled with the leader. */
  namespace: string | undefined;
  /**
   * An open descriptor on that namespace. It keeps the namespace (and so its inode number) alive until the
   * final clean-up: otherwise a namespace freed when its last process exits could be reused by another
   * container's `unshare` before the clean-up scan, which would then signal that other container.
   */
  private nsFd: number | undefined;
  private child: ChildProcess | undefined;
  private term: IPty | undefined;
  private stdinEnded = false;

  constructor(sp: Spawnable, opts: ProcOptions) {
    super();
    this.setMaxListeners(0);
    this.tty = opts.tty;
    let resolveExit!: (code: number) => void;
    this.exited = new Promise((r) => {
      resolveExit = r;
    });
    const finish = (code: number): void => {
      if (this.exitCode !== undefined) return;
      this.exitCode = code;
      resolveExit(code);
      this.emit('exit', code);
    };
    if (opts.tty) {
      let term: IPty;
      try {
        term = pty.spawn(sp.file, sp.args, {
          name: 'xterm',
          cols: opts.cols ?? 80,
          rows: opts.rows ?? 24,
          cwd: sp.cwd,
          env: opts.env,
          encoding: null,
          ...(sp.uid !== undefined ? { uid: sp.uid } : {}),
          ...(sp.gid !== undefined ? { gid: sp.gid } : {}),
        });
      } catch (err) {
        this.pid = undefined;
        setImmediate(() => {
          this.emit('output', 'stderr', Buffer.from(`${(err as Error).message}\n`));
          finish(128);
        });
        return;
      }
      this.term = term;
      this.pid = term.pid;
      term.onData((d: string | Buffer) => {
        this.emit('output', 'stdout', typeof d === 'string' ? Buffer.from(d) : d);
      });
      term.onExit(({ exitCode, signal }) => {
        if (opts.killGroupOnExit) this.killAll('SIGKILL');
        this.releaseNamespace();
        finish(exitCodeOf(exitCode, signal ?? null));
      });
      return;
    }
    const child = spawn(sp.file, sp.args, {
      cwd: sp.cwd,
      env: opts.env,
      detached: true,
      stdio: [
        opts.stdin ? 'pipe' : 'ignore',
        opts.stdout ? 'pipe' : 'ignore',
        opts.stderr ? 'pipe' : 'ignore',
      ],
      ...(sp.uid !== undefined ? { uid: sp.uid } : {}),
      ...(sp.gid !== undefined ? { gid: sp.gid } : {}),
    });
    this.child = child;
    this.pid = child.pid;
    child.stdin?.on('error', () => {});
    child.stdin?.on('drain', () => this.emit('drain'));
    child.stdout?.on('data', (b: Buffer) => this.emit('output', 'stdout', b));
    child.stderr?.on('data', (b: Buffer) => this.emit('output', 'stderr', b));
    child.on('error', (err) => {
      this.emit('output', 'stderr', Buffer.from(`${err.message}\n`));
      finish(128);
    });
    child.on('exit', () => {
      if (opts.killGroupOnExit) this.killAll('SIGKILL');
      this.releaseNamespace();
    });
    child.on('close', (code, signal) => finish(exitCodeOf(code, signal)));
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Writes to stdin; false means "wait for 'drain'". */
  write(data: Buffer): boolean {
    if (this.stdinEnded) return true;
    if (this.term) {
      this.term.write(data as unknown as string);
      return true;
    }
    const s = this.child?.stdin;
    if (!s || s.destroyed) return true;
    return s.write(data);
  }

  endStdin(): void {
    if (this.stdinEnded) return;
    if (this.term) {
      // A terminal has no EOF of its own: send the EOF character, as a terminal user would.
      this.term.write('\x04');
      return;
    }
    this.stdinEnded = true;
    this.child?.stdin?.end();
  }

  resize(cols: number, rows: number): void {
    if (!this.term || !this.running) return;
    try {
      this.term.resize(Math.max(1, cols), Math.max(1, rows));
    } catch {
      // exited meanwhile
    }
  }

  pauseOutput(): void {
    if (this.term) this.term.pause();
    else {
      this.child?.stdout?.pause();
      this.child?.stderr?.pause();
    }
  }

  resumeOutput(): void {
    if (this.term) this.term.resume();
    else {
      this.child?.stdout?.resume();
      this.child?.stderr?.resume();
    }
  }

  /** Records (and holds a reference to) the mount namespace the process runs in. */
  holdNamespace(): void {
    if (!this.running || this.pid === undefined) return;
    const ns = mountNamespaceOf(this.pid);
    if (!ns) return;
    let fd: number;
    try {
      fd = openSync(`/proc/${this.pid}/ns/mnt`, 'r');
    } catch {
      return;
    }
    // The process may have exited between the two reads: only keep a reference to the namespace we saw.
    let held: string | undefined;
    try {
      held = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      held = undefined;
    }
    if (held !== ns) {
      closeSync(fd);
      return;
    }
    this.namespace = ns;
    this.nsFd = fd;
  }

  private releaseNamespace(): void {
    if (this.nsFd !== undefined) {
      try {
        closeSync(this.nsFd);
      } catch {
        // already closed
      }
      this.nsFd = undefined;
    }
  }

  /** Signals the process group (and, for a container, everything in its mount namespace). */
  kill(signal: NodeJS.Signals): void {
    if (this.running) this.killAll(signal);
  }

  private killAll(signal: NodeJS.Signals): void {
    killGroup(this.pid, signal);
    killNamespace(this.namespace, signal);
  }
}
