/**
 * A tiny in-memory Store for the kubelet's unit tests (not used by the product): it keeps objects in a map,
 * bumps a resourceVersion on every write and notifies subscribers synchronously, as the real store does.
 */
import { randomUUID } from 'node:crypto';
import type { KObject, Resource, Store, StoreEvent } from '../../contract.js';

export interface RecordedEvent {
  involved: string;
  type: string;
  reason: string;
  message: string;
}

export class FakeStore implements Store {
  private readonly objects = new Map<string, KObject>();
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private rv = 1;
  readonly events: RecordedEvent[] = [];
  /** Every status written to a pod, in order, for lifecycle assertions. */
  readonly history: Array<{ type: string; resource: Resource; object: KObject }> = [];

  private key(resource: Resource, namespace: string | undefined, name: string): string {
    return `${resource}/${namespace ?? ''}/${name}`;
  }

  private emit(type: StoreEvent['type'], resource: Resource, object: KObject): void {
    this.history.push({ type, resource, object: structuredClone(object) });
    for (const l of [...this.listeners]) l({ type, resource, object: structuredClone(object) });
  }

  get(resource: Resource, namespace: string | undefined, name: string): KObject | undefined {
    const o = this.objects.get(this.key(resource, namespace, name));
    return o ? structuredClone(o) : undefined;
  }

  list(resource: Resource, namespace?: string): KObject[] {
    const prefix = namespace === undefined ? `${resource}/` : `${resource}/${namespace}/`;
    return [...this.objects.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .map(([, o]) => structuredClone(o));
  }

  create(resource: Resource, object: KObject): KObject {
    const o = structuredClone(object);
    o.metadata.uid ??= randomUUID();
    o.metadata.creationTimestamp ??= new Date().toISOString();
    o.metadata.resourceVersion = String(++this.rv);
    this.objects.set(this.key(resource, o.metadata.namespace, o.metadata.name), o);
    this.emit('ADDED', resource, o);
    return structuredClone(o);
  }

  updateStatus(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => unknown,
  ): KObject | undefined {
    const k = this.key(resource, namespace, name);
    const cur = this.objects.get(k);
    if (!cur) return undefined;
    const next = { ...structuredClone(cur), status: mutate(structuredClone(cur)) } as KObject;
    next.metadata.resourceVersion = String(++this.rv);
    this.objects.set(k, next);
    this.emit('MODIFIED', resource, next);
    return structuredClone(next);
  }

  update(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => KObject,
  ): KObject | undefined {
    const k = this.key(resource, namespace, name);
    const cur = this.objects.get(k);
    if (!cur) return undefined;
    const next = mutate(structuredClone(cur));
    next.metadata.resourceVersion = String(++this.rv);
    this.objects.set(k, next);
    this.emit('MODIFIED', resource, next);
    return structuredClone(next);
  }

  remove(resource: Resource, namespace: string | undefined, name: string): void {
    const k = this.key(resource, namespace, name);
    const cur = this.objects.get(k);
    if (!cur) return;
    this.objects.delete(k);
    this.emit('DELETED', resource, cur);
  }

  /** Graceful delete as the API server does it for pods: sets deletionTimestamp (or removes at once). */
  delete(resource: Resource, namespace: string | undefined, name: string, grace = 30): void {
    if (resource !== 'pods' || grace === 0) {
      this.remove(resource, namespace, name);
      return;
    }
    this.update(resource, namespace, name, (o) => {
      o.metadata.deletionTimestamp = new Date(Date.now() + grace * 1000).toISOString();
      o.metadata.deletionGracePeriodSeconds = grace;
      return o;
    });
  }

  subscribe(listener: (e: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  recordEvent(involved: KObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.events.push({ involved: `${involved.kind}/${involved.metadata.name}`, type, reason, message });
  }

  /** Resolves with the first object state (from now on, or the current one) that satisfies `pred`. */
  waitFor(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    pred: (o: KObject | undefined) => boolean,
    timeoutMs = 20_000,
  ): Promise<KObject | undefined> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const o = this.get(resource, namespace, name);
        if (pred(o)) {
          clearTimeout(t);
          unsub();
          resolve(o);
          return true;
        }
        return false;
      };
      const t = setTimeout(() => {
        unsub();
        reject(
          new Error(
            `timed out waiting for ${resource}/${name}: ${JSON.stringify(this.get(resource, namespace, name)?.status)}`,
          ),
        );
      }, timeoutMs);
      const unsub = this.subscribe(() => {
        queueMicrotask(check);
      });
      check();
    });
  }
}
