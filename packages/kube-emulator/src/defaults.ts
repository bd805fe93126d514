import type { KObject } from './contract.js';

type Obj = Record<string, unknown>;

const DEFAULT_TOLERATIONS = [
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
];

function pullPolicy(image: string): string {
  const ref = image.split('@')[0]!;
  const lastSlash = ref.lastIndexOf('/');
  const tagIdx = ref.lastIndexOf(':');
  const tag = tagIdx > lastSlash ? ref.slice(tagIdx + 1) : '';
  if (image.includes('@')) return 'IfNotPresent';
  return !tag || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultContainer(c: Obj): void {
  c.imagePullPolicy ??= pullPolicy(String(c.image ?? ''));
  c.terminationMessagePath ??= '/dev/termination-log';
  c.terminationMessagePolicy ??= 'File';
  c.resources ??= {};
  if (Array.isArray(c.ports)) for (const p of c.ports as Obj[]) p.protocol ??= 'TCP';
}

/** The defaults the real API server fills into a pod spec (SetDefaults_Pod and friends). */
export function applyPodDefaults(pod: KObject): void {
  pod.spec ??= {};
  const spec = pod.spec as Obj;
  spec.restartPolicy ??= 'Always';
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  spec.enableServiceLinks ??= true;
  spec.serviceAccountName ??= (spec.serviceAccount as string | undefined) ?? 'default';
  spec.serviceAccount ??= spec.serviceAccountName;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= 'PreemptLowerPriority';
  if (!Array.isArray(spec.tolerations)) spec.tolerations = structuredClone(DEFAULT_TOLERATIONS);
  for (const key of ['containers', 'initContainers'] as const) {
    if (Array.isArray(spec[key])) for (const c of spec[key] as Obj[]) defaultContainer(c);
  }
  if (Array.isArray(spec.volumes)) {
    for (const v of spec.volumes as Obj[]) {
      if (v.configMap && typeof v.configMap === 'object') (v.configMap as Obj).defaultMode ??= 420;
      if (v.secret && typeof v.secret === 'object') (v.secret as Obj).defaultMode ??= 420;
    }
  }
}

function hasBoth(res: Obj | undefined, key: 'requests' | 'limits', name: string): boolean {
  const r = res?.[key] as Obj | undefined;
  return r?.[name] !== undefined;
}

/** status.qosClass as the real server computes it (simplified to cpu and memory). */
export function qosClass(pod: KObject): 'BestEffort' | 'Burstable' | 'Guaranteed' {
  const spec = (pod.spec ?? {}) as Obj;
  const all = [...((spec.containers as Obj[]) ?? []), ...((spec.initContainers as Obj[]) ?? [])];
  let any = false;
  let guaranteed = true;
  for (const c of all) {
    const res = c.resources as Obj | undefined;
    for (const name of ['cpu', 'memory']) {
      const req = (res?.requests as Obj | undefined)?.[name];
      const lim = (res?.limits as Obj | undefined)?.[name];
      if (req !== undefined || lim !== undefined) any = true;
      if (!hasBoth(res, 'limits', name)) guaranteed = false;
      else if (req !== undefined && String(req) !== String(lim)) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

export function applyPvcDefaults(pvc: KObject, defaultClass: string | undefined): void {
  pvc.spec ??= {};
  const spec = pvc.spec as Obj;
  spec.volumeMode ??= 'Filesystem';
  if (spec.storageClassName === undefined && defaultClass) spec.storageClassName = defaultClass;
}
