/**
 * One pod on the emulated node: its status model, the init/main container loops (pull, configure, run,
 * restart with back-off) and termination. Every transition is written with one `store.updateStatus`.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KObject, Store } from '../contract.js';
import { DEFAULT_PATH, expand, resolveEnv } from './env.js';
import { ContainerLog } from './logs.js';
import { runProbe } from './probes.js';
import {
  homeFor,
  type Launch,
  type Mount,
  mainSpawn,
  mountNamespacesAvailable,
  Proc,
  waitForSetup,
} from './process.js';
import { arr, type Json, now, num, obj, sleep, str } from './util.js';
import { type PreparedVolume, podDir, prepareVolumes } from './volumes.js';

export interface RuntimeDeps {
  store: Store;
  stateDir: string;
  nodeName: string;
  hostIP: string;
  failImagePattern: RegExp | undefined;
  /** Scales a simulated delay given in milliseconds of a real cluster. */
  delay: (ms: number) => number;
  log: (msg: string) => void;
  allocateIP: () => string;
  /** Binds the pod's unbound claims (a pod created with spec.nodeName skips the scheduler). */
  bindClaims: (pod: KObject) => void;
}

interface ContainerState {
  name: string;
  init: boolean;
  spec: Json;
  status: Json;
  /** Terminated and will not run again. */
  finished: boolean;
  everStarted: boolean;
  pulled: boolean;
  logs: ContainerLog[];
  proc: Proc | undefined;
  launch: Launch | undefined;
  /** Exit code to report instead of the real one (faults.exitContainer). */
  forcedExit: number | undefined;
  execs: Set<Proc>;
}

const MAX_BACKOFF_MS = 300_000;
const BASE_BACKOFF_MS = 10_000;

export class PodRuntime {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  pod: KObject;
  readonly containers = new Map<string, ContainerState>();
  private readonly abort = new AbortController();
  private podIP: string | undefined;
  private startTime: string | undefined;
  private initDone = false;
  private failed = false;
  private readonly conditionTimes = new Map<string, { status: string; time: string }>();
  private wakers = new Set<() => void>();
  private terminating: Promise<void> | undefined;
  volumes = new Map<string, PreparedVolume>();

  constructor(
    pod: KObject,
    private readonly deps: RuntimeDeps,
  ) {
    this.pod = pod;
    this.uid = pod.metadata.uid ?? pod.metadata.name;
    this.namespace = pod.metadata.namespace ?? 'default';
    this.name = pod.metadata.name;
    const spec = obj(pod.spec) ?? {};
    for (const [init, list] of [
      [true, arr(spec.initContainers)],
      [false, arr(spec.containers)],
    ] as const) {
      for (const c of list) {
        const name = str(c.name) ?? 'main';
        this.containers.set(name, {
          name,
          init,
          spec: c,
          status: {
            name,
            image: str(c.image) ?? '',
            imageID: '',
            ready: false,
            restartCount: 0,
            started: false,
            state: { waiting: { reason: 'PodInitializing' } },
          },
          finished: false,
          everStarted: false,
          pulled: false,
          logs: [],
          proc: undefined,
          launch: undefined,
          forcedExit: undefined,
          execs: new Set(),
        });
      }
    }
    const hasInit = [...this.containers.values()].some((c) => c.init);
    for (const c of this.containers.values()) {
      if (c.init || !hasInit) c.status.state = { waiting: { reason: 'ContainerCreating' } };
    }
    if (!hasInit) this.initDone = true;
  }

  get aborted(): boolean {
    return this.abort.signal.aborted;
  }

  private event(type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (this.aborted) return;
    this.deps.store.recordEvent(this.pod, type, reason, message, 'kubelet');
  }

  /** Rewrites ConfigMap/Secret volumes after a change, as the kubelet's periodic sync does. */
  refreshVolumes(): void {
    if (this.aborted || this.volumes.size === 0) return;
    const current = this.deps.store.get('pods', this.namespace, this.name);
    if (current) this.pod = current;
    const r = prepareVolumes(this.deps.store, this.deps.stateDir, this.pod);
    if ('volumes' in r) this.volumes = r.volumes;
  }

