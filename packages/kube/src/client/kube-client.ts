import type { Config } from '@clauderon/config';
import { ClauderonError, Labels, type SessionSpec } from '@clauderon/protocol';
import {
  AuthorizationV1Api,
  type ConfigurationOptions,
  CoreV1Api,
  type CoreV1Event,
  type KubeConfig,
  Observable,
  type ObservableMiddleware,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  StorageV1Api,
  setHeaderOptions,
  type V1ConfigMap,
  type V1OwnerReference,
  type V1PersistentVolumeClaim,
  type V1Pod,
  type V1Secret,
} from '@kubernetes/client-node';
import type { PlannedObject } from '../builders/plan.js';
import { isAlreadyExists, isNotFound, mapKubeError } from './errors.js';
import { type ExecOptions, type ExecResult, type ExecStream, exec, execStream } from './exec.js';
import { preflight } from './preflight.js';
import { openTerminal, type Terminal, type TerminalOptions } from './terminal.js';
import { sleep } from './util.js';
import { type PodEvent, type WaitForPodOptions, waitForPod, watchPod } from './watch.js';

/** The kinds of object a session owns. */
export type SessionKind = 'Pod' | 'PersistentVolumeClaim' | 'ConfigMap' | 'Secret';
type ObjectOf<K extends SessionKind> = K extends 'Pod'
  ? V1Pod
  : K extends 'PersistentVolumeClaim'
    ? V1PersistentVolumeClaim
    : K extends 'ConfigMap'
      ? V1ConfigMap
      : V1Secret;

/** Everything with clauderon's labels in one namespace, by kind. */
export interface ManagedObjects {
  pods: V1Pod[];
  claims: V1PersistentVolumeClaim[];
  configMaps: V1ConfigMap[];
  secrets: V1Secret[];
}

export interface KubeClientOptions {
  /** client-node's watch inactivity timeout (30 s in client-node); lowered by tests. */
  watchInactivityMs?: number;
  /** Per-request deadline for plain REST calls (default 30 s). */
  requestTimeoutMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

const LIST_PAGE = 500;

/**
 * The thin adapter between clauderon and client-node: every Kubernetes call goes through here, errors come
 * out as ClauderonErrors, and long or streaming operations take an AbortSignal. No module state: build one
 * per KubeConfig.
 */
export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly core: CoreV1Api;
  readonly storage: StorageV1Api;
  readonly authz: AuthorizationV1Api;
  readonly watchInactivityMs: number | undefined;
  private readonly requestTimeoutMs: number;

  constructor(kubeConfig: KubeConfig, opts: KubeClientOptions = {}) {
    this.kubeConfig = kubeConfig;
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.storage = kubeConfig.makeApiClient(StorageV1Api);
    this.authz = kubeConfig.makeApiClient(AuthorizationV1Api);
    this.watchInactivityMs = opts.watchInactivityMs;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  /**
   * Request options carrying an abort signal (and our per-request deadline) into client-node's fetch.
   * client-node accepts per-call middleware; ours only sets the signal on the request context.
   */
  requestOptions(signal?: AbortSignal, extra?: ConfigurationOptions): ConfigurationOptions {
    const deadline = AbortSignal.timeout(this.requestTimeoutMs);
    const s = signal ? AbortSignal.any([signal, deadline]) : deadline;
    const mw: ObservableMiddleware = {
      pre: (ctx: RequestContext) => {
        ctx.setSignal(s);
        return new Observable(Promise.resolve(ctx));
      },
      post: (r: ResponseContext) => new Observable(Promise.resolve(r)),
    };
    return { ...extra, middleware: [...(extra?.middleware ?? []), mw], middlewareMergeStrategy: 'append' };
  }

  /** Runs a REST call, mapping its errors. */
  async call<T>(action: string, namespace: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw mapKubeError(e, { action, ...(namespace !== undefined ? { namespace } : {}) });
    }
  }

  // ---- create / get / delete ------------------------------------------------------------------------

