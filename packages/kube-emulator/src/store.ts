import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KObject, Resource, Store, StoreEvent, WatchEventType } from './contract.js';
import { applyPodDefaults, applyPvcDefaults, qosClass } from './defaults.js';
import {
  alreadyExists,
  badRequest,
  conflict,
  type FieldCause,
  fieldError,
  forbidden,
  invalid,
  notFound,
  StatusError,
} from './errors.js';
import { clone, jsonPatch, mergePatch, strategicMergePatch } from './patch.js';
import { apiVersionOf, info, type ResourceInfo, resourceForKind } from './resources.js';
import { validateConfigMapLike, validateMeta, validatePod, validatePvc } from './validation.js';

/** A change as kept in the watch history; `prev` is the state before it (for selector enter/leave). */
export interface HistoryEvent {
  rv: number;
  type: WatchEventType;
  resource: Resource;
  object: KObject;
  prev?: KObject;
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

export interface StoreOptions {
  stateDir: string;
  /** How many changes the watch history keeps; older resourceVersions get 410 Expired. */
  historySize?: number;
  log?: (m: string) => void;
}

const GEN_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
export const PVC_PROTECTION = 'kubernetes.io/pvc-protection';
const PROTECTED_NAMESPACES = new Set(['default', 'kube-system', 'kube-public']);

/** RFC 3339 with second precision, as every metav1.Time is serialised. */
export const now = (offsetMs = 0): string =>
  new Date(Date.now() + offsetMs).toISOString().replace(/\.\d{3}Z$/, 'Z');

const key = (resource: Resource, ns: string | undefined, name: string): string =>
  `${resource}/${ns ?? ''}/${name}`;

function randomSuffix(): string {
  const bytes = randomBytes(5);
  let s = '';
  for (const b of bytes) s += GEN_ALPHABET[b % GEN_ALPHABET.length];
  return s;
}

function sameExceptRv(a: KObject, b: KObject): boolean {
  const x = { ...a, metadata: { ...a.metadata, resourceVersion: undefined } };
  const y = { ...b, metadata: { ...b.metadata, resourceVersion: undefined } };
  return JSON.stringify(x) === JSON.stringify(y);
}

const isTerminatedPod = (p: KObject): boolean => {
  const phase = (p.status as Record<string, unknown> | undefined)?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
};

/**
 * The emulator's object store: one global resourceVersion, a bounded watch history, the built-in
 * controllers (garbage collector, PVC protection and binding, namespace lifecycle) and persistence to
 * `${stateDir}/objects.json`.
 */
export class ObjectStore implements Store {
  private readonly objects = new Map<string, KObject>();
  private rv = 0;
  private history: HistoryEvent[] = [];
  /** Changes with rv <= compactedRv are gone from the history. */
  private compactedRv = 0;
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private readonly watchers = new Set<(e: HistoryEvent) => void>();
  private readonly queue: HistoryEvent[] = [];
  private delivering = false;
  private reconcileScheduled = false;
  private saveTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly historySize: number;
  private readonly file: string;
  private readonly log: (m: string) => void;
  /** Node name pods get scheduled to; PVC binding annotates it. */
  nodeName = 'emulator-node';

  constructor(opts: StoreOptions) {
    this.historySize = opts.historySize ?? 1000;
    this.file = join(opts.stateDir, 'objects.json');
    this.log = opts.log ?? (() => {});
    this.load();
  }

  // ---------------------------------------------------------------- persistence

  private load(): void {
    if (!existsSync(this.file)) return;
    try {
      const data = JSON.parse(readFileSync(this.file, 'utf8')) as {
        resourceVersion: number;
        objects: Array<{ resource: Resource; object: KObject }>;
      };
      for (const { resource, object } of data.objects) {
        this.objects.set(key(resource, object.metadata.namespace, object.metadata.name), object);
      }
      this.rv = data.resourceVersion;
      this.compactedRv = this.rv;
    } catch (err) {
      this.log(`kube-emulator: ignoring unreadable ${this.file}: ${String(err)}`);
    }
  }

  private scheduleSave(): void {
    if (this.stopped || this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.saveNow();
    }, 50);
  }

