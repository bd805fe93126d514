/**
 * The scheduler and volume binder of the emulated cluster: assigns new pods to the kubelet's node and binds
 * the claims they use (WaitForFirstConsumer: on first use; Immediate: on creation).
 */
import type { KObject, Store } from '../contract.js';
import { arr, type Json, obj, str } from './util.js';

const DEFAULT_CLASS_ANNOTATION = 'storageclass.kubernetes.io/is-default-class';

export class Scheduler {
  constructor(
    private readonly store: Store,
    private readonly nodeName: string,
  ) {}

  private classOf(pvc: KObject): KObject | undefined {
    const name = str(obj(pvc.spec)?.storageClassName);
    if (name !== undefined) return this.store.get('storageclasses', undefined, name);
    return this.store
      .list('storageclasses')
      .find((c) => c.metadata.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true');
  }

  private isBound(pvc: KObject): boolean {
    return str(obj(pvc.status)?.phase) === 'Bound';
  }

  /** A new claim: Immediate classes bind now; WaitForFirstConsumer ones wait and say so. */
  claimAdded(pvc: KObject): void {
    if (this.isBound(pvc) || pvc.metadata.deletionTimestamp) return;
    const cls = this.classOf(pvc);
    if (str(cls?.volumeBindingMode) === 'WaitForFirstConsumer') {
      this.store.recordEvent(
        pvc,
        'Normal',
        'WaitForFirstConsumer',
        'waiting for first consumer to be created before binding',
        'persistentvolume-controller',
      );
      return;
    }
    this.bind(pvc, cls);
  }

  /** Binds a claim as a dynamic provisioner would. */
  bind(pvc: KObject, cls: KObject | undefined): void {
    const ns = pvc.metadata.namespace;
    const provisioner = str(cls?.provisioner) ?? 'emulator.clauderon.dev/hostpath';
    const volumeName = `pvc-${pvc.metadata.uid ?? pvc.metadata.name}`;
    const updated = this.store.update('persistentvolumeclaims', ns, pvc.metadata.name, (cur) => {
      const annotations = { ...(cur.metadata.annotations ?? {}) };
      annotations['pv.kubernetes.io/bind-completed'] = 'yes';
      annotations['pv.kubernetes.io/bound-by-controller'] = 'yes';
      annotations['volume.kubernetes.io/storage-provisioner'] = provisioner;
      annotations['volume.beta.kubernetes.io/storage-provisioner'] = provisioner;
      cur.metadata.annotations = annotations;
      const spec: Json = { ...(obj(cur.spec) ?? {}) };
      spec.volumeName = volumeName;
      if (spec.storageClassName === undefined && cls) spec.storageClassName = cls.metadata.name;
      cur.spec = spec;
      return cur;
    });
    if (!updated) return;
    this.store.recordEvent(
      updated,
      'Normal',
      'Provisioning',
      `External provisioner is provisioning volume for claim "${ns}/${pvc.metadata.name}"`,
      provisioner,
    );
    const spec = obj(updated.spec) ?? {};
    const bound = this.store.updateStatus('persistentvolumeclaims', ns, pvc.metadata.name, (cur) => ({
      ...(obj(cur.status) ?? {}),
      phase: 'Bound',
      accessModes: arr(spec.accessModes).length > 0 ? spec.accessModes : ['ReadWriteOnce'],
      capacity: { storage: str(obj(obj(spec.resources)?.requests)?.storage) ?? '1Gi' },
    }));
    if (bound) {
      this.store.recordEvent(
        bound,
        'Normal',
        'ProvisioningSucceeded',
        `Successfully provisioned volume ${volumeName}`,
        provisioner,
      );
    }
  }

  /** Claims the pod uses, or the name of the first missing one. */
  private claimsOf(pod: KObject): { claims: KObject[] } | { missing: string } {
    const ns = pod.metadata.namespace;
    const claims: KObject[] = [];
    for (const v of arr(obj(pod.spec)?.volumes)) {
      const claimName = str(obj(v.persistentVolumeClaim)?.claimName);
      if (claimName === undefined) continue;
      const pvc = this.store.get('persistentvolumeclaims', ns, claimName);
      if (!pvc || pvc.metadata.deletionTimestamp) return { missing: claimName };
      claims.push(pvc);
    }
    return { claims };
  }

  /** Binds every unbound claim of a pod that landed on this node. Returns false when one is missing. */
  bindClaimsFor(pod: KObject): boolean {
    const r = this.claimsOf(pod);
    if ('missing' in r) return false;
    for (const pvc of r.claims) {
      if (this.isBound(pvc)) continue;
      const cls = this.classOf(pvc);
      const withNode = this.store.update(
        'persistentvolumeclaims',
        pvc.metadata.namespace,
        pvc.metadata.name,
        (cur) => {
          cur.metadata.annotations = {
            ...(cur.metadata.annotations ?? {}),
            'volume.kubernetes.io/selected-node': this.nodeName,
          };
          return cur;
        },
      );
      if (withNode) this.bind(withNode, cls);
    }
    return true;
  }

  /**
   * Tries to schedule a pod without a node. Returns true when it was bound to this node; otherwise the pod
   * is left Pending with PodScheduled=False (Unschedulable), to be retried when claims appear.
   */
  schedule(pod: KObject): boolean {
    const ns = pod.metadata.namespace;
    const r = this.claimsOf(pod);
    if ('missing' in r) {
      const message = `persistentvolumeclaim "${r.missing}" not found`;
      const conds = arr(obj(pod.status)?.conditions);
      const already = conds.some((c) => c.type === 'PodScheduled' && c.message === message);
      if (!already) {
        const updated = this.store.updateStatus('pods', ns, pod.metadata.name, (cur) => ({
          ...(obj(cur.status) ?? {}),
          phase: 'Pending',
          conditions: [
            {
              type: 'PodScheduled',
              status: 'False',
              reason: 'Unschedulable',
              message,
              lastProbeTime: null,
              lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
            },
          ],
        }));
        if (updated) {
          this.store.recordEvent(
            updated,
            'Warning',
            'FailedScheduling',
            `0/1 nodes are available: ${message}.`,
            'default-scheduler',
          );
        }
      }
      return false;
    }
    this.bindClaimsFor(pod);
    const updated = this.store.update('pods', ns, pod.metadata.name, (cur) => {
      if (cur.metadata.deletionTimestamp || str(obj(cur.spec)?.nodeName)) return cur;
      cur.spec = { ...(obj(cur.spec) ?? {}), nodeName: this.nodeName };
      return cur;
    });
    if (!updated) return false;
    const scheduled = this.store.updateStatus('pods', ns, pod.metadata.name, (cur) => ({
      ...(obj(cur.status) ?? {}),
      phase: str(obj(cur.status)?.phase) ?? 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'True',
          lastProbeTime: null,
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        },
      ],
    }));
    this.store.recordEvent(
      scheduled ?? updated,
      'Normal',
      'Scheduled',
      `Successfully assigned ${ns}/${pod.metadata.name} to ${this.nodeName}`,
      'default-scheduler',
    );
    return true;
  }
}