  /**
   * Creates one planned object. `ifExists: 'reuse'` returns an existing object of the same name when it
   * belongs to the same session (recovery re-runs a plan); otherwise an existing object is SESSION_EXISTS.
   */
  async create<K extends SessionKind>(
    kind: K,
    body: ObjectOf<K>,
    opts: CallOptions & { ifExists?: 'error' | 'reuse' } = {},
  ): Promise<ObjectOf<K>> {
    const ns = body.metadata?.namespace;
    const name = body.metadata?.name;
    if (!ns || !name) throw new Error(`create ${kind}: metadata.namespace and metadata.name are required`);
    const o = this.requestOptions(opts.signal);
    try {
      switch (kind) {
        case 'Pod':
          return (await this.core.createNamespacedPod(
            { namespace: ns, body: body as V1Pod },
            o,
          )) as ObjectOf<K>;
        case 'PersistentVolumeClaim':
          return (await this.core.createNamespacedPersistentVolumeClaim(
            { namespace: ns, body: body as V1PersistentVolumeClaim },
            o,
          )) as ObjectOf<K>;
        case 'ConfigMap':
          return (await this.core.createNamespacedConfigMap(
            { namespace: ns, body: body as V1ConfigMap },
            o,
          )) as ObjectOf<K>;
        default:
          return (await this.core.createNamespacedSecret(
            { namespace: ns, body: body as V1Secret },
            o,
          )) as ObjectOf<K>;
      }
    } catch (e) {
      if (isAlreadyExists(e)) {
        const existing = await this.get(kind, ns, name, opts);
        const session = body.metadata?.labels?.[Labels.session];
        if (
          opts.ifExists === 'reuse' &&
          existing !== undefined &&
          session !== undefined &&
          existing.metadata?.labels?.[Labels.session] === session &&
          existing.metadata?.deletionTimestamp === undefined
        ) {
          return existing;
        }
        throw new ClauderonError('SESSION_EXISTS', `${kind} ${ns}/${name} already exists`, {
          hint: 'choose another session name, or delete the old session (`clauderon delete`, `clauderon gc`)',
          details: { kind, namespace: ns, name },
          cause: e,
        });
      }
      throw mapKubeError(e, { action: `create ${kind} ${ns}/${name}`, namespace: ns });
    }
  }

  /** Creates a planned object (see planCreate). */
  createPlanned(p: PlannedObject, opts: CallOptions & { ifExists?: 'error' | 'reuse' } = {}) {
    return this.create(p.kind, p.body as ObjectOf<typeof p.kind>, opts);
  }

  /** Reads an object; undefined when it does not exist. */
  async get<K extends SessionKind>(
    kind: K,
    namespace: string,
    name: string,
    opts: CallOptions = {},
  ): Promise<ObjectOf<K> | undefined> {
    const o = this.requestOptions(opts.signal);
    const p = { namespace, name };
    try {
      switch (kind) {
        case 'Pod':
          return (await this.core.readNamespacedPod(p, o)) as ObjectOf<K>;
        case 'PersistentVolumeClaim':
          return (await this.core.readNamespacedPersistentVolumeClaim(p, o)) as ObjectOf<K>;
        case 'ConfigMap':
          return (await this.core.readNamespacedConfigMap(p, o)) as ObjectOf<K>;
        default:
          return (await this.core.readNamespacedSecret(p, o)) as ObjectOf<K>;
      }
    } catch (e) {
      // A read in a missing namespace is a plain 404 on a real API server too: "not there" either way.
      if (isNotFound(e)) return undefined;
      throw mapKubeError(e, { action: `read ${kind} ${namespace}/${name}`, namespace });
    }
  }

  /**
   * Deletes an object; NotFound is success. Returns false when it was already gone. Deletion is
   * asynchronous in Kubernetes (graceful pod termination, the claim's protection finalizer); use
   * waitForGone to wait for the object to vanish.
   */
  async delete(
    kind: SessionKind,
    namespace: string,
    name: string,
    opts: CallOptions & { gracePeriodSeconds?: number } = {},
  ): Promise<boolean> {
    const o = this.requestOptions(opts.signal);
    const p = {
      namespace,
      name,
      propagationPolicy: 'Background',
      ...(opts.gracePeriodSeconds !== undefined ? { gracePeriodSeconds: opts.gracePeriodSeconds } : {}),
    };
    try {
      switch (kind) {
        case 'Pod':
          await this.core.deleteNamespacedPod(p, o);
          break;
        case 'PersistentVolumeClaim':
          await this.core.deleteNamespacedPersistentVolumeClaim(p, o);
          break;
        case 'ConfigMap':
          await this.core.deleteNamespacedConfigMap(p, o);
          break;
        default:
          await this.core.deleteNamespacedSecret(p, o);
      }
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw mapKubeError(e, { action: `delete ${kind} ${namespace}/${name}`, namespace });
    }
  }