  /** Writes objects.json at once (temp file + rename). */
  saveNow(): void {
    const objects: Array<{ resource: Resource; object: KObject }> = [];
    for (const [k, object] of this.objects) objects.push({ resource: k.split('/')[0] as Resource, object });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ resourceVersion: this.rv, objects }));
    renameSync(tmp, this.file);
  }

  close(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    this.saveNow();
    this.stopped = true;
    this.listeners.clear();
    this.watchers.clear();
  }

  get resourceVersion(): number {
    return this.rv;
  }

  // ---------------------------------------------------------------- low-level writes

  private emit(e: HistoryEvent): void {
    this.history.push(e);
    while (this.history.length > this.historySize) {
      const old = this.history.shift()!;
      this.compactedRv = old.rv;
    }
    this.queue.push(e);
    this.scheduleSave();
    this.scheduleReconcile();
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.queue.length > 0) {
        const ev = this.queue.shift()!;
        for (const w of [...this.watchers]) {
          try {
            w(ev);
          } catch (err) {
            this.log(`kube-emulator: watcher failed: ${String(err)}`);
          }
        }
        const se: StoreEvent = { type: ev.type, resource: ev.resource, object: ev.object };
        for (const l of [...this.listeners]) {
          try {
            l({ ...se, object: clone(se.object) });
          } catch (err) {
            this.log(`kube-emulator: subscriber failed: ${String(err)}`);
          }
        }
      }
    } finally {
      this.delivering = false;
    }
  }

  private put(resource: Resource, obj: KObject, type: 'ADDED' | 'MODIFIED', prev?: KObject): KObject {
    this.rv++;
    obj.metadata.resourceVersion = String(this.rv);
    this.objects.set(key(resource, obj.metadata.namespace, obj.metadata.name), obj);
    this.emit({ rv: this.rv, type, resource, object: clone(obj), ...(prev ? { prev: clone(prev) } : {}) });
    return clone(obj);
  }

  private drop(resource: Resource, ns: string | undefined, name: string): KObject | undefined {
    const k = key(resource, ns, name);
    const cur = this.objects.get(k);
    if (!cur) return undefined;
    this.objects.delete(k);
    this.rv++;
    const last = clone(cur);
    last.metadata.resourceVersion = String(this.rv);
    this.emit({ rv: this.rv, type: 'DELETED', resource, object: clone(last), prev: cur });
    if (resource === 'persistentvolumeclaims') this.releaseVolume(last);
    return last;
  }

  // ---------------------------------------------------------------- Store contract

  get(resource: Resource, namespace: string | undefined, name: string): KObject | undefined {
    const o = this.objects.get(key(resource, info(resource).namespaced ? namespace : undefined, name));
    return o ? clone(o) : undefined;
  }

  list(resource: Resource, namespace?: string): KObject[] {
    const prefix = namespace && info(resource).namespaced ? `${resource}/${namespace}/` : `${resource}/`;
    const out: KObject[] = [];
    for (const [k, v] of this.objects) if (k.startsWith(prefix)) out.push(clone(v));
    out.sort((a, b) =>
      (a.metadata.namespace ?? '') === (b.metadata.namespace ?? '')
        ? a.metadata.name.localeCompare(b.metadata.name)
        : (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? ''),
    );
    return out;
  }

  private raw(resource: Resource, ns: string | undefined, name: string): KObject | undefined {
    return this.objects.get(key(resource, info(resource).namespaced ? ns : undefined, name));
  }

  updateStatus(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => unknown,
  ): KObject | undefined {
    const cur = this.raw(resource, namespace, name);
    if (!cur) return undefined;
    const next = clone(cur);
    next.status = mutate(clone(cur));
    if (sameExceptRv(next, cur)) return clone(cur);
    return this.put(resource, next, 'MODIFIED', cur);
  }

  update(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => KObject,
  ): KObject | undefined {
    const cur = this.raw(resource, namespace, name);
    if (!cur) return undefined;
    const next = clone(mutate(clone(cur)));
    next.apiVersion = cur.apiVersion;
    next.kind = cur.kind;
    next.metadata.name = cur.metadata.name;
    next.metadata.uid = cur.metadata.uid;
    next.metadata.creationTimestamp = cur.metadata.creationTimestamp;
    if (cur.metadata.namespace !== undefined) next.metadata.namespace = cur.metadata.namespace;
    if (sameExceptRv(next, cur)) return clone(cur);
    return this.put(resource, next, 'MODIFIED', cur);
  }

  remove(resource: Resource, namespace: string | undefined, name: string): void {
    const cur = this.raw(resource, namespace, name);
    if (!cur) return;
    if (resource === 'pods' && (cur.metadata.finalizers?.length ?? 0) > 0) {
      // Like the kubelet's final delete with grace 0: the object waits for its finalizers.
      const next = clone(cur);
      next.metadata.deletionTimestamp ??= now();
      next.metadata.deletionGracePeriodSeconds = 0;
      if (!sameExceptRv(next, cur)) this.put(resource, next, 'MODIFIED', cur);
      return;
    }
    this.drop(resource, cur.metadata.namespace, name);
  }

  subscribe(listener: (e: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  recordEvent(
    involved: KObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    component = 'kubelet',
  ): void {
    const ns = involved.metadata.namespace ?? 'default';
    const nsObj = this.raw('namespaces', undefined, ns);
    if (!nsObj) return;
    const io = {
      kind: involved.kind,
      namespace: involved.metadata.namespace,
      name: involved.metadata.name,
      uid: involved.metadata.uid,
      apiVersion: involved.apiVersion,
      resourceVersion: involved.metadata.resourceVersion,
    };
    const ts = now();
    for (const [k, ev] of this.objects) {
      if (!k.startsWith(`events/${ns}/`)) continue;
      const eio = ev.involvedObject as Record<string, unknown> | undefined;
      if (
        eio?.uid === io.uid &&
        eio?.name === io.name &&
        ev.reason === reason &&
        ev.message === message &&
        ev.type === type &&
        (ev.source as Record<string, unknown> | undefined)?.component === component
      ) {
        const next = clone(ev);
        next.count = Number(ev.count ?? 1) + 1;
        next.lastTimestamp = ts;
        this.put('events', next, 'MODIFIED', ev);
        return;
      }
    }
    const nanos = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
    const ev: KObject = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: {
        name: `${involved.metadata.name}.${nanos.toString(16)}`,
        namespace: ns,
        uid: randomUUID(),
        creationTimestamp: ts,
      },
      involvedObject: io,
      reason,
      message,
      source: component === 'kubelet' ? { component, host: this.nodeName } : { component },
      firstTimestamp: ts,
      lastTimestamp: ts,
      count: 1,
      type,
      eventTime: null,
      reportingComponent: component,
      reportingInstance: component === 'kubelet' ? this.nodeName : '',
    };
    this.put('events', ev, 'ADDED');
  }

  // ---------------------------------------------------------------- watch support

  /**
   * Subscribes `cb` to every change after `fromRv` (replaying retained history first). Throws a 410
   * Expired StatusError when `fromRv` is older than the retained history.
   */
  watchFrom(fromRv: number, cb: (e: HistoryEvent) => void): () => void {
    if (fromRv < this.compactedRv) {
      throw new StatusError(410, 'Expired', `too old resource version: ${fromRv} (${this.compactedRv + 1})`);
    }
    let last = fromRv;
    const deliver = (e: HistoryEvent) => {
      if (e.rv <= last) return;
      last = e.rv;
      cb(e);
    };
    for (const e of this.history) if (e.rv > fromRv) deliver(e);
    this.watchers.add(deliver);
    return () => this.watchers.delete(deliver);
  }

  // ---------------------------------------------------------------- API operations

  private checkNamespace(ri: ResourceInfo, ns: string | undefined, name: string): void {
    if (!ri.namespaced) return;
    const nsObj = this.raw('namespaces', undefined, ns ?? '');
    if (!nsObj) throw notFound('namespaces', ns ?? '');
    if (nsObj.metadata.deletionTimestamp) {
      throw forbidden(
        `${ri.resource} "${name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`,
        {
          name,
          kind: ri.resource,
          causes: [
            {
              reason: 'NamespaceTerminating',
              message: `namespace ${ns} is being terminated`,
              field: 'metadata.namespace',
            },
          ],
        },
      );
    }
  }

  private defaultStorageClass(): string | undefined {
    for (const sc of this.list('storageclasses')) {
      if (sc.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true')
        return sc.metadata.name;
    }
    return undefined;
  }

  /** Resource-specific validation and defaulting shared by create and update. */
  private prepare(ri: ResourceInfo, obj: KObject): FieldCause[] {
    if (ri.resource === 'pods') applyPodDefaults(obj);
    if (ri.resource === 'persistentvolumeclaims') applyPvcDefaults(obj, this.defaultStorageClass());
    if (ri.resource === 'secrets') obj.type ??= 'Opaque';
    if (ri.resource === 'namespaces') {
      obj.spec ??= {};
      const spec = obj.spec as Record<string, unknown>;
      spec.finalizers ??= ['kubernetes'];
      // The real server always sets this label (NamespaceDefaultLabelName).
      if (obj.metadata.name)
        obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name };
    }
    const causes = validateMeta(ri, obj);
    if (ri.resource === 'pods') causes.push(...validatePod(obj));
    if (ri.resource === 'persistentvolumeclaims') causes.push(...validatePvc(obj));
    if (ri.resource === 'configmaps' || ri.resource === 'secrets') causes.push(...validateConfigMapLike(obj));
    return causes;
  }

  private checkBody(ri: ResourceInfo, body: unknown): KObject {
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw badRequest('the body of the request was in an unknown format');
    const obj = clone(body) as KObject;
    if (obj.kind !== undefined && obj.kind !== ri.kind) {
      throw badRequest(
        `the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersionOf(ri)})`,
      );
    }
    if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersionOf(ri)) {
      throw badRequest(
        `the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersionOf(ri)})`,
      );
    }
    obj.apiVersion = apiVersionOf(ri);
    obj.kind = ri.kind;
    if (typeof obj.metadata !== 'object' || obj.metadata === null) obj.metadata = { name: '' };
    obj.metadata.name ??= '';
    return obj;
  }

  /** POST: validates, defaults and stores a new object. */
  create(
    resource: Resource,
    namespace: string | undefined,
    body: unknown,
    opts: { dryRun?: boolean } = {},
  ): KObject {
    const ri = info(resource);
    const obj = this.checkBody(ri, body);
    const m = obj.metadata;
    if (ri.namespaced) {
      if (m.namespace && namespace && m.namespace !== namespace)
        throw badRequest(
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      m.namespace = namespace ?? m.namespace ?? 'default';
    } else delete m.namespace;
    if (!m.name && m.generateName) {
      const base = m.generateName.slice(0, 58);
      for (let i = 0; i < 8; i++) {
        m.name = base + randomSuffix();
        if (!this.raw(resource, m.namespace, m.name)) break;
      }
    }
    const causes = this.prepare(ri, obj);
    if (m.generateName && !m.name)
      causes.unshift(fieldError('Required', 'metadata.name', 'name or generateName is required'));
    if (causes.length > 0) throw invalid(ri.kind, m.name || m.generateName || '', causes);
    this.checkNamespace(ri, m.namespace, m.name);
    if (this.raw(resource, m.namespace, m.name)) {
      if (m.generateName && !(body as KObject).metadata?.name)
        throw new StatusError(
          409,
          'AlreadyExists',
          `${resource} "${m.name}" already exists, the server was not able to generate a unique name for the object`,
          { name: m.name, kind: resource },
        );
      throw alreadyExists(resource, m.name);
    }
    m.uid = randomUUID();
    m.creationTimestamp = now();
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    delete m.selfLink;
    delete m.managedFields;
    if (resource === 'pods' || resource === 'persistentvolumeclaims') m.generation = 1;
    else delete m.generation;

    if (resource === 'pods') {
      const spec = obj.spec as Record<string, unknown>;
      const sa = String(spec.serviceAccountName);
      if (!this.raw('serviceaccounts', m.namespace, sa)) {
        throw forbidden(
          `pods "${m.name}" is forbidden: error looking up service account ${m.namespace}/${sa}: serviceaccount "${sa}" not found`,
          { name: m.name, kind: 'pods' },
        );
      }
      obj.status = { phase: 'Pending', qosClass: qosClass(obj) };
    }
    if (resource === 'persistentvolumeclaims') {
      const fin = new Set(m.finalizers ?? []);
      fin.add(PVC_PROTECTION);
      m.finalizers = [...fin];
      obj.status = { phase: 'Pending' };
    }
    if (resource === 'namespaces') obj.status = { phase: 'Active' };
    if (resource === 'persistentvolumes') obj.status = { phase: 'Pending' };
    if (opts.dryRun) return obj;
    const stored = this.put(resource, obj, 'ADDED');
    if (resource === 'namespaces') this.ensureDefaultServiceAccount(m.name);
    return stored;
  }

  ensureDefaultServiceAccount(ns: string): void {
    if (this.raw('serviceaccounts', ns, 'default')) return;
    this.put(
      'serviceaccounts',
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'default', namespace: ns, uid: randomUUID(), creationTimestamp: now() },
      },
      'ADDED',
    );
  }

  /** PUT (main resource or /status). */
  replace(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    body: unknown,
    opts: { subresource?: string; dryRun?: boolean } = {},
  ): KObject {
    const ri = info(resource);
    const cur = this.raw(resource, namespace, name);
    if (!cur) throw notFound(resource, name);
    const obj = this.checkBody(ri, body);
    if (obj.metadata.name && obj.metadata.name !== name)
      throw badRequest(
        `the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`,
      );
    if (ri.namespaced && obj.metadata.namespace && obj.metadata.namespace !== namespace)
      throw badRequest(
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== cur.metadata.resourceVersion) throw conflict(resource, name);
    if (opts.subresource === 'status') {
      const next = clone(cur);
      next.status = obj.status;
      if (sameExceptRv(next, cur)) return clone(cur);
      return opts.dryRun ? next : this.put(resource, next, 'MODIFIED', cur);
    }
    const next = obj;
    const m = next.metadata;
    m.name = name;
    if (ri.namespaced) m.namespace = cur.metadata.namespace;
    else delete m.namespace;
    m.uid = cur.metadata.uid;
    m.creationTimestamp = cur.metadata.creationTimestamp;
    if (cur.metadata.deletionTimestamp) m.deletionTimestamp = cur.metadata.deletionTimestamp;
    else delete m.deletionTimestamp;
    if (cur.metadata.deletionGracePeriodSeconds !== undefined)
      m.deletionGracePeriodSeconds = cur.metadata.deletionGracePeriodSeconds;
    else delete m.deletionGracePeriodSeconds;
    if (cur.metadata.generateName) m.generateName = cur.metadata.generateName;
    if (cur.metadata.generation !== undefined) m.generation = cur.metadata.generation;
    if (!m.labels || Object.keys(m.labels).length === 0) delete m.labels;
    if (ri.hasStatus) {
      if (cur.status === undefined) delete next.status;
      else next.status = clone(cur.status);
    }
    if (resource === 'namespaces') next.spec = clone(cur.spec);
    const causes = this.prepare(ri, next);
    if (cur.metadata.deletionTimestamp) {
      const added = (m.finalizers ?? []).filter((f) => !(cur.metadata.finalizers ?? []).includes(f));
      if (added.length > 0)
        causes.push(
          fieldError(
            'Forbidden',
            'metadata.finalizers',
            `no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => `"${f}"`).join(', ')}}`,
          ),
        );
    }
    if (resource === 'pods') causes.push(...podUpdateErrors(cur, next));
    if (resource === 'persistentvolumeclaims' && !pvcSpecUpdateAllowed(cur, next))
      causes.push(
        fieldError(
          'Forbidden',
          'spec',
          'spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims',
        ),
      );
    if ((resource === 'configmaps' || resource === 'secrets') && cur.immutable === true) {
      if (JSON.stringify(cur.data) !== JSON.stringify(next.data))
        causes.push(fieldError('Forbidden', 'data', 'field is immutable when `immutable` is set'));
      if (JSON.stringify(cur.binaryData) !== JSON.stringify(next.binaryData))
        causes.push(fieldError('Forbidden', 'binaryData', 'field is immutable when `immutable` is set'));
      if (next.immutable !== true)
        causes.push(fieldError('Forbidden', 'immutable', 'field is immutable when `immutable` is set'));
    }
    if (causes.length > 0) throw invalid(ri.kind, name, causes);
    if (m.generation !== undefined && JSON.stringify(cur.spec) !== JSON.stringify(next.spec))
      m.generation = Number(m.generation) + 1;
    if (sameExceptRv(next, cur)) return clone(cur);
    if (opts.dryRun) return next;
    const stored = this.put(resource, next, 'MODIFIED', cur);
    return this.finalizeIfDone(resource, stored) ?? stored;
  }

  /** PATCH: applies the patch to the current object, then behaves like PUT. */
  patch(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    contentType: string,
    patchBody: unknown,
    opts: { subresource?: string; dryRun?: boolean } = {},
  ): KObject {
    const cur = this.raw(resource, namespace, name);
    if (!cur) throw notFound(resource, name);
    let next: unknown;
    if (contentType === 'application/merge-patch+json') {
      if (typeof patchBody !== 'object' || patchBody === null || Array.isArray(patchBody))
        throw badRequest('json: cannot unmarshal array into Go value of type map[string]interface {}');
      next = mergePatch(clone(cur), patchBody);
    } else if (contentType === 'application/strategic-merge-patch+json') {
      if (typeof patchBody !== 'object' || patchBody === null || Array.isArray(patchBody))
        throw badRequest('json: cannot unmarshal array into Go value of type map[string]interface {}');
      next = strategicMergePatch(clone(cur), patchBody);
    } else if (contentType === 'application/json-patch+json') {
      next = jsonPatch(clone(cur), patchBody);
    } else {
      throw new StatusError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
      );
    }
    return this.replace(resource, namespace, name, next, opts);
  }

  /** DELETE with grace periods, finalizers and propagation. Returns the last or current state. */
  delete(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions = {},
  ): { object: KObject; gone: boolean } {
    const cur = this.raw(resource, namespace, name);
    if (!cur) throw notFound(resource, name);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== cur.metadata.uid)
      throw new StatusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${resource} "${name}": Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid}`,
        { name, kind: resource },
      );
    if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion)
      throw new StatusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${resource} "${name}": Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${cur.metadata.resourceVersion}`,
        { name, kind: resource },
      );
    if (resource === 'namespaces' && PROTECTED_NAMESPACES.has(name))
      throw forbidden(`namespaces "${name}" is forbidden: this namespace may not be deleted`, {
        name,
        kind: 'namespaces',
      });
    if (opts.dryRun) return { object: clone(cur), gone: false };
    const next = clone(cur);
    const fin = new Set(next.metadata.finalizers ?? []);
    if (!cur.metadata.deletionTimestamp) {
      if (opts.propagationPolicy === 'Foreground') fin.add('foregroundDeletion');
      if (opts.propagationPolicy === 'Orphan') fin.add('orphan');
    }
    if (fin.size > 0) next.metadata.finalizers = [...fin];

    if (resource === 'namespaces') {
      if (cur.metadata.deletionTimestamp) return { object: clone(cur), gone: false };
      next.metadata.deletionTimestamp = now();
      next.metadata.deletionGracePeriodSeconds = 0;
      next.status = { ...(next.status as object), phase: 'Terminating' };
      return { object: this.put(resource, next, 'MODIFIED', cur), gone: false };
    }

    if (resource === 'pods') {
      const spec = (cur.spec ?? {}) as Record<string, unknown>;
      let grace = opts.gracePeriodSeconds ?? Number(spec.terminationGracePeriodSeconds ?? 30);
      if (!spec.nodeName || isTerminatedPod(cur)) grace = 0;
      if (grace < 0) grace = 0;
      if (cur.metadata.deletionTimestamp) {
        const old = cur.metadata.deletionGracePeriodSeconds ?? 0;
        if (grace >= old && fin.size === (cur.metadata.finalizers?.length ?? 0))
          return { object: clone(cur), gone: false };
      }
      if (grace === 0 && fin.size === 0) {
        const last = this.drop(resource, cur.metadata.namespace, name)!;
        return { object: last, gone: true };
      }
      next.metadata.deletionTimestamp = now(grace * 1000);
      next.metadata.deletionGracePeriodSeconds = grace;
      return { object: this.put(resource, next, 'MODIFIED', cur), gone: false };
    }

    if (fin.size === 0) {
      const last = this.drop(resource, cur.metadata.namespace, name)!;
      return { object: last, gone: true };
    }
    if (cur.metadata.deletionTimestamp && sameExceptRv(next, cur)) return { object: clone(cur), gone: false };
    next.metadata.deletionTimestamp ??= now();
    next.metadata.deletionGracePeriodSeconds ??= 0;
    return { object: this.put(resource, next, 'MODIFIED', cur), gone: false };
  }

  /** Removes an object marked for deletion once nothing holds it any more. */
  private finalizeIfDone(resource: Resource, obj: KObject): KObject | undefined {
    const m = obj.metadata;
    if (!m.deletionTimestamp || (m.finalizers?.length ?? 0) > 0) return undefined;
    if (resource === 'namespaces') return undefined;
    if (resource === 'pods') {
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      if (spec.nodeName && m.deletionGracePeriodSeconds !== 0 && !isTerminatedPod(obj)) return undefined;
    }
    return this.drop(resource, m.namespace, m.name);
  }

  // ---------------------------------------------------------------- controllers

  private scheduleReconcile(): void {
    if (this.reconcileScheduled || this.stopped) return;
    this.reconcileScheduled = true;
    setImmediate(() => {
      this.reconcileScheduled = false;
      if (this.stopped) return;
      try {
        this.reconcile();
      } catch (err) {
        this.log(`kube-emulator: controller error: ${err instanceof Error ? err.stack : String(err)}`);
      }
    });
  }

  private all(): Array<{ resource: Resource; obj: KObject }> {
    const out: Array<{ resource: Resource; obj: KObject }> = [];
    for (const [k, obj] of this.objects) out.push({ resource: k.split('/')[0] as Resource, obj });
    return out;
  }

  private ownerState(
    dep: KObject,
    ref: { apiVersion: string; kind: string; name: string; uid: string },
  ): 'absent' | 'present' | 'unknown' {
    const ri = resourceForKind(ref.apiVersion, ref.kind);
    if (!ri) return 'unknown';
    const owner = this.raw(ri.resource, ri.namespaced ? dep.metadata.namespace : undefined, ref.name);
    return owner && owner.metadata.uid === ref.uid ? 'present' : 'absent';
  }

  private ownerOf(
    dep: KObject,
    ref: { apiVersion: string; kind: string; name: string; uid: string },
  ): KObject | undefined {
    const ri = resourceForKind(ref.apiVersion, ref.kind);
    if (!ri) return undefined;
    const owner = this.raw(ri.resource, ri.namespaced ? dep.metadata.namespace : undefined, ref.name);
    return owner && owner.metadata.uid === ref.uid ? owner : undefined;
  }

  private setFinalizers(resource: Resource, obj: KObject, finalizers: string[]): void {
    const stored = this.update(resource, obj.metadata.namespace, obj.metadata.name, (o) => {
      if (finalizers.length > 0) o.metadata.finalizers = finalizers;
      else delete o.metadata.finalizers;
      return o;
    });
    if (stored) this.finalizeIfDone(resource, stored);
  }

  private reconcile(): void {
    const items = this.all();
    // Garbage collector.
    const dependentsOf = new Map<string, Array<{ resource: Resource; obj: KObject; blocking: boolean }>>();
    for (const { resource, obj } of items) {
      const refs = obj.metadata.ownerReferences ?? [];
      if (refs.length === 0) continue;
      for (const r of refs) {
        const list = dependentsOf.get(r.uid) ?? [];
        list.push({ resource, obj, blocking: r.blockOwnerDeletion === true });
        dependentsOf.set(r.uid, list);
      }
      if (!this.raw(resource, obj.metadata.namespace, obj.metadata.name)) continue;
      const states = refs.map((r) => ({ r, state: this.ownerState(obj, r), owner: this.ownerOf(obj, r) }));
      const orphaning = states.filter(
        (s) => s.owner?.metadata.deletionTimestamp && s.owner.metadata.finalizers?.includes('orphan'),
      );
      const absent = states.filter((s) => s.state === 'absent');
      const foreground = states.filter(
        (s) =>
          s.owner?.metadata.deletionTimestamp && s.owner.metadata.finalizers?.includes('foregroundDeletion'),
      );
      const live = states.filter((s) => s.state !== 'absent' && !orphaning.includes(s));
      if (orphaning.length > 0 || (absent.length > 0 && live.length > 0)) {
        const keep = new Set(live.map((s) => s.r.uid));
        this.update(resource, obj.metadata.namespace, obj.metadata.name, (o) => {
          const left = (o.metadata.ownerReferences ?? []).filter((r) => keep.has(r.uid));
          if (left.length > 0) o.metadata.ownerReferences = left;
          else delete o.metadata.ownerReferences;
          return o;
        });
        continue;
      }
      if ((absent.length === refs.length || foreground.length > 0) && !obj.metadata.deletionTimestamp) {
        this.delete(resource, obj.metadata.namespace, obj.metadata.name, {
          propagationPolicy: foreground.length > 0 ? 'Foreground' : 'Background',
        });
      }
    }
    for (const { resource, obj } of items) {
      const cur = this.raw(resource, obj.metadata.namespace, obj.metadata.name);
      if (!cur?.metadata.deletionTimestamp) continue;
      const fins = cur.metadata.finalizers ?? [];
      const deps = (dependentsOf.get(cur.metadata.uid ?? '') ?? []).filter((d) =>
        this.raw(d.resource, d.obj.metadata.namespace, d.obj.metadata.name),
      );
      if (fins.includes('orphan') && deps.length === 0) {
        this.setFinalizers(
          resource,
          cur,
          fins.filter((f) => f !== 'orphan'),
        );
        continue;
      }
      if (fins.includes('foregroundDeletion') && !deps.some((d) => d.blocking)) {
        this.setFinalizers(
          resource,
          cur,
          fins.filter((f) => f !== 'foregroundDeletion'),
        );
        continue;
      }
      if (resource === 'persistentvolumeclaims' && fins.includes(PVC_PROTECTION) && !this.pvcInUse(cur)) {
        this.setFinalizers(
          resource,
          cur,
          fins.filter((f) => f !== PVC_PROTECTION),
        );
        continue;
      }
      if (resource === 'namespaces') {
        this.reconcileNamespace(cur);
        continue;
      }
      this.finalizeIfDone(resource, cur);
    }
    this.ensureVolumes();
    // The service account controller (re)creates `default` in every active namespace.
    for (const ns of this.list('namespaces')) {
      if (!ns.metadata.deletionTimestamp) this.ensureDefaultServiceAccount(ns.metadata.name);
    }
  }

  private pvcInUse(pvc: KObject): boolean {
    for (const pod of this.list('pods', pvc.metadata.namespace)) {
      if (isTerminatedPod(pod)) continue;
      const vols = ((pod.spec as Record<string, unknown> | undefined)?.volumes ?? []) as Array<
        Record<string, unknown>
      >;
      if (
        vols.some(
          (v) =>
            (v.persistentVolumeClaim as Record<string, unknown> | undefined)?.claimName === pvc.metadata.name,
        )
      )
        return true;
    }
    return false;
  }

  private reconcileNamespace(ns: KObject): void {
    const name = ns.metadata.name;
    let remaining = 0;
    for (const { resource, obj } of this.all()) {
      if (obj.metadata.namespace !== name || !info(resource).namespaced) continue;
      remaining++;
      if (!obj.metadata.deletionTimestamp) this.delete(resource, name, obj.metadata.name, {});
    }
    if (remaining > 0) return;
    const spec = (ns.spec ?? {}) as Record<string, unknown>;
    if (Array.isArray(spec.finalizers) && spec.finalizers.length > 0) {
      this.update('namespaces', undefined, name, (o) => {
        o.spec = { ...(o.spec as object), finalizers: [] };
        return o;
      });
    }
    if ((ns.metadata.finalizers?.length ?? 0) === 0) this.drop('namespaces', undefined, name);
  }

  // ---------------------------------------------------------------- volumes

  // Binding claims (and their events) is the kubelet's scheduler's job; the store adds the PersistentVolume a
  // dynamic provisioner would create for a bound claim, and removes it with the claim (reclaim policy Delete).
  private ensureVolumes(): void {
    for (const pvc of this.objects.values()) {
      if (pvc.kind !== 'PersistentVolumeClaim') continue;
      const spec = (pvc.spec ?? {}) as Record<string, unknown>;
      const status = (pvc.status ?? {}) as Record<string, unknown>;
      const pvName = spec.volumeName;
      if (
        status.phase !== 'Bound' ||
        typeof pvName !== 'string' ||
        this.raw('persistentvolumes', undefined, pvName)
      )
        continue;
      const sc =
        typeof spec.storageClassName === 'string'
          ? this.raw('storageclasses', undefined, spec.storageClassName)
          : undefined;
      const storage =
        (status.capacity as Record<string, unknown> | undefined)?.storage ??
        (
          (spec.resources as Record<string, unknown> | undefined)?.requests as
            | Record<string, unknown>
            | undefined
        )?.storage;
      this.put(
        'persistentvolumes',
        {
          apiVersion: 'v1',
          kind: 'PersistentVolume',
          metadata: {
            name: pvName,
            uid: randomUUID(),
            creationTimestamp: now(),
            annotations: {
              'pv.kubernetes.io/provisioned-by': String(sc?.provisioner ?? 'rancher.io/local-path'),
            },
          },
          spec: {
            capacity: { storage },
            accessModes: status.accessModes ?? spec.accessModes,
            persistentVolumeReclaimPolicy: sc?.reclaimPolicy ?? 'Delete',
            storageClassName: spec.storageClassName,
            volumeMode: spec.volumeMode ?? 'Filesystem',
            claimRef: {
              kind: 'PersistentVolumeClaim',
              namespace: pvc.metadata.namespace,
              name: pvc.metadata.name,
              uid: pvc.metadata.uid,
              apiVersion: 'v1',
            },
            hostPath: { path: `volumes/${pvc.metadata.uid}`, type: 'DirectoryOrCreate' },
          },
          status: { phase: 'Bound' },
        },
        'ADDED',
      );
    }
  }

  private releaseVolume(pvc: KObject): void {
    const pvName = (pvc.spec as Record<string, unknown> | undefined)?.volumeName;
    if (typeof pvName !== 'string') return;
    const pv = this.raw('persistentvolumes', undefined, pvName);
    if (!pv) return;
    const policy = (pv.spec as Record<string, unknown> | undefined)?.persistentVolumeReclaimPolicy;
    if (policy === 'Retain') {
      this.updateStatus('persistentvolumes', undefined, pvName, () => ({ phase: 'Released' }));
      return;
    }
    this.drop('persistentvolumes', undefined, pvName);
  }
}

