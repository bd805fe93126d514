/**
 * The internal contract between the emulator's API server (store, REST, watch: src/server, src/store) and
 * its kubelet (pod lifecycle, processes, logs, exec/attach: src/kubelet). Each side is built against this
 * file only, so the two halves can be developed and tested separately.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** A Kubernetes object as plain JSON. */
export interface KObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    ownerReferences?: Array<{
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
      blockOwnerDeletion?: boolean;
    }>;
    generateName?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** Resource identifiers used by the store: the plural, lower-case REST name. */
export type Resource =
  | 'namespaces'
  | 'pods'
  | 'persistentvolumeclaims'
  | 'persistentvolumes'
  | 'configmaps'
  | 'secrets'
  | 'serviceaccounts'
  | 'events'
  | 'storageclasses'
  | 'nodes';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: WatchEventType;
  resource: Resource;
  object: KObject;
}

/**
 * The object store as the kubelet sees it. All writes bump the global resourceVersion and notify
 * watchers (HTTP watches and in-process subscribers alike).
 */
export interface Store {
  get(resource: Resource, namespace: string | undefined, name: string): KObject | undefined;
  list(resource: Resource, namespace?: string): KObject[];
  /**
   * Replaces `status` of an object (like PUT …/status) and returns the stored object; `mutate` receives
   * a deep copy of the current object and returns the new status. Returns undefined if the object is gone.
   */
  updateStatus(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => unknown,
  ): KObject | undefined;
  /** Updates metadata/spec fields outside status (e.g. annotations, nodeName, finalizers). */
  update(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => KObject,
  ): KObject | undefined;
  /** Removes an object for good (the kubelet calls this when a terminating pod's containers are gone). */
  remove(resource: Resource, namespace: string | undefined, name: string): void;
  /** In-process subscription to every change; returns the unsubscribe function. */
  subscribe(listener: (e: StoreEvent) => void): () => void;
  /** Records a core/v1 Event about an object, as a real component would (reason, message, type). */
  recordEvent(
    involved: KObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    component?: string,
  ): void;
}

/** Parameters the API server has already validated for an exec/attach request. */
export interface StreamRequest {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

export interface LogRequest {
  namespace: string;
  pod: string;
  container: string;
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  tailLines?: number;
  limitBytes?: number;
  sinceSeconds?: number;
}

/** Faults the kubelet honours; the API server's fault module forwards admin requests here. */
export interface KubeletFaults {
  /** Make a running container exit with `exitCode` (or be killed by `signal`). */
  exitContainer(
    namespace: string,
    pod: string,
    container: string,
    exitCode: number,
    signal?: NodeJS.Signals,
  ): boolean;
  /** Close every open exec/attach stream (optionally only for one pod) abnormally. */
  killStreams(namespace?: string, pod?: string): number;
}

/**
 * The kubelet. The API server routes `pods/{name}/exec|attach` upgrades and `pods/{name}/log` requests
 * here after checking the pod and container exist (404/400 answered by the server per the protocol spec),
 * and calls `stop()` on shutdown.
 */
export interface Kubelet {
  /** Node name the kubelet schedules pods onto; also served as a Node object. */
  readonly nodeName: string;
  /** Handles a WebSocket upgrade for exec or attach. */
  handleStream(
    kind: 'exec' | 'attach',
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    params: StreamRequest,
  ): void;
  /** Serves a container's log as text/plain (following when asked). */
  handleLog(req: IncomingMessage, res: ServerResponse, params: LogRequest): void;
  readonly faults: KubeletFaults;
  /** Stops every process it started (SIGTERM, then SIGKILL) and every stream. */
  stop(): Promise<void>;
}

export interface KubeletOptions {
  store: Store;
  /** Root of the emulator's state: PVC data lives under `${stateDir}/volumes/<pvc uid>`. */
  stateDir: string;
  /** Images whose reference matches this fail like a registry miss (ErrImagePull → ImagePullBackOff). */
  failImagePattern?: RegExp;
  /** Multiplies every simulated delay (scheduling, pulling); 0 makes transitions immediate. */
  timeScale?: number;
  log?: (msg: string) => void;
}

/** Implemented in src/kubelet/index.ts. */
export type StartKubelet = (opts: KubeletOptions) => Kubelet;