  // Typed shorthands.
  createPod = (body: V1Pod, opts?: CallOptions) => this.create('Pod', body, opts);
  getPod = (ns: string, name: string, opts?: CallOptions) => this.get('Pod', ns, name, opts);
  deletePod = (ns: string, name: string, opts?: CallOptions & { gracePeriodSeconds?: number }) =>
    this.delete('Pod', ns, name, opts);
  createClaim = (body: V1PersistentVolumeClaim, opts?: CallOptions) =>
    this.create('PersistentVolumeClaim', body, opts);
  getClaim = (ns: string, name: string, opts?: CallOptions) =>
    this.get('PersistentVolumeClaim', ns, name, opts);
  deleteClaim = (ns: string, name: string, opts?: CallOptions) =>
    this.delete('PersistentVolumeClaim', ns, name, opts);
  createConfigMap = (body: V1ConfigMap, opts?: CallOptions) => this.create('ConfigMap', body, opts);
  getConfigMap = (ns: string, name: string, opts?: CallOptions) => this.get('ConfigMap', ns, name, opts);
  deleteConfigMap = (ns: string, name: string, opts?: CallOptions) =>
    this.delete('ConfigMap', ns, name, opts);
  createSecret = (body: V1Secret, opts?: CallOptions) => this.create('Secret', body, opts);
  getSecret = (ns: string, name: string, opts?: CallOptions) => this.get('Secret', ns, name, opts);
  deleteSecret = (ns: string, name: string, opts?: CallOptions) => this.delete('Secret', ns, name, opts);