const POD_UPDATE_MSG =
  'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

/** The real server allows only images, activeDeadlineSeconds and added tolerations to change in a pod spec. */
function podUpdateErrors(cur: KObject, next: KObject): FieldCause[] {
  const a = clone((cur.spec ?? {}) as Record<string, unknown>);
  const b = clone((next.spec ?? {}) as Record<string, unknown>);
  const out: FieldCause[] = [];
  for (const k of ['containers', 'initContainers'] as const) {
    const ac = (a[k] ?? []) as Array<Record<string, unknown>>;
    const bc = (b[k] ?? []) as Array<Record<string, unknown>>;
    if (ac.length === bc.length) {
      for (const [i, c] of ac.entries()) c.image = bc[i]!.image;
    }
  }
  if (b.activeDeadlineSeconds !== undefined) {
    const old = a.activeDeadlineSeconds as number | undefined;
    const nv = b.activeDeadlineSeconds as number;
    if (old !== undefined && nv > old)
      out.push(
        fieldError(
          'Invalid',
          'spec.activeDeadlineSeconds',
          'must be less than or equal to previous value',
          nv,
        ),
      );
    a.activeDeadlineSeconds = nv;
  }
  const at = (a.tolerations ?? []) as unknown[];
  const bt = (b.tolerations ?? []) as unknown[];
  const atJson = at.map((t) => JSON.stringify(t));
  if (atJson.every((t) => bt.some((x) => JSON.stringify(x) === t))) a.tolerations = b.tolerations;
  // The scheduler's binding sets nodeName once.
  if (!a.nodeName && b.nodeName) a.nodeName = b.nodeName;
  if (JSON.stringify(sortKeys(a)) !== JSON.stringify(sortKeys(b)))
    out.push(fieldError('Forbidden', 'spec', POD_UPDATE_MSG));
  return out;
}

function pvcSpecUpdateAllowed(cur: KObject, next: KObject): boolean {
  const a = clone((cur.spec ?? {}) as Record<string, unknown>);
  const b = clone((next.spec ?? {}) as Record<string, unknown>);
  a.resources = b.resources;
  a.volumeAttributesClassName = b.volumeAttributesClassName;
  if (!a.volumeName && b.volumeName) a.volumeName = b.volumeName;
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}
