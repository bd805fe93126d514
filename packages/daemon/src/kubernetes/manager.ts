import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { basename } from 'node:path';
import type { Writable } from 'node:stream';
import type { ClauderonPaths, Config } from '@clauderon/config';
import {
  AGENT_CONTAINER,
  ATTACH_COMMAND,
  CA_FILE_PATH,
  INIT_CONTAINER,
  type KubeClient,
  ownerRefTo,
  planCreate,
  repoDir,
  SYNC_MARKER_PATH,
  sessionObjectNames,
} from '@clauderon/kube';
import {
  ClauderonError,
  type CreateSessionRequest,
  Labels,
  managedSelector,
  type Session,
  type SessionSpec,
  suggestName,
  validateQuantity,
  validateSessionName,
} from '@clauderon/protocol';
import {
  applyPulledBundle,
  buildSnapshot,
  createWorktree,
  inspectRepo,
  podBundleScript,
  podReceiveScript,
  removeWorktree,
  sessionBranch,
  stashWorktreeChanges,
  unpulledCommits,
  worktreePath,
} from '@clauderon/workspace';
import { Log, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { DoctorCheck, Emit, SessionBackend } from '../backend.js';
import { KeyedMutex } from '../keyed-mutex.js';
import type { SessionStore, StoredSession } from '../store.js';
import { bridgeTerminal } from './attach.js';
import { sessionView, specFromObject } from './session-view.js';
import { Steps } from './steps.js';

/** What the proxy gives a session: env for its pod and the CA the pod must trust. */
export interface SessionProxy {
  /** Issues (or re-issues) the session's credential and returns the pod env carrying it. */
  issue(
    session: string,
  ): Promise<{ secretEnv: Record<string, string>; plainEnv: Record<string, string>; caBundlePem: string }>;
  revoke(session: string): Promise<void>;
  /** The CA certificate pods must trust (PEM, certificate only). */
  readonly caPem: string;
  /** How the daemon reaches the proxy, and how pods do. */
  readonly localUrl: string;
  readonly podUrl: string;
}

export interface ManagerDeps {
  config: Config;
  paths: ClauderonPaths;
  logger: Logger;
  store: SessionStore;
  /** The cluster client, created on first use (a bad kubeconfig must not stop the daemon from starting). */
  kube: () => KubeClient;
  proxy?: SessionProxy;
}

const agentRunning = (p: V1Pod) =>
  p.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state?.running !== undefined;
const initRunning = (p: V1Pod) =>
  p.status?.initContainerStatuses?.find((c) => c.name === INIT_CONTAINER)?.state?.running !== undefined;

/** The Kubernetes session backend: every step of a session's life, against the cluster as source of truth. */
export class KubernetesSessions implements SessionBackend {
  readonly #d: ManagerDeps;
  readonly #busy = new Set<string>();
  readonly #attached = new Map<string, number>();
  #preflightOk = new Map<string, number>();
  /** git worktree add/remove and fetches race inside git when run concurrently on one repository. */
  readonly #repoLock = new KeyedMutex();

  constructor(deps: ManagerDeps) {
    this.#d = deps;
  }

  get #config(): Config {
    return this.#d.config;
  }

  #log(name: string): Logger {
    return this.#d.logger.child({ session: name });
  }

  #lock(name: string): () => void {
    if (this.#busy.has(name)) {
      throw new ClauderonError('SESSION_BUSY', `session "${name}" is busy with another operation`, {
        hint: 'wait for it to finish',
      });
    }
    this.#busy.add(name);
    return () => this.#busy.delete(name);
  }

  // ---- create ---------------------------------------------------------------------------------------

  /** Validates everything that needs no cluster, and resolves the request into a complete spec. */
  async #resolveSpec(
    req: CreateSessionRequest,
    signal: AbortSignal,
  ): Promise<{ spec: SessionSpec; base?: string }> {
    const k = this.#config.kubernetes;
    const info = await inspectRepo(req.repo);
    signal.throwIfAborted();
    if (info.hasSubmodules) {
      this.#d.logger.warn(
        { repo: info.root },
        'repository has submodules; they are shipped as gitlinks only',
      );
    }
    // The prompt becomes one argument of the agent command in the pod: Linux refuses a single argument over
    // 128 KiB (MAX_ARG_STRLEN). Refuse it here, before anything is made, not when the pod is built.
    const argLimit = 128 * 1024;
    for (const a of this.#config.agent.command) {
      const bytes = Buffer.byteLength(a.replaceAll('{prompt}', req.prompt));
      if (bytes >= argLimit) {
        throw new ClauderonError(
          'INVALID_INPUT',
          `an argument of the agent command would be ${bytes} bytes; the limit is ${argLimit} bytes (128 KiB, Linux's limit for one argument), and it holds the prompt`,
          {
            hint: 'put a long prompt in a file in the repository and ask the agent to read it',
          },
        );
      }
    }
    const name = req.name ?? `${suggestName(info.name) || 'session'}-${randomBytes(2).toString('hex')}`;
    validateSessionName(name);
    const resources = {
      ...(k.resources.cpu_request ? { cpuRequest: k.resources.cpu_request } : {}),
      ...(k.resources.memory_request ? { memoryRequest: k.resources.memory_request } : {}),
      ...(k.resources.cpu_limit ? { cpuLimit: k.resources.cpu_limit } : {}),
      ...(k.resources.memory_limit ? { memoryLimit: k.resources.memory_limit } : {}),
      ...req.resources,
    };
    if (resources.cpuRequest) validateQuantity(resources.cpuRequest, 'cpu', '--cpu-request');
    if (resources.cpuLimit) validateQuantity(resources.cpuLimit, 'cpu', '--cpu-limit');
    if (resources.memoryRequest) validateQuantity(resources.memoryRequest, 'memory', '--memory-request');
    if (resources.memoryLimit) validateQuantity(resources.memoryLimit, 'memory', '--memory-limit');
    const storageSize = validateQuantity(req.storageSize ?? k.storage_size, 'storage', '--storage-size');
    const namespace = req.namespace ?? k.namespace;
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace) || namespace.length > 63) {
      throw new ClauderonError('INVALID_NAME', `invalid namespace "${namespace}"`);
    }
    const image = req.image ?? k.image;
    if (image.trim() === '' || /\s/.test(image))
      throw new ClauderonError('INVALID_INPUT', `invalid image "${image}"`);
    const repoName =
      basename(info.root)
        .replace(/[^A-Za-z0-9._-]/g, '-')
        .replace(/^\.+/, '') || 'repo';
    const storageClass = req.storageClass ?? (k.storage_class || undefined);
    const spec: SessionSpec = {
      name,
      backend: 'kubernetes',
      namespace,
      repo: info.root,
      repoName: ['.clauderon', '.home'].includes(repoName) ? `${repoName}-repo` : repoName,
      branch: sessionBranch(name),
      baseCommit: info.headCommit ?? '',
      prompt: req.prompt,
      image,
      pullPolicy: req.pullPolicy ?? k.image_pull_policy,
      resources,
      ...(storageClass ? { storageClass } : {}),
      storageSize,
      includeUncommitted: req.includeUncommitted !== false,
      createdAt: new Date().toISOString(),
    };
    return { spec, ...(req.base !== undefined ? { base: req.base } : {}) };
  }

  /** Preflight runs once per namespace every few minutes: its checks are many requests and rarely change. */
  async #preflight(kube: KubeClient, spec: SessionSpec, signal: AbortSignal): Promise<void> {
    const key = `${spec.namespace}|${spec.storageClass ?? ''}`;
    const at = this.#preflightOk.get(key);
    if (at !== undefined && Date.now() - at < 5 * 60_000) return;
    await kube.preflight(spec, this.#config, { signal });
    this.#preflightOk.set(key, Date.now());
  }

  async create(req: CreateSessionRequest, emit: Emit, signal: AbortSignal): Promise<Session> {
    const progress = (step: string, message: string, bytes?: { done: number; total: number }) =>
      emit({ type: 'progress', step, message, ...(bytes ? { bytes } : {}) });
    const { spec, base } = await this.#resolveSpec(req, signal);
    const log = this.#log(spec.name);
    const unlock = this.#lock(spec.name);
    const steps = new Steps(log);
    const names = sessionObjectNames(spec.name);
    const timeouts = this.#config.kubernetes.timeouts;
    try {
      progress('validate', `validated session ${spec.name} (repository ${spec.repo})`);
      if (this.#d.store.get(spec.name)) {
        throw new ClauderonError('SESSION_EXISTS', `session "${spec.name}" already exists`, {
          hint: `choose another --name, or delete it first: clauderon delete ${spec.name}`,
        });
      }
      const kube = this.#d.kube();
      await this.#preflight(kube, spec, signal);
      // No lookup of an existing pod here: creating the claim answers AlreadyExists (SESSION_EXISTS) for a
      // name in use, one API request fewer per create, and the undo list then holds nothing of the other one.
      progress('preflight', `cluster checks passed (namespace ${spec.namespace})`);

      // From here on everything is recorded, so a crashed daemon can roll it back on restart.
      await steps.run(
        'record',
        signal,
        () => this.#d.store.put({ spec, state: 'creating', updatedAt: '' }),
        () => this.#d.store.delete(spec.name),
      );
      const wt = await steps.run(
        'worktree',
        signal,
        () =>
          this.#repoLock.run(spec.repo, () =>
            createWorktree({
              repo: spec.repo,
              home: this.#d.paths.home,
              name: spec.name,
              ...(base !== undefined ? { base } : {}),
              includeUncommitted: spec.includeUncommitted,
              signal,
            }),
          ),
        () =>
          this.#repoLock.run(spec.repo, () =>
            removeWorktree({
              repo: spec.repo,
              home: this.#d.paths.home,
              name: spec.name,
              deleteBranch: 'always',
            }),
          ),
      );
      spec.baseCommit = wt.baseCommit;
      await this.#d.store.put({ spec, state: 'creating', updatedAt: '', worktree: wt.path });
      progress('worktree', `worktree ${wt.path} on branch ${wt.branch}`);

      const snapshot = await steps.run(
        'snapshot',
        signal,
        () => buildSnapshot({ worktree: wt.path, branch: wt.branch, signal }),
        (s) => s.cleanup(),
      );
      progress('snapshot', `snapshot ready: ${(snapshot.totalBytes / 1048576).toFixed(1)} MiB`);

      const proxyInputs = this.#d.proxy
        ? await steps.run(
            'proxy token',
            signal,
            () => this.#d.proxy!.issue(spec.name),
            () => this.#d.proxy!.revoke(spec.name),
          )
        : undefined;
      const agentCommand = this.#config.agent.command.map((a) => a.replaceAll('{prompt}', spec.prompt));
      const plan = planCreate(spec, this.#config, {
        agentCommand,
        plainEnv: proxyInputs?.plainEnv ?? {},
        ...(proxyInputs
          ? { proxy: { caBundlePem: proxyInputs.caBundlePem, env: proxyInputs.secretEnv } }
          : {}),
      });

      let pod: V1Pod | undefined;
      for (const obj of plan) {
        const created = await steps.run(
          obj.step,
          signal,
          () => kube.createPlanned(obj, { signal }),
          () =>
            kube.delete(
              obj.kind,
              spec.namespace,
              obj.name,
              obj.kind === 'Pod' ? { gracePeriodSeconds: 0 } : {},
            ),
        );
        if (obj.kind === 'Pod') pod = created as V1Pod;
        const label = { claim: 'workspace claim', ca: 'CA config map', secret: 'proxy secret', pod: 'pod' }[
          obj.step
        ];
        progress(obj.step, `created ${label} ${obj.name}`);
      }
      if (pod && proxyInputs) {
        const owner = ownerRefTo(pod);
        await Promise.all([
          kube.setOwner('ConfigMap', spec.namespace, names.caConfigMap, owner, { signal }),
          kube.setOwner('Secret', spec.namespace, names.proxySecret, owner, { signal }),
        ]);
      }

      // Watch the pod until the workspace container runs, reporting each transition once.
      const seen = new Set<string>();
      const once = (key: string, message: string) => {
        if (!seen.has(key)) {
          seen.add(key);
          progress('schedule', message);
        }
      };
      await kube.waitForPod(
        spec.namespace,
        names.pod,
        (p) => {
          if (p.spec?.nodeName) once('scheduled', `pod scheduled on ${p.spec.nodeName}`);
          const init = p.status?.initContainerStatuses?.find((c) => c.name === INIT_CONTAINER);
          if (init?.state?.waiting?.reason === 'ContainerCreating')
            once('pulling', `starting containers (image ${spec.image})`);
          if (init?.state?.running) once('running', 'workspace container running; claim bound');
          return initRunning(p) || agentRunning(p);
        },
        {
          signal,
          timeoutMs: timeouts.pod_start + timeouts.image_pull,
          timeoutKey: 'kubernetes.timeouts.pod_start',
          what: 'the workspace container to start',
        },
      );

      // Ship the snapshot over exec into the waiting init container; the marker lets it exit.
      const dir = repoDir(spec);
      const receive = podReceiveScript({ dir, branch: spec.branch });
      const wrapped = `sh -c "$1" receive && mkdir -p "$(dirname "$2")" && : > "$2"`;
      const syncSignal = AbortSignal.any([signal, AbortSignal.timeout(timeouts.sync)]);
      let lastReport = 0;
      const res = await kube
        .exec({
          namespace: spec.namespace,
          pod: names.pod,
          container: INIT_CONTAINER,
          command: ['sh', '-c', wrapped, 'clauderon-sync', receive, SYNC_MARKER_PATH],
          stdin: snapshot.open(),
          stdinSize: snapshot.totalBytes,
          onStdinProgress: (sent: number) => {
            const now = Date.now();
            if (now - lastReport > 200 || sent === snapshot.totalBytes) {
              lastReport = now;
              progress('sync', 'syncing workspace', { done: sent, total: snapshot.totalBytes });
            }
          },
          signal: syncSignal,
        })
        .catch((e: unknown) => {
          if (syncSignal.aborted && !signal.aborted) {
            throw new ClauderonError(
              'TIMEOUT',
              `the workspace sync took longer than ${timeouts.sync / 1000}s`,
              {
                hint: 'raise kubernetes.timeouts.sync in the config',
              },
            );
          }
          // A stream that broke mid-transfer is a failed sync (exit 11), not a refused API request.
          if (!signal.aborted && e instanceof ClauderonError && e.code === 'CLAUDERON_E_KUBE_API') {
            throw new ClauderonError('SYNC_FAILED', `the workspace sync failed: ${e.message}`, {
              hint: 'try again; if it keeps failing, check the connection to the cluster',
              ...(e.details ? { details: e.details } : {}),
              cause: e,
            });
          }
          throw e;
        });
      if (res.exitCode !== 0) {
        throw new ClauderonError(
          'SYNC_FAILED',
          `the workspace sync failed in the pod (exit ${res.exitCode}): ${res.stderr.toString('utf8').trim().slice(-2000)}`,
          {
            hint: 'check the agent image has sh, git, tar and head',
          },
        );
      }
      await snapshot.cleanup();
      progress('sync', `workspace synced: ${spec.branch} at ${snapshot.headCommit.slice(0, 12)}`);

      const running = await kube.waitForPod(spec.namespace, names.pod, agentRunning, {
        signal,
        timeoutMs: timeouts.command_start + timeouts.image_pull,
        timeoutKey: 'kubernetes.timeouts.command_start',
        what: 'the agent to start',
      });
      progress('start', 'agent started');
      await this.#d.store.put({ spec, state: 'ready', updatedAt: '', worktree: wt.path });
      steps.commit();
      // The pod the watch just delivered is current: no need to read it again.
      const session = sessionView(spec, running, {
        attachedClients: 0,
        podName: names.pod,
        localState: 'ready',
      });
      progress('ready', `session ${spec.name} is ready`);
      return session;
    } catch (e) {
      const failures = await steps.rollback();
      if (failures.length > 0)
        log.error({ failures }, 'create rollback left work undone; `clauderon gc` will find it');
      if (signal.aborted && !(e instanceof ClauderonError && e.code !== 'CLAUDERON_E_CANCELLED')) {
        throw new ClauderonError(
          'CANCELLED',
          `create of ${spec.name} was cancelled; everything it made was removed`,
        );
      }
      throw e;
    } finally {
      unlock();
    }
  }

  // ---- read -----------------------------------------------------------------------------------------

  async list(signal: AbortSignal): Promise<Session[]> {
    const kube = this.#d.kube();
    const namespaces = new Set([
      this.#config.kubernetes.namespace,
      ...this.#d.store.list().map((s) => s.spec.namespace),
    ]);
    const out = new Map<string, Session>();
    for (const ns of namespaces) {
      const objs = await kube.listManaged(ns, managedSelector, {
        signal,
        kinds: ['Pod', 'PersistentVolumeClaim'],
      });
      const pods = new Map(objs.pods.map((p) => [p.metadata?.labels?.[Labels.session] ?? '', p]));
      for (const obj of [...objs.pods, ...objs.claims]) {
        const spec = specFromObject(obj);
        if (!spec || out.has(spec.name)) continue;
        const local = this.#d.store.get(spec.name);
        out.set(
          spec.name,
          sessionView(spec, pods.get(spec.name), {
            attachedClients: this.#attached.get(spec.name) ?? 0,
            podName: sessionObjectNames(spec.name).pod,
            ...(local ? { localState: local.state } : {}),
          }),
        );
      }
    }
    // Sessions being created before their first object exists are known only locally.
    for (const s of this.#d.store.list()) {
      if (!out.has(s.spec.name) && s.state === 'creating') {
        out.set(
          s.spec.name,
          sessionView(s.spec, undefined, {
            attachedClients: 0,
            localState: 'creating',
            podName: sessionObjectNames(s.spec.name).pod,
          }),
        );
      }
    }
    return [...out.values()].sort(
      (a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name),
    );
  }

  /** Finds a session: the local store first, then the cluster (labels), so a lost store is no loss. */
  async #find(
    name: string,
    signal: AbortSignal,
  ): Promise<{ spec: SessionSpec; pod: V1Pod | undefined; local: StoredSession | undefined }> {
    const kube = this.#d.kube();
    const local = this.#d.store.get(name);
    const names = sessionObjectNames(name);
    const namespaces = local ? [local.spec.namespace] : [this.#config.kubernetes.namespace];
    for (const ns of namespaces) {
      const pod = await kube.getPod(ns, names.pod, { signal });
      const spec =
        (pod && specFromObject(pod)) ??
        local?.spec ??
        specFromObject((await kube.getClaim(ns, names.claim, { signal })) ?? {});
      if (spec) return { spec, pod, local };
    }
    throw new ClauderonError('SESSION_NOT_FOUND', `session "${name}" not found`, { hint: 'clauderon list' });
  }

  async get(name: string, signal: AbortSignal): Promise<Session> {
    const { spec, pod, local } = await this.#find(name, signal);
    return sessionView(spec, pod, {
      attachedClients: this.#attached.get(name) ?? 0,
      podName: sessionObjectNames(name).pod,
      ...(local ? { localState: local.state } : {}),
    });
  }

  async logs(
    name: string,
    opts: { follow: boolean; tail?: number },
    out: Writable,
    signal: AbortSignal,
  ): Promise<void> {
    const { spec, pod } = await this.#find(name, signal);
    if (!pod)
      throw new ClauderonError('POD_FAILED', `session "${name}" has no pod`, {
        hint: `clauderon delete ${name}`,
      });
    const container =
      agentRunning(pod) || pod.status?.containerStatuses?.[0]?.state?.terminated
        ? AGENT_CONTAINER
        : INIT_CONTAINER;
    const log = new Log(this.#d.kube().kubeConfig);
    await new Promise<void>((resolve, reject) => {
      out.once('close', resolve);
      out.once('finish', resolve);
      log
        .log(spec.namespace, pod.metadata!.name!, container, out, {
          follow: opts.follow,
          ...(opts.tail !== undefined ? { tailLines: opts.tail } : {}),
        })
        .then((ctrl) => {
          signal.addEventListener('abort', () => ctrl.abort(), { once: true });
        }, reject);
    });
  }

  // ---- attach ---------------------------------------------------------------------------------------

  async attach(name: string, ws: WebSocket, size: { cols: number; rows: number }): Promise<void> {
    const ac = new AbortController();
    ws.once('close', () => ac.abort());
    const { spec, pod } = await this.#find(name, ac.signal);
    if (!pod || !agentRunning(pod)) {
      const exit = pod?.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.state?.terminated;
      if (exit) {
        ws.send(
          JSON.stringify({ type: 'notice', message: `the agent already exited with code ${exit.exitCode}` }),
        );
        ws.send(JSON.stringify({ type: 'exit', code: exit.exitCode }));
        ws.close(1000);
        return;
      }
      throw new ClauderonError('POD_FAILED', `session "${name}" is not running`, {
        hint: `clauderon status ${name}`,
      });
    }
    this.#attached.set(name, (this.#attached.get(name) ?? 0) + 1);
    try {
      await bridgeTerminal({
        kube: this.#d.kube(),
        namespace: spec.namespace,
        pod: pod.metadata!.name!,
        container: AGENT_CONTAINER,
        command: [...ATTACH_COMMAND],
        ws,
        size,
        log: this.#log(name),
        signal: ac.signal,
      });
    } finally {
      const n = (this.#attached.get(name) ?? 1) - 1;
      if (n <= 0) this.#attached.delete(name);
      else this.#attached.set(name, n);
    }
  }

  // ---- pull -----------------------------------------------------------------------------------------

  async pull(name: string, opts: { uncommitted: boolean; force: boolean }, emit: Emit, signal: AbortSignal) {
    const { spec, pod } = await this.#find(name, signal);
    if (!pod || !agentRunning(pod)) {
      throw new ClauderonError(
        'PULL_FAILED',
        `session "${name}" is not running, so there is nothing to pull from`,
        {
          hint: `clauderon status ${name}`,
        },
      );
    }
    emit({ type: 'progress', step: 'pull', message: `fetching ${spec.branch} from the pod` });
    const local = this.#d.store.get(name);
    const haveCommit = local?.pulledCommit ?? (spec.baseCommit || undefined);
    const stream = await this.#d.kube().execStream({
      namespace: spec.namespace,
      pod: pod.metadata!.name!,
      container: AGENT_CONTAINER,
      command: [
        'sh',
        '-c',
        podBundleScript({
          dir: repoDir(spec),
          branch: spec.branch,
          includeUncommitted: opts.uncommitted,
          ...(haveCommit ? { haveCommit } : {}),
        }),
      ],
      signal,
    });
    const result = await this.#repoLock.run(spec.repo, async () => {
      // The session worktree is clauderon's mirror of the session; its own uncommitted state (the copy of
      // your changes shipped at create) is stashed, never discarded, so the branch can move.
      if (await stashWorktreeChanges({ home: this.#d.paths.home, name, signal })) {
        emit({
          type: 'progress',
          step: 'pull',
          message: `stashed the session worktree's uncommitted changes (git stash list)`,
        });
      }
      try {
        return await applyPulledBundle({
          repo: spec.repo,
          name,
          input: stream.stdout,
          ...(opts.force ? { force: true } : {}),
          signal,
        });
      } catch (e) {
        // A failing pod script shows up here as a short payload: its own message says what went wrong.
        const done = await stream.done.catch(() => undefined);
        if (done && done.exitCode !== 0) {
          throw new ClauderonError(
            'PULL_FAILED',
            `the pod could not bundle ${spec.branch} (exit ${done.exitCode}): ${done.stderr.toString('utf8').trim().slice(-1000)}`,
          );
        }
        throw e;
      }
    });
    const done = await stream.done;
    if (done.exitCode !== 0) {
      throw new ClauderonError(
        'PULL_FAILED',
        `the pod could not bundle ${spec.branch} (exit ${done.exitCode}): ${done.stderr.toString('utf8').trim().slice(-1000)}`,
      );
    }
    if (local) await this.#d.store.put({ ...local, pulledCommit: result.head });
    return result;
  }

  // ---- delete ---------------------------------------------------------------------------------------

  async delete(name: string, opts: { force: boolean }, emit: Emit, signal: AbortSignal): Promise<void> {
    const progress = (message: string) => emit({ type: 'progress', step: 'delete', message });
    const unlock = this.#lock(name);
    try {
      const kube = this.#d.kube();
      const local = this.#d.store.get(name);
      let spec: SessionSpec | undefined = local?.spec;
      let pod: V1Pod | undefined;
      try {
        const found = await this.#find(name, signal);
        spec = found.spec;
        pod = found.pod;
      } catch (e) {
        // Nothing in the cluster and nothing local: a second delete is a success (idempotent).
        if (!(e instanceof ClauderonError && e.code === 'CLAUDERON_E_SESSION_NOT_FOUND')) throw e;
      }
      if (!spec) {
        await this.#removeLocal(name, undefined);
        progress(`session ${name} is already gone`);
        return;
      }
      const names = sessionObjectNames(name);
      const ns = spec.namespace;
      if (!opts.force && pod && agentRunning(pod)) {
        const head = await kube
          .exec({
            namespace: ns,
            pod: names.pod,
            container: AGENT_CONTAINER,
            command: ['git', '-C', repoDir(spec), 'rev-parse', 'HEAD'],
            signal,
          })
          .then((r) => (r.exitCode === 0 ? r.stdout.toString('utf8').trim() : undefined))
          .catch(() => undefined);
        if (head && head !== spec.baseCommit) {
          const n = await unpulledCommits({ repo: spec.repo, name, podHead: head });
          if (n > 0) {
            throw new ClauderonError(
              'UNPULLED_COMMITS',
              `session "${name}" has ${n} commit(s) that were never pulled back`,
              {
                hint: `clauderon pull ${name}, or delete anyway with --force`,
              },
            );
          }
        }
      }
      if (local) await this.#d.store.put({ ...local, state: 'deleting' });
      progress(`deleting pod ${names.pod}`);
      await kube.deletePod(ns, names.pod, { signal });
      await kube.waitForGone('Pod', ns, names.pod, {
        signal,
        timeoutMs: this.#config.kubernetes.timeouts.delete,
        timeoutKey: 'kubernetes.timeouts.delete',
      });
      progress(`deleting workspace claim ${names.claim}, config map and secret`);
      await Promise.all([
        kube.deleteClaim(ns, names.claim, { signal }),
        kube.deleteConfigMap(ns, names.caConfigMap, { signal }),
        kube.deleteSecret(ns, names.proxySecret, { signal }),
      ]);
      await this.#d.proxy?.revoke(name);
      await kube.waitForGone('PersistentVolumeClaim', ns, names.claim, {
        signal,
        timeoutMs: this.#config.kubernetes.timeouts.delete,
        timeoutKey: 'kubernetes.timeouts.delete',
      });
      await this.#removeLocal(name, spec);
    } finally {
      unlock();
    }
  }

  async #removeLocal(name: string, spec: SessionSpec | undefined): Promise<void> {
    await this.#repoLock.run(spec?.repo ?? '', () =>
      removeWorktree({
        repo: spec?.repo ?? '',
        home: this.#d.paths.home,
        name,
        // Commits that were pulled back live on the branch: keep it then; a branch with nothing new goes.
        deleteBranch: 'if-merged',
      }),
    );
    await this.#d.store.delete(name);
  }

  // ---- restart, gc ----------------------------------------------------------------------------------

  /** Rolls back creates and finishes deletes that a crash interrupted; adopts everything else. */
  async start(signal: AbortSignal): Promise<void> {
    const interrupted = this.#d.store.list().filter((s) => s.state === 'creating' || s.state === 'deleting');
    for (const s of interrupted) {
      const log = this.#log(s.spec.name);
      log.warn({ state: s.state }, 'finishing an operation interrupted by a daemon restart');
      try {
        if (s.state === 'creating') await this.#rollbackCreate(s.spec, signal);
        else await this.delete(s.spec.name, { force: true }, () => undefined, signal);
      } catch (err) {
        log.error(
          { err },
          'could not finish the interrupted operation; `clauderon gc` will find what is left',
        );
      }
    }
    // Rebuild the local cache from cluster truth: sessions whose objects exist but are unknown locally.
    try {
      const kube = this.#d.kube();
      const objs = await kube.listManaged(this.#config.kubernetes.namespace, managedSelector, {
        signal,
        kinds: ['Pod'],
      });
      for (const pod of objs.pods) {
        const spec = specFromObject(pod);
        if (spec && !this.#d.store.get(spec.name)) {
          await this.#d.store.put({
            spec,
            state: 'ready',
            updatedAt: '',
            worktree: worktreePath(this.#d.paths.home, spec.name),
          });
          this.#log(spec.name).info('adopted a running session from the cluster');
        }
      }
    } catch (err) {
      this.#d.logger.warn({ err }, 'could not list sessions in the cluster at start');
    }
  }

  async #rollbackCreate(spec: SessionSpec, signal: AbortSignal): Promise<void> {
    const kube = this.#d.kube();
    const names = sessionObjectNames(spec.name);
    await kube.deletePod(spec.namespace, names.pod, { signal, gracePeriodSeconds: 0 });
    await kube.waitForGone('Pod', spec.namespace, names.pod, {
      signal,
      timeoutMs: this.#config.kubernetes.timeouts.delete,
      timeoutKey: 'kubernetes.timeouts.delete',
    });
    await Promise.all([
      kube.deleteClaim(spec.namespace, names.claim, { signal }),
      kube.deleteConfigMap(spec.namespace, names.caConfigMap, { signal }),
      kube.deleteSecret(spec.namespace, names.proxySecret, { signal }),
    ]);
    await this.#d.proxy?.revoke(spec.name);
    await this.#repoLock.run(spec.repo, () =>
      removeWorktree({ repo: spec.repo, home: this.#d.paths.home, name: spec.name, deleteBranch: 'always' }),
    );
    await this.#d.store.delete(spec.name);
  }

  async gc(
    opts: { remove: boolean },
    signal: AbortSignal,
  ): Promise<{ orphans: string[]; removed: string[] }> {
    const kube = this.#d.kube();
    const ns = this.#config.kubernetes.namespace;
    const known = new Set(this.#d.store.list().map((s) => s.spec.name));
    const objs = await kube.listManaged(ns, managedSelector, { signal });
    for (const p of objs.pods) {
      const s = p.metadata?.labels?.[Labels.session];
      if (s) known.add(s);
    }
    const orphans: Array<{ label: string; remove: () => Promise<unknown> }> = [];
    const consider = (
      kind: 'PersistentVolumeClaim' | 'ConfigMap' | 'Secret',
      list: Array<{ metadata?: { name?: string; labels?: Record<string, string> } }>,
    ) => {
      for (const o of list) {
        const s = o.metadata?.labels?.[Labels.session];
        const n = o.metadata?.name;
        if (n && (!s || !known.has(s)))
          orphans.push({
            label: `${kind}/${n} (namespace ${ns})`,
            remove: () => kube.delete(kind, ns, n, { signal }),
          });
      }
    };
    consider('PersistentVolumeClaim', objs.claims);
    consider('ConfigMap', objs.configMaps);
    consider('Secret', objs.secrets);
    if (existsSync(this.#d.paths.worktrees)) {
      for (const dir of readdirSync(this.#d.paths.worktrees)) {
        if (!known.has(dir)) {
          orphans.push({
            label: `worktree ${worktreePath(this.#d.paths.home, dir)}`,
            remove: () =>
              removeWorktree({ repo: '', home: this.#d.paths.home, name: dir, deleteBranch: 'never' }),
          });
        }
      }
    }
    const removed: string[] = [];
    if (opts.remove) {
      for (const o of orphans) {
        await o.remove();
        removed.push(o.label);
      }
    }
    return { orphans: orphans.map((o) => o.label), removed };
  }

  async proxyCa(): Promise<string> {
    if (!this.#d.proxy) {
      throw new ClauderonError('PROXY', 'the credential proxy is disabled', {
        hint: 'set [proxy] enabled = true',
      });
    }
    return this.#d.proxy.caPem;
  }

  async doctor(opts: { session?: string }, signal: AbortSignal): Promise<DoctorCheck[]> {
    const checks: DoctorCheck[] = [];
    const check = async (name: string, fn: () => Promise<string>) => {
      try {
        checks.push({ name, ok: true, detail: await fn() });
        return true;
      } catch (e) {
        const err = e as ClauderonError;
        checks.push({ name, ok: false, detail: err.message, ...(err.hint ? { hint: err.hint } : {}) });
        return false;
      }
    };
    let kube: KubeClient | undefined;
    const kubeOk = await check('kubeconfig', async () => {
      kube = this.#d.kube();
      const ctx = kube.kubeConfig.getCurrentContext();
      return `context ${ctx}, server ${kube.kubeConfig.getCurrentCluster()?.server ?? '?'}`;
    });
    if (kubeOk && kube) {
      const k = this.#config.kubernetes;
      const probe: SessionSpec = {
        name: 'doctor',
        backend: 'kubernetes',
        namespace: k.namespace,
        repo: '/',
        repoName: 'repo',
        branch: 'clauderon/doctor',
        baseCommit: '',
        prompt: '',
        image: k.image,
        pullPolicy: k.image_pull_policy,
        resources: {},
        ...(k.storage_class ? { storageClass: k.storage_class } : {}),
        storageSize: k.storage_size,
        includeUncommitted: false,
        createdAt: new Date().toISOString(),
      };
      await check('cluster', async () => {
        await kube!.preflight(probe, this.#config, { signal });
        return `namespace ${k.namespace} ready; permissions to create sessions granted`;
      });
    }
    const proxy = this.#d.proxy;
    if (!proxy) {
      checks.push({
        name: 'proxy',
        ok: true,
        detail: 'disabled by [proxy] enabled = false: pods get no credentials',
      });
    } else {
      await check('proxy', async () => {
        const res = await fetch(`${proxy.localUrl}/health`, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]),
        });
        if (!res.ok) throw new ClauderonError('PROXY', `the proxy answered ${res.status} on /health`);
        return `listening on ${proxy.localUrl}; pods use ${proxy.podUrl}`;
      });
    }
    if (opts.session !== undefined && kube && proxy) {
      const name = opts.session;
      const found = await this.#find(name, signal);
      const pod = found.pod;
      if (!pod || !agentRunning(pod)) {
        checks.push({
          name: `session ${name}`,
          ok: false,
          detail: 'the agent container is not running',
          hint: `clauderon status ${name}`,
        });
        return checks;
      }
      const inPod = (script: string) =>
        kube!.exec({
          namespace: found.spec.namespace,
          pod: pod.metadata!.name!,
          container: AGENT_CONTAINER,
          command: ['sh', '-c', script],
          signal,
        });
      await check(`session ${name}: CA`, async () => {
        const r = await inPod(`cat ${CA_FILE_PATH}`);
        if (r.exitCode !== 0) throw new ClauderonError('PROXY', `cannot read ${CA_FILE_PATH} in the pod`);
        const body = (p: string) => p.replace(/\s+/g, '');
        if (!body(r.stdout.toString('utf8')).includes(body(proxy.caPem))) {
          throw new ClauderonError(
            'PROXY',
            `${CA_FILE_PATH} in the pod does not hold this daemon's proxy CA`,
            {
              hint: 'the CA changed since the session was created: re-create the session',
            },
          );
        }
        return `${CA_FILE_PATH} holds the proxy CA`;
      });
      await check(`session ${name}: proxy reachable from the pod`, async () => {
        const r = await inPod(
          `curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{http_code}' "${proxy.podUrl}/health" 2>&1 || wget -q -T 5 -O /dev/null "${proxy.podUrl}/health" 2>&1`,
        );
        const out = r.stdout.toString('utf8').trim();
        if (r.exitCode !== 0 || (out !== '' && out !== '200')) {
          throw new ClauderonError(
            'PROXY',
            `the pod cannot reach the proxy at ${proxy.podUrl}: ${out || r.stderr.toString('utf8').trim()}`,
            {
              hint: 'set [proxy] pod_url to an address pods can reach (host gateway, NodePort…) — see docs/real-clusters.md',
            },
          );
        }
        return `${proxy.podUrl}/health answered from inside the pod`;
      });
      await check(`session ${name}: TLS through the proxy trusted`, async () => {
        const r = await inPod(
          `curl -sS -m 10 -o /dev/null -w '%{ssl_verify_result}' https://api.anthropic.com/ 2>/dev/null; echo " $?"`,
        );
        const [verify, code] = r.stdout.toString('utf8').trim().split(/\s+/);
        if (code === '60' || code === '35' || (verify !== undefined && verify !== '0')) {
          throw new ClauderonError(
            'PROXY',
            `TLS through the proxy is not trusted in the pod (curl exit ${code}, verify ${verify})`,
            {
              hint: 'check that SSL_CERT_FILE / CURL_CA_BUNDLE point at the mounted CA bundle',
            },
          );
        }
        return 'curl in the pod trusts the proxy CA';
      });
    }
    return checks;
  }

  async stop(): Promise<void> {}
}

export { CA_FILE_PATH };
