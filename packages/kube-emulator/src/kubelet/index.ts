/**
 * The emulator's kubelet: schedules pods onto its node, binds their claims, runs their containers as real
 * processes on this machine, and serves logs, exec and attach. See README.md for how and what it leaves out.
 */
import { rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type {
  KObject,
  Kubelet,
  KubeletFaults,
  KubeletOptions,
  LogRequest,
  StartKubelet,
  Store,
  StoreEvent,
  StreamRequest,
} from '../contract.js';
import { serveLog } from './logs.js';
import { PodRuntime } from './pod-runtime.js';
import { execSpawn, mountNamespacesAvailable, Proc } from './process.js';
import { Scheduler } from './scheduler.js';
import { StreamServer } from './streams.js';
import { num, obj, rejectUpgrade, sendStatus, str } from './util.js';
import { pvcDir } from './volumes.js';

export const NODE_NAME = 'emulator-node';
const HOST_IP = '127.0.0.1';

class EmulatedKubelet implements Kubelet {
  readonly nodeName = NODE_NAME;
  readonly faults: KubeletFaults;
  private readonly store: Store;
  private readonly runtimes = new Map<string, PodRuntime>();
  private readonly scheduler: Scheduler;
  private readonly streams = new StreamServer();
  private readonly unsubscribe: () => void;
  private readonly terminations = new Map<string, Promise<void>>();
  private ipCounter = 1;
  private stopped = false;

  constructor(private readonly opts: KubeletOptions) {
    this.store = opts.store;
    this.scheduler = new Scheduler(this.store, this.nodeName);
    const log = opts.log ?? (() => {});
    if (!mountNamespacesAvailable()) {
      log(
        'kubelet: mount namespaces unavailable (not root, no CAP_SYS_ADMIN, or unshare/nsenter/setpriv missing): containers run without them, volumes are not mounted at their mountPaths',
      );
    }
    this.faults = {
      exitContainer: (ns, pod, container, exitCode, signal) =>
        this.runtimeOf(ns, pod)?.forceExit(container, exitCode, signal) ?? false,
      killStreams: (ns, pod) => this.streams.killStreams(ns, pod),
    };
    this.unsubscribe = this.store.subscribe((e) => queueMicrotask(() => this.onEvent(e)));
    queueMicrotask(() => {
      for (const pvc of this.store.list('persistentvolumeclaims'))
        this.safely(() => this.scheduler.claimAdded(pvc));
      for (const pod of this.store.list('pods')) this.safely(() => this.syncPod(pod));
    });
  }

  private safely(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.opts.log?.(`kubelet: ${(err as Error).stack ?? err}`);
    }
  }

  private delay = (ms: number): number => ms * (this.opts.timeScale ?? 0.02);

  private allocateIP = (): string => {
    const n = this.ipCounter++;
    return `10.244.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`;
  };

  private runtimeOf(ns: string, name: string): PodRuntime | undefined {
    const pod = this.store.get('pods', ns, name);
    const uid = pod?.metadata.uid ?? name;
    return this.runtimes.get(uid);
  }

  private onEvent(e: StoreEvent): void {
    if (this.stopped) return;
    this.safely(() => {
      switch (e.resource) {
        case 'pods':
          if (e.type === 'DELETED') this.podGone(e.object);
          else this.syncPod(e.object);
          return;
        case 'persistentvolumeclaims':
          if (e.type === 'ADDED') {
            this.scheduler.claimAdded(e.object);
            this.retryPending();
          }
          if (e.type === 'DELETED') {
            rmSync(pvcDir(this.opts.stateDir, e.object.metadata.uid ?? e.object.metadata.name), {
              recursive: true,
              force: true,
            });
          }
          this.wakeAll();
          return;
        case 'configmaps':
        case 'secrets':
          this.wakeAll();
          if (e.type !== 'DELETED') {
            for (const rt of this.runtimes.values()) {
              if (rt.namespace === e.object.metadata.namespace) rt.refreshVolumes();
            }
          }
          return;
        default:
          return;
      }
    });
  }

  private wakeAll(): void {
    for (const rt of this.runtimes.values()) rt.wake();
  }

  private retryPending(): void {
    for (const pod of this.store.list('pods')) {
      if (!str(obj(pod.spec)?.nodeName) && !pod.metadata.deletionTimestamp) this.scheduler.schedule(pod);
    }
  }

  private syncPod(pod: KObject): void {
    const uid = pod.metadata.uid ?? pod.metadata.name;
    const ns = pod.metadata.namespace ?? 'default';
    const rt = this.runtimes.get(uid);
    if (pod.metadata.deletionTimestamp) {
      this.terminatePod(pod, rt);
      return;
    }
    const nodeName = str(obj(pod.spec)?.nodeName);
    if (!nodeName) {
      this.scheduler.schedule(pod);
      return;
    }
    if (nodeName !== this.nodeName) return;
    if (rt) {
      rt.pod = pod;
      return;
    }
    const phase = str(obj(pod.status)?.phase);
    if (phase === 'Succeeded' || phase === 'Failed') return; // finished before this kubelet started
    this.scheduler.bindClaimsFor(pod);
    const fresh = this.store.get('pods', ns, pod.metadata.name) ?? pod;
    const runtime = new PodRuntime(fresh, {
      store: this.store,
      stateDir: this.opts.stateDir,
      nodeName: this.nodeName,
      hostIP: HOST_IP,
      failImagePattern: this.opts.failImagePattern,
      delay: this.delay,
      log: this.opts.log ?? (() => {}),
      allocateIP: this.allocateIP,
      bindClaims: (p) => {
        this.scheduler.bindClaimsFor(p);
      },
    });
    this.runtimes.set(uid, runtime);
    void runtime.run();
  }

  /** A pod with a deletionTimestamp: stop its containers within the grace period, then remove it. */
  private terminatePod(pod: KObject, rt: PodRuntime | undefined): void {
    const uid = pod.metadata.uid ?? pod.metadata.name;
    const ns = pod.metadata.namespace ?? 'default';
    const deadline = Date.parse(pod.metadata.deletionTimestamp ?? '') || Date.now();
    const grace = num(pod.metadata.deletionGracePeriodSeconds) ?? Math.max(0, (deadline - Date.now()) / 1000);
    if (rt) {
      rt.shortenGrace(grace);
      if (this.terminations.has(uid)) return;
      const t = rt.terminate(grace, true).then(() => {
        this.runtimes.delete(uid);
        this.terminations.delete(uid);
        if (this.store.get('pods', ns, pod.metadata.name)?.metadata.uid === pod.metadata.uid) {
          this.store.remove('pods', ns, pod.metadata.name);
        }
      });
      this.terminations.set(uid, t);
      return;
    }
    if (this.terminations.has(uid)) return;
    this.store.remove('pods', ns, pod.metadata.name);
  }

  /** A pod removed from the store directly: kill at once. */
  private podGone(pod: KObject): void {
    const uid = pod.metadata.uid ?? pod.metadata.name;
    const rt = this.runtimes.get(uid);
    if (!rt) return;
    rt.shortenGrace(0);
    void rt.terminate(0, false).then(() => this.runtimes.delete(uid));
  }

  handleStream(
    kind: 'exec' | 'attach',
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    params: StreamRequest,
  ): void {
    if (!params.stdin && !params.stdout && !params.stderr) {
      rejectUpgrade(socket, 400, 'you must specify at least 1 of stdin, stdout, stderr');
      return;
    }
    const rt = this.runtimeOf(params.namespace, params.pod);
    const c = rt?.containers.get(params.container);
    const main = c?.proc;
    if (!rt || !c || !main?.running || !c.launch) {
      rejectUpgrade(socket, 400, `unable to upgrade connection: container not found ("${params.container}")`);
      return;
    }
    const launch = c.launch;
    this.streams.handle(kind, req, socket, head, params, () => {
      if (kind === 'attach') {
        return {
          namespace: params.namespace,
          pod: params.pod,
          proc: main,
          owned: false,
          stdinOnce: c.spec.stdinOnce === true,
        };
      }
      const env = { ...launch.env };
      if (params.tty && !env.TERM) env.TERM = 'xterm';
      const proc = new Proc(
        execSpawn(launch, params.command, mountNamespacesAvailable() ? main.pid : undefined),
        {
          env,
          tty: params.tty,
          stdin: params.stdin,
          stdout: params.stdout,
          stderr: params.stderr && !params.tty,
        },
      );
      c.execs.add(proc);
      void proc.exited.then(() => c.execs.delete(proc));
      return { namespace: params.namespace, pod: params.pod, proc, owned: true };
    });
  }

  handleLog(req: IncomingMessage, res: ServerResponse, params: LogRequest): void {
    const rt = this.runtimeOf(params.namespace, params.pod);
    const c = rt?.containers.get(params.container);
    if (!c || c.logs.length === 0) {
      const waiting = obj(obj(c?.status.state)?.waiting);
      const reason = str(waiting?.reason) ?? 'ContainerCreating';
      const detail =
        reason === 'ErrImagePull'
          ? "image can't be pulled"
          : reason === 'ImagePullBackOff'
            ? 'trying and failing to pull image'
            : reason;
      sendStatus(
        res,
        400,
        `container "${params.container}" in pod "${params.pod}" is waiting to start: ${detail}`,
      );
      return;
    }
    if (params.previous) {
      const prev = c.logs[c.logs.length - 2];
      if (!prev) {
        sendStatus(
          res,
          400,
          `previous terminated container "${params.container}" in pod "${params.pod}" not found`,
        );
        return;
      }
      serveLog(req, res, params, prev.file, undefined);
      return;
    }
    const cur = c.logs[c.logs.length - 1];
    if (!cur) return;
    serveLog(req, res, params, cur.file, cur.ended ? undefined : cur);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    this.streams.closeAll();
    await Promise.all([...this.runtimes.values()].map((rt) => rt.terminate(1, false)));
    await Promise.all([...this.terminations.values()]);
    this.runtimes.clear();
  }
}

export const startKubelet: StartKubelet = (opts: KubeletOptions): Kubelet => new EmulatedKubelet(opts);