  /** Wakes loops waiting for a ConfigMap/Secret/PVC to appear. */
  wake(): void {
    const w = this.wakers;
    this.wakers = new Set();
    for (const f of w) f();
  }

  private waitWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.wakers.delete(done);
        resolve();
      };
      this.wakers.add(done);
      void sleep(ms, this.abort.signal).then(done);
    });
  }

  private condition(type: string, status: boolean, reason?: string, message?: string): Json {
    const s = status ? 'True' : 'False';
    const prev = this.conditionTimes.get(type);
    const time = prev && prev.status === s ? prev.time : now();
    this.conditionTimes.set(type, { status: s, time });
    const c: Json = { type, status: s, lastProbeTime: null, lastTransitionTime: time };
    if (reason) c.reason = reason;
    if (message) c.message = message;
    return c;
  }

  private phase(): string {
    const mains = [...this.containers.values()].filter((c) => !c.init);
    if (this.failed) return 'Failed';
    if (!this.initDone) return 'Pending';
    if (mains.length > 0 && mains.every((c) => c.finished)) {
      return mains.every((c) => num(obj(obj(c.status.state)?.terminated)?.exitCode) === 0)
        ? 'Succeeded'
        : 'Failed';
    }
    return mains.some((c) => c.everStarted) ? 'Running' : 'Pending';
  }

  /** Writes the whole status as the kubelet sees it now. */
  publish(): void {
    if (this.aborted) return;
    const phase = this.phase();
    const all = [...this.containers.values()];
    const inits = all.filter((c) => c.init);
    const mains = all.filter((c) => !c.init);
    const done = phase === 'Succeeded' || phase === 'Failed';
    const incompleteInit = inits.filter(
      (c) => !(c.finished && num(obj(obj(c.status.state)?.terminated)?.exitCode) === 0),
    );
    const unready = mains.filter((c) => c.status.ready !== true).map((c) => c.name);
    const conditions = [
      this.condition('PodReadyToStartContainers', !done),
      this.initDone
        ? this.condition('Initialized', true)
        : this.condition(
            'Initialized',
            false,
            'ContainersNotInitialized',
            `containers with incomplete status: [${incompleteInit.map((c) => c.name).join(' ')}]`,
          ),
      done
        ? this.condition('Ready', false, 'PodCompleted')
        : unready.length === 0
          ? this.condition('Ready', true)
          : this.condition(
              'Ready',
              false,
              'ContainersNotReady',
              `containers with unready status: [${unready.join(' ')}]`,
            ),
      done
        ? this.condition('ContainersReady', false, 'PodCompleted')
        : unready.length === 0
          ? this.condition('ContainersReady', true)
          : this.condition(
              'ContainersReady',
              false,
              'ContainersNotReady',
              `containers with unready status: [${unready.join(' ')}]`,
            ),
      this.condition('PodScheduled', true),
    ];
    this.deps.store.updateStatus('pods', this.namespace, this.name, (cur) => {
      const st: Json = { ...(obj(cur.status) ?? {}) };
      st.phase = phase;
      st.conditions = conditions;
      st.hostIP = this.deps.hostIP;
      st.hostIPs = [{ ip: this.deps.hostIP }];
      if (this.podIP) {
        st.podIP = this.podIP;
        st.podIPs = [{ ip: this.podIP }];
      }
      if (this.startTime) st.startTime = this.startTime;
      if (inits.length > 0) st.initContainerStatuses = inits.map((c) => structuredClone(c.status));
      st.containerStatuses = mains.map((c) => structuredClone(c.status));
      delete st.reason;
      delete st.message;
      return st;
    });
  }

  /** Runs the pod until its containers are done or it is terminated. */
  async run(): Promise<void> {
    try {
      await this.runInner();
    } catch (err) {
      this.deps.log(`pod ${this.namespace}/${this.name}: ${(err as Error).stack ?? err}`);
    }
  }

  private async runInner(): Promise<void> {
    const signal = this.abort.signal;
    await sleep(this.deps.delay(200), signal);
    if (this.aborted) return;
    this.podIP = this.deps.allocateIP();
    this.startTime = now();
    this.publish();
    // Volumes: a missing ConfigMap/Secret keeps the pod in ContainerCreating with FailedMount events.
    let lastError = '';
    for (;;) {
      if (this.aborted) return;
      const current = this.deps.store.get('pods', this.namespace, this.name);
      if (current) this.pod = current;
      this.deps.bindClaims(this.pod);
      const r = prepareVolumes(this.deps.store, this.deps.stateDir, this.pod);
      if ('volumes' in r) {
        this.volumes = r.volumes;
        break;
      }
      if (r.error !== lastError) this.event('Warning', 'FailedMount', r.error);
      lastError = r.error;
      await this.waitWake(Math.max(this.deps.delay(2000), 100));
    }
    for (const c of this.containers.values()) {
      if (!c.init) continue;
      const code = await this.runWithRestarts(c);
      if (code === undefined) return;
      if (code !== 0) {
        this.failed = true;
        this.publish();
        return;
      }
    }
    if (!this.initDone) {
      this.initDone = true;
      for (const c of this.containers.values()) {
        if (!c.init) c.status.state = { waiting: { reason: 'ContainerCreating' } };
      }
      this.publish();
    }
    await Promise.all(
      [...this.containers.values()].filter((c) => !c.init).map((c) => this.runWithRestarts(c)),
    );
  }

  private restartPolicy(): string {
    return str(obj(this.pod.spec)?.restartPolicy) ?? 'Always';
  }

  /** Runs a container, restarting it per restartPolicy; resolves with its final exit code (undefined if aborted). */
  private async runWithRestarts(c: ContainerState): Promise<number | undefined> {
    let restarts = 0;
    // Back-off steps; like the kubelet, a run that lasted 10 minutes (times timeScale) starts over at 10 s.
    let step = 0;
    for (;;) {
      const began = Date.now();
      const code = await this.runOnce(c, restarts);
      if (code === undefined || this.aborted) return undefined;
      if (Date.now() - began > Math.max(this.deps.delay(600_000), 1000)) step = 0;
      const policy = this.restartPolicy();
      const restart = c.init
        ? code !== 0 && policy !== 'Never'
        : policy === 'Always' || (policy === 'OnFailure' && code !== 0);
      if (!restart || (c.init && code === 0)) {
        c.finished = true;
        this.publish();
        return code;
      }
      const backoff = step === 0 ? 0 : Math.min(BASE_BACKOFF_MS * 2 ** (step - 1), MAX_BACKOFF_MS);
      c.status.lastState = { terminated: obj(c.status.state)?.terminated };
      if (backoff > 0) {
        c.status.state = {
          waiting: {
            reason: 'CrashLoopBackOff',
            message: `back-off ${backoff / 1000}s restarting failed container=${c.name} pod=${this.name}_${this.namespace}(${this.uid})`,
          },
        };
        this.publish();
        this.event(
          'Warning',
          'BackOff',
          `Back-off restarting failed container ${c.name} in pod ${this.name}_${this.namespace}(${this.uid})`,
        );
        // Even with timeScale 0 a crash loop must not spin: at least 50 ms between runs.
        await sleep(Math.max(this.deps.delay(backoff), 50), this.abort.signal);
      } else {
        this.publish();
      }
      if (this.aborted) return undefined;
      restarts++;
      step++;
    }
  }

  private async pull(c: ContainerState): Promise<boolean> {
    const image = str(c.spec.image) ?? '';
    if (c.pulled) {
      this.event('Normal', 'Pulled', `Container image "${image}" already present on machine`);
      return true;
    }
    let attempt = 0;
    for (;;) {
      if (this.aborted) return false;
      this.event('Normal', 'Pulling', `Pulling image "${image}"`);
      const ms = Math.round(this.deps.delay(500));
      await sleep(ms, this.abort.signal);
      if (this.aborted) return false;
      if (!this.deps.failImagePattern?.test(image)) {
        this.event(
          'Normal',
          'Pulled',
          `Successfully pulled image "${image}" in ${ms}ms (${ms}ms including waiting). Image size: 0 bytes.`,
        );
        c.pulled = true;
        return true;
      }
      const detail = `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": not found`;
      c.status.state = { waiting: { reason: 'ErrImagePull', message: detail } };
      this.event('Warning', 'Failed', `Failed to pull image "${image}": ${detail}`);
      this.event('Warning', 'Failed', 'Error: ErrImagePull');
      this.publish();
      await sleep(this.deps.delay(1000), this.abort.signal);
      if (this.aborted) return false;
      c.status.state = {
        waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` },
      };
      this.event('Normal', 'BackOff', `Back-off pulling image "${image}"`);
      this.event('Warning', 'Failed', 'Error: ImagePullBackOff');
      this.publish();
      // At least 50 ms, so that timeScale 0 does not spin.
      await sleep(
        Math.max(this.deps.delay(Math.min(BASE_BACKOFF_MS * 2 ** attempt, MAX_BACKOFF_MS)), 50),
        this.abort.signal,
      );
      attempt++;
    }
  }

  /** Builds the launch description of a container (env, user, mounts), or a config error. */
  buildLaunch(c: ContainerState): Launch | { error: string } {
    const current = this.deps.store.get('pods', this.namespace, this.name);
    if (current) this.pod = current;
    const r = resolveEnv(this.deps.store, this.pod, c.spec);
    if ('error' in r) return r;
    const podSpec = obj(this.pod.spec) ?? {};
    const podSec = obj(podSpec.securityContext) ?? {};
    const sec = obj(c.spec.securityContext) ?? {};
    const uid = num(sec.runAsUser) ?? num(podSec.runAsUser);
    const gid = num(sec.runAsGroup) ?? num(podSec.runAsGroup);
    const groups = [num(podSec.fsGroup), ...arr<number>(podSec.supplementalGroups)].filter(
      (g): g is number => typeof g === 'number',
    );
    const env: Record<string, string> = {
      PATH: DEFAULT_PATH,
      HOSTNAME: this.name,
      HOME: homeFor(uid),
      ...r.env,
    };
    if (c.spec.tty === true && !env.TERM) env.TERM = 'xterm';
    const command = arr<string>(c.spec.command).map((s) => expand(String(s), env));
    const args = arr<string>(c.spec.args).map((s) => expand(String(s), env));
    // No image to supply an entrypoint: a container without a command sleeps, which keeps it running.
    const argv = command.length > 0 ? [...command, ...args] : args.length > 0 ? args : ['sleep', 'infinity'];
    const mounts: Mount[] = [];
    for (const vm of arr(c.spec.volumeMounts)) {
      const vol = this.volumes.get(str(vm.name) ?? '');
      if (!vol) continue;
      const subPath = str(vm.subPath) ?? str(vm.subPathExpr);
      let source = vol.path;
      let file = false;
      if (subPath) {
        source = join(vol.path, expand(subPath, env));
        file = isFile(source);
        if (!file && !vol.readOnly) mkdirp(source);
      }
      mounts.push({
        source,
        target: str(vm.mountPath) ?? '/',
        readOnly: vol.readOnly || vm.readOnly === true,
        file,
      });
    }
    return { argv, env, workingDir: str(c.spec.workingDir), uid, gid, groups, mounts };
  }

  /** One run of a container: pull, configure, start, wait for its exit. */
  private async runOnce(c: ContainerState, restartCount: number): Promise<number | undefined> {
    if (!(await this.pull(c))) return undefined;
    let lastError = '';
    let launch: Launch | undefined;
    for (;;) {
      if (this.aborted) return undefined;
      const l = this.buildLaunch(c);
      if (!('error' in l)) {
        launch = l;
        break;
      }
      if (l.error !== lastError) {
        c.status.state = { waiting: { reason: 'CreateContainerConfigError', message: l.error } };
        this.event('Warning', 'Failed', `Error: ${l.error}`);
        this.publish();
      }
      lastError = l.error;
      await this.waitWake(Math.max(this.deps.delay(2000), 100));
    }
    const useNs = mountNamespacesAvailable();
    const log = new ContainerLog(
      join(podDir(this.deps.stateDir, this.uid), 'logs', c.name, `${restartCount}.log`),
    );
    c.logs.push(log);
    const tty = c.spec.tty === true;
    const sp = mainSpawn(launch, useNs);
    const proc = new Proc(sp, {
      env: launch.env,
      tty,
      stdin: c.spec.stdin === true,
      stdout: true,
      stderr: true,
      killGroupOnExit: true,
    });
    proc.on('output', (stream: 'stdout' | 'stderr', b: Buffer) => log.write(stream, b));
    c.forcedExit = undefined;
    c.proc = proc;
    // The container counts as started once its volumes are mounted (exec must see them).
    await waitForSetup(proc, sp);
    if (useNs) proc.holdNamespace();
    c.launch = launch;
    const probes = {
      startup: obj(c.spec.startupProbe),
      readiness: obj(c.spec.readinessProbe),
      liveness: obj(c.spec.livenessProbe),
    };
    const containerID = `containerd://${randomBytes(32).toString('hex')}`;
    const startedAt = now();
    const image = str(c.spec.image) ?? '';
    this.event('Normal', 'Created', `Created container ${c.name}`);
    this.event('Normal', 'Started', `Started container ${c.name}`);
    c.everStarted = true;
    c.status = {
      ...c.status,
      containerID,
      imageID: `${image.includes('/') ? '' : 'docker.io/library/'}${image.split('@')[0]}@sha256:${'0'.repeat(64)}`,
      restartCount,
      // With a startup probe the container is "started" only once it passes; with a readiness probe it is
      // ready only once that passes; otherwise running means both.
      started: !probes.startup,
      ready: !c.init && !probes.startup && !probes.readiness,
      state: { running: { startedAt } },
    };
    this.publish();
    if (!c.init && (probes.startup || probes.readiness || probes.liveness))
      void this.probe(c, proc, launch, probes);
    if (this.aborted) proc.kill('SIGKILL');
    const real = await proc.exited;
    log.close();
    for (const e of c.execs) e.kill('SIGKILL');
    const exitCode = c.forcedExit ?? real;
    c.proc = undefined;
    c.status = {
      ...c.status,
      ready: false,
      started: false,
      state: {
        terminated: {
          exitCode,
          reason: exitCode === 0 ? 'Completed' : 'Error',
          startedAt,
          finishedAt: now(),
          containerID,
        },
      },
    };
    if (this.aborted) return undefined;
    return exitCode;
  }

  /** Runs a container's probes while this run of it lasts, updating `started`/`ready` and restarting it. */
  private async probe(
    c: ContainerState,
    proc: Proc,
    launch: Launch,
    probes: { startup: Json | undefined; readiness: Json | undefined; liveness: Json | undefined },
  ): Promise<void> {
    const signal = this.abort.signal;
    const ctx = { launch, nsPid: mountNamespacesAvailable() ? proc.pid : undefined, container: c.spec };
    const alive = (): boolean => proc.running && !this.aborted && c.proc === proc;
    const period = (p: Json): number => Math.max(20, this.deps.delay((num(p.periodSeconds) ?? 10) * 1000));
    const initialDelay = (p: Json): number => this.deps.delay((num(p.initialDelaySeconds) ?? 0) * 1000);
    const unhealthy = (kind: string, output: string): void =>
      this.event('Warning', 'Unhealthy', `${kind} probe failed: ${output}`);
    const restart = (kind: string): void => {
      this.event('Normal', 'Killing', `Container ${c.name} failed ${kind} probe, will be restarted`);
      proc.kill('SIGTERM');
      const grace =
        num(probes[kind as 'startup' | 'liveness']?.terminationGracePeriodSeconds) ??
        num(obj(this.pod.spec)?.terminationGracePeriodSeconds) ??
        30;
      setTimeout(() => proc.kill('SIGKILL'), grace * 1000).unref();
    };
    try {
      if (probes.startup) {
        const p = probes.startup;
        await sleep(initialDelay(p), signal);
        let failures = 0;
        for (;;) {
          if (!alive()) return;
          const r = await runProbe(p, ctx);
          if (!alive()) return;
          if (r.ok) break;
          unhealthy('Startup', r.output);
          if (++failures >= (num(p.failureThreshold) ?? 3)) {
            restart('startup');
            return;
          }
          await sleep(period(p), signal);
        }
        c.status.started = true;
        if (!probes.readiness) c.status.ready = true;
        this.publish();
      }
      const readiness = async (p: Json): Promise<void> => {
        await sleep(initialDelay(p), signal);
        let ok = 0;
        let bad = 0;
        while (alive()) {
          const r = await runProbe(p, ctx);
          if (!alive()) return;
          if (r.ok) {
            bad = 0;
            if (!c.status.ready && ++ok >= (num(p.successThreshold) ?? 1)) {
              c.status.ready = true;
              this.publish();
            }
          } else {
            ok = 0;
            unhealthy('Readiness', r.output);
            if (c.status.ready && ++bad >= (num(p.failureThreshold) ?? 3)) {
              c.status.ready = false;
              this.publish();
            }
          }
          await sleep(period(p), signal);
        }
      };
      const liveness = async (p: Json): Promise<void> => {
        await sleep(initialDelay(p), signal);
        let bad = 0;
        while (alive()) {
          const r = await runProbe(p, ctx);
          if (!alive()) return;
          if (r.ok) bad = 0;
          else {
            unhealthy('Liveness', r.output);
            if (++bad >= (num(p.failureThreshold) ?? 3)) {
              restart('liveness');
              return;
            }
          }
          await sleep(period(p), signal);
        }
      };
      await Promise.all([
        probes.readiness ? readiness(probes.readiness) : undefined,
        probes.liveness ? liveness(probes.liveness) : undefined,
      ]);
    } catch (err) {
      this.deps.log(`pod ${this.namespace}/${this.name}: probe: ${(err as Error).stack ?? err}`);
    }
  }

  /** Stops every container (SIGTERM, SIGKILL after `graceSeconds`) and removes the pod's scratch state. */
  terminate(graceSeconds: number, announce: boolean): Promise<void> {
    this.terminating ??= this.terminateInner(graceSeconds, announce);
    return this.terminating;
  }

  private async terminateInner(graceSeconds: number, announce: boolean): Promise<void> {
    const running = [...this.containers.values()].filter((c) => c.proc?.running);
    // Processes started from here on are killed by runOnce as soon as it sees the abort.
    if (announce) for (const c of running) this.event('Normal', 'Killing', `Stopping container ${c.name}`);
    this.abort.abort();
    this.wake();
    const procs = running.map((c) => c.proc as Proc);
    for (const c of this.containers.values()) for (const e of c.execs) procs.push(e);
    for (const p of procs) p.kill('SIGTERM');
    const all = Promise.all(procs.map((p) => p.exited));
    const grace = Math.min(graceSeconds, this.graceLeft);
    if (grace > 0) {
      await Promise.race([
        all,
        new Promise<void>((r) => {
          this.graceEnd = r;
          this.graceTimer = setTimeout(r, grace * 1000);
        }),
      ]);
      clearTimeout(this.graceTimer);
    }
    for (const p of procs) p.kill('SIGKILL');
    await all;
    for (const c of this.containers.values()) for (const l of c.logs) l.close();
    rmSync(podDir(this.deps.stateDir, this.uid), { recursive: true, force: true });
  }

  private graceLeft = Number.POSITIVE_INFINITY;
  private graceEnd: (() => void) | undefined;
  private graceTimer: NodeJS.Timeout | undefined;

  /** A later delete may only shorten the grace period (0 kills now); a running countdown is cut short. */
  shortenGrace(seconds: number): void {
    if (seconds >= this.graceLeft) return;
    this.graceLeft = seconds;
    const end = this.graceEnd;
    if (!end) return;
    clearTimeout(this.graceTimer);
    if (seconds <= 0) end();
    else this.graceTimer = setTimeout(end, seconds * 1000);
  }

  /** faults.exitContainer: end the container's process, reporting `exitCode`. */
  forceExit(container: string, exitCode: number, signal?: NodeJS.Signals): boolean {
    const c = this.containers.get(container);
    if (!c?.proc?.running) return false;
    if (signal) {
      c.proc.kill(signal);
    } else {
      c.forcedExit = exitCode;
      c.proc.kill('SIGKILL');
    }
    return true;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function mkdirp(p: string): void {
  try {
    mkdirSync(p, { recursive: true, mode: 0o777 });
  } catch {
    // reported by the mount
  }
}
