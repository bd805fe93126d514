import type { Resource } from './contract.js';

/** Static description of one served resource (discovery, kinds, delete response shape). */
export interface ResourceInfo {
  resource: Resource;
  kind: string;
  group: string;
  version: string;
  namespaced: boolean;
  singular: string;
  shortNames?: string[];
  categories?: string[];
  /** DELETE answers with the object (pods, PVCs, …) rather than a Status (configmaps, secrets, events). */
  deleteReturnsObject: boolean;
  /** Name format: DNS-1123 subdomain or label. */
  nameFormat: 'subdomain' | 'label';
  hasStatus: boolean;
  verbs: string[];
}

const ALL = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export const RESOURCES: ResourceInfo[] = [
  {
    resource: 'namespaces',
    kind: 'Namespace',
    group: '',
    version: 'v1',
    namespaced: false,
    singular: 'namespace',
    shortNames: ['ns'],
    deleteReturnsObject: true,
    nameFormat: 'label',
    hasStatus: true,
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
  },
  {
    resource: 'pods',
    kind: 'Pod',
    group: '',
    version: 'v1',
    namespaced: true,
    singular: 'pod',
    shortNames: ['po'],
    categories: ['all'],
    deleteReturnsObject: true,
    nameFormat: 'subdomain',
    hasStatus: true,
    verbs: ALL,
  },
  {
    resource: 'persistentvolumeclaims',
    kind: 'PersistentVolumeClaim',
    group: '',
    version: 'v1',
    namespaced: true,
    singular: 'persistentvolumeclaim',
    shortNames: ['pvc'],
    deleteReturnsObject: true,
    nameFormat: 'subdomain',
    hasStatus: true,
    verbs: ALL,
  },
  {
    resource: 'persistentvolumes',
    kind: 'PersistentVolume',
    group: '',
    version: 'v1',
    namespaced: false,
    singular: 'persistentvolume',
    shortNames: ['pv'],
    deleteReturnsObject: true,
    nameFormat: 'subdomain',
    hasStatus: true,
    verbs: ALL,
  },
  {
    resource: 'configmaps',
    kind: 'ConfigMap',
    group: '',
    version: 'v1',
    namespaced: true,
    singular: 'configmap',
    shortNames: ['cm'],
    deleteReturnsObject: false,
    nameFormat: 'subdomain',
    hasStatus: false,
    verbs: ALL,
  },
  {
    resource: 'secrets',
    kind: 'Secret',
    group: '',
    version: 'v1',
    namespaced: true,
    singular: 'secret',
    deleteReturnsObject: false,
    nameFormat: 'subdomain',
    hasStatus: false,
    verbs: ALL,
  },
  {
    resource: 'serviceaccounts',
    kind: 'ServiceAccount',
    group: '',
    version: 'v1',
    namespaced: true,
    singular: 'serviceaccount',
    shortNames: ['sa'],
    deleteReturnsObject: true,
    nameFormat: 'subdomain',
    hasStatus: false,
    verbs: ALL,
  },
  {
    resource: 'events',
    kind: 'Event',
    group: '',
    version: 'v1',
    namespaced: true,
    singular: 'event',
    shortNames: ['ev'],
    deleteReturnsObject: false,
    nameFormat: 'subdomain',
    hasStatus: false,
    verbs: ALL,
  },
  {
    resource: 'nodes',
    kind: 'Node',
    group: '',
    version: 'v1',
    namespaced: false,
    singular: 'node',
    shortNames: ['no'],
    deleteReturnsObject: false,
    nameFormat: 'subdomain',
    hasStatus: true,
    verbs: ALL,
  },
  {
    resource: 'storageclasses',
    kind: 'StorageClass',
    group: 'storage.k8s.io',
    version: 'v1',
    namespaced: false,
    singular: 'storageclass',
    shortNames: ['sc'],
    deleteReturnsObject: true,
    nameFormat: 'subdomain',
    hasStatus: false,
    verbs: ALL,
  },
];

export const BY_RESOURCE = new Map<Resource, ResourceInfo>(RESOURCES.map((r) => [r.resource, r]));

export function info(resource: Resource): ResourceInfo {
  const i = BY_RESOURCE.get(resource);
  if (!i) throw new Error(`unknown resource ${resource}`);
  return i;
}

export const apiVersionOf = (i: ResourceInfo): string => (i.group ? `${i.group}/${i.version}` : i.version);

/** Finds the resource an ownerReference or involvedObject names by apiVersion + kind. */
export function resourceForKind(apiVersion: string, kind: string): ResourceInfo | undefined {
  return RESOURCES.find((r) => r.kind === kind && apiVersionOf(r) === apiVersion);
}

/** Discovery `APIResourceList` for one group/version. */
export function apiResourceList(group: string, version: string): Record<string, unknown> {
  const resources: Record<string, unknown>[] = [];
  for (const r of RESOURCES.filter((x) => x.group === group && x.version === version)) {
    const entry: Record<string, unknown> = {
      name: r.resource,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: r.verbs,
    };
    if (r.shortNames) entry.shortNames = r.shortNames;
    if (r.categories) entry.categories = r.categories;
    resources.push(entry);
    if (r.hasStatus) {
      resources.push({
        name: `${r.resource}/status`,
        singularName: '',
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: ['get', 'patch', 'update'],
      });
    }
    if (r.resource === 'pods') {
      resources.push(
        {
          name: 'pods/attach',
          singularName: '',
          namespaced: true,
          kind: 'PodAttachOptions',
          verbs: ['create', 'get'],
        },
        {
          name: 'pods/exec',
          singularName: '',
          namespaced: true,
          kind: 'PodExecOptions',
          verbs: ['create', 'get'],
        },
        { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] },
      );
    }
  }
  if (group === 'authorization.k8s.io') {
    resources.push({
      name: 'selfsubjectaccessreviews',
      singularName: 'selfsubjectaccessreview',
      namespaced: false,
      kind: 'SelfSubjectAccessReview',
      verbs: ['create'],
    });
  }
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources,
  };
}

export const API_GROUPS = ['storage.k8s.io', 'authorization.k8s.io'];

export function apiGroupList(): Record<string, unknown> {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: API_GROUPS.map((name) => ({
      name,
      versions: [{ groupVersion: `${name}/v1`, version: 'v1' }],
      preferredVersion: { groupVersion: `${name}/v1`, version: 'v1' },
    })),
  };
}