  /** Sets `ownerReferences` of a ConfigMap or Secret (JSON merge patch). NotFound is an error here. */
  async setOwner(
    kind: 'ConfigMap' | 'Secret',
    namespace: string,
    name: string,
    owner: V1OwnerReference,
    opts: CallOptions = {},
  ): Promise<void> {
    const o = this.requestOptions(opts.signal, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const body = { metadata: { ownerReferences: [owner] } };
    await this.call(`set the owner of ${kind} ${namespace}/${name}`, namespace, () =>
      kind === 'ConfigMap'
        ? this.core.patchNamespacedConfigMap({ namespace, name, body }, o)
        : this.core.patchNamespacedSecret({ namespace, name, body }, o),
    );
  }

  /** Every object of the given kinds matching `selector` (e.g. protocol's managedSelector) in a namespace. */
  /**
   * Lists the managed objects of the given kinds (default: all four). Kinds not asked for come back empty:
   * session views need only pods and claims, and CA config maps are large, so `list` leaves them out.
   */
  async listManaged(
    namespace: string,
    selector: string,
    opts: CallOptions & { kinds?: readonly SessionKind[] } = {},
  ): Promise<ManagedObjects> {
    const want = (k: SessionKind) => opts.kinds === undefined || opts.kinds.includes(k);
    const page = async <T>(
      what: string,
      fn: (p: { namespace: string; labelSelector: string; limit: number; _continue?: string }) => Promise<{
        items: T[];
        metadata?: { _continue?: string };
      }>,
    ): Promise<T[]> => {
      const out: T[] = [];
      let cont: string | undefined;
      do {
        const res = await this.call(`list ${what} in ${namespace}`, namespace, () =>
          fn({ namespace, labelSelector: selector, limit: LIST_PAGE, ...(cont ? { _continue: cont } : {}) }),
        );
        out.push(...res.items);
        cont = res.metadata?._continue || undefined;
      } while (cont);
      return out;
    };
    const o = () => this.requestOptions(opts.signal);
    const none = Promise.resolve([]);
    const [pods, claims, configMaps, secrets] = await Promise.all([
      want('Pod') ? page<V1Pod>('pods', (p) => this.core.listNamespacedPod(p, o())) : none,
      want('PersistentVolumeClaim')
        ? page<V1PersistentVolumeClaim>('persistentvolumeclaims', (p) =>
            this.core.listNamespacedPersistentVolumeClaim(p, o()),
          )
        : none,
      want('ConfigMap')
        ? page<V1ConfigMap>('configmaps', (p) => this.core.listNamespacedConfigMap(p, o()))
        : none,
      want('Secret') ? page<V1Secret>('secrets', (p) => this.core.listNamespacedSecret(p, o())) : none,
    ]);
    return { pods, claims, configMaps, secrets };
  }

  /** Events about one object, oldest first; with `uid`, only those about that incarnation of the name. */
  async listEvents(
    namespace: string,
    name: string,
    uid?: string,
    opts: CallOptions = {},
  ): Promise<CoreV1Event[]> {
    const res = await this.call(`list events of ${namespace}/${name}`, namespace, () =>
      this.core.listNamespacedEvent(
        { namespace, fieldSelector: `involvedObject.name=${name}` },
        this.requestOptions(opts.signal),
      ),
    );
    const items = res.items.filter(
      (e) => uid === undefined || !e.involvedObject.uid || e.involvedObject.uid === uid,
    );
    const t = (e: CoreV1Event) =>
      new Date(
        e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata.creationTimestamp ?? 0,
      ).getTime();
    return items.sort((a, b) => t(a) - t(b));
  }

  // ---- watch, exec, terminals, preflight ------------------------------------------------------------

  /** Watches one pod (see watch.ts). */
  watchPod(namespace: string, name: string, signal: AbortSignal): AsyncGenerator<PodEvent> {
    return watchPod(this, namespace, name, signal);
  }

  /** Waits, by watching, until `predicate(pod)` holds; fails fast on states that never recover. */
  waitForPod(
    namespace: string,
    name: string,
    predicate: (pod: V1Pod) => boolean,
    opts: WaitForPodOptions,
  ): Promise<V1Pod> {
    return waitForPod(this, namespace, name, predicate, opts);
  }

  /** Waits until an object is gone (deleted and finalized). */
  async waitForGone(
    kind: SessionKind,
    namespace: string,
    name: string,
    opts: { signal: AbortSignal; timeoutMs: number; timeoutKey: string },
  ): Promise<void> {
    if (kind === 'Pod') {
      const deadline = AbortSignal.timeout(opts.timeoutMs);
      const signal = AbortSignal.any([opts.signal, deadline]);
      try {
        for await (const ev of this.watchPod(namespace, name, signal)) {
          if (ev.type === 'DELETED') return;
        }
      } catch (e) {
        if (e instanceof ClauderonError && e.details?.reason === 'NotFound') return;
        throw e;
      }
      if (opts.signal.aborted)
        throw new ClauderonError('CANCELLED', `waiting for pod ${name} to go: cancelled`);
      throw new ClauderonError(
        'TIMEOUT',
        `pod ${namespace}/${name} was not gone after ${opts.timeoutMs / 1000}s`,
        {
          hint: `raise ${opts.timeoutKey} in the config, or check the pod's finalizers`,
        },
      );
    }
    // Other kinds vanish quickly once their pod is gone; poll with a short interval instead of a watch each.
    const end = Date.now() + opts.timeoutMs;
    while ((await this.get(kind, namespace, name, { signal: opts.signal })) !== undefined) {
      if (Date.now() > end) {
        throw new ClauderonError(
          'TIMEOUT',
          `${kind} ${namespace}/${name} was not gone after ${opts.timeoutMs / 1000}s`,
          {
            hint: `raise ${opts.timeoutKey} in the config; a claim stays while a pod still mounts it`,
          },
        );
      }
      await sleep(250, opts.signal);
    }
  }

  /** Runs a command in a container and collects its output and exit code (see exec.ts). */
  exec(opts: ExecOptions): Promise<ExecResult> {
    return exec(this.kubeConfig, opts);
  }

  /** Like exec, with stdout as a Readable that applies backpressure to the stream. */
  execStream(opts: ExecOptions): Promise<ExecStream> {
    return execStream(this.kubeConfig, opts);
  }

  /** Opens an interactive tty exec (see terminal.ts). */
  openTerminal(opts: TerminalOptions): Promise<Terminal> {
    return openTerminal(this.kubeConfig, opts);
  }

  /** Checks that a session can be created; throws the first failing check with its fix. */
  preflight(spec: SessionSpec, config: Config, opts: CallOptions = {}): Promise<void> {
    return preflight(this, spec, config, opts.signal);
  }
}
