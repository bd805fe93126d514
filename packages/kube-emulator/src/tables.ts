import type { KObject, Resource } from './contract.js';

type Obj = Record<string, unknown>;

interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

const col = (name: string, type = 'string', priority = 0, format = '', description = ''): Column => ({
  name,
  type,
  format,
  description: description || name,
  priority,
});

/** kubectl's HumanDuration: "5s", "3m20s", "5h", "3d4h", "2y". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(seconds / 3600);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const d = Math.floor(hours / 24) % 365;
    return d === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${d}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

const age = (ts: unknown): string =>
  typeof ts === 'string' && ts ? humanDuration(Date.now() - Date.parse(ts)) : '<unknown>';

const none = (v: unknown): string => (v === undefined || v === null || v === '' ? '<none>' : String(v));

function accessModes(modes: unknown): string {
  const short: Record<string, string> = {
    ReadWriteOnce: 'RWO',
    ReadOnlyMany: 'ROX',
    ReadWriteMany: 'RWX',
    ReadWriteOncePod: 'RWOP',
  };
  return Array.isArray(modes) ? modes.map((m) => short[String(m)] ?? String(m)).join(',') : '';
}

/** The STATUS column of `kubectl get pods` (printPod in pkg/printers/internalversion/printers.go). */
export function podStatusReason(pod: KObject): string {
  const status = (pod.status ?? {}) as Obj;
  const spec = (pod.spec ?? {}) as Obj;
  let reason = String(status.reason || status.phase || '');
  const initStatuses = (status.initContainerStatuses ?? []) as Obj[];
  const initSpecs = (spec.initContainers ?? []) as Obj[];
  const restartable = new Set(initSpecs.filter((c) => c.restartPolicy === 'Always').map((c) => c.name));
  let initializing = false;
  initStatuses.forEach((cs, i) => {
    if (initializing) return;
    const state = (cs.state ?? {}) as Obj;
    const term = state.terminated as Obj | undefined;
    const wait = state.waiting as Obj | undefined;
    if (term && term.exitCode === 0) return;
    if (restartable.has(cs.name) && cs.started === true) return;
    if (term) {
      if (term.reason) reason = `Init:${term.reason}`;
      else if (term.signal) reason = `Init:Signal:${term.signal}`;
      else reason = `Init:ExitCode:${term.exitCode}`;
    } else if (wait?.reason && wait.reason !== 'PodInitializing') {
      reason = `Init:${wait.reason}`;
    } else {
      reason = `Init:${i}/${initSpecs.length}`;
    }
    initializing = true;
  });
  if (!initializing) {
    let hasRunning = false;
    const statuses = (status.containerStatuses ?? []) as Obj[];
    for (let i = statuses.length - 1; i >= 0; i--) {
      const cs = statuses[i]!;
      const state = (cs.state ?? {}) as Obj;
      const wait = state.waiting as Obj | undefined;
      const term = state.terminated as Obj | undefined;
      if (wait?.reason) reason = String(wait.reason);
      else if (term?.reason) reason = String(term.reason);
      else if (term) reason = term.signal ? `Signal:${term.signal}` : `ExitCode:${term.exitCode}`;
      else if (state.running && cs.ready) hasRunning = true;
    }
    if (reason === 'Completed' && hasRunning) {
      const conds = (status.conditions ?? []) as Obj[];
      const ready = conds.some((c) => c.type === 'Ready' && c.status === 'True');
      reason = ready ? 'Running' : 'NotReady';
    }
  }
  if (pod.metadata.deletionTimestamp) reason = status.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return reason;
}

interface TableDef {
  columns: Column[];
  cells: (o: KObject) => unknown[];
}

const POD: TableDef = {
  columns: [
    col('Name', 'string', 0, 'name'),
    col('Ready', 'string', 0, '', 'The aggregate readiness state of this pod for accepting traffic.'),
    col('Status', 'string', 0, '', 'The aggregate status of the containers in this pod.'),
    col(
      'Restarts',
      'string',
      0,
      '',
      'The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.',
    ),
    col('Age', 'string'),
    col('IP', 'string', 1, '', 'IP address assigned to the pod'),
    col('Node', 'string', 1, '', 'Name of the node assigned to the pod'),
    col('Nominated Node', 'string', 1),
    col('Readiness Gates', 'string', 1),
  ],
  cells: (o) => {
    const status = (o.status ?? {}) as Obj;
    const spec = (o.spec ?? {}) as Obj;
    const total = ((spec.containers ?? []) as unknown[]).length;
    const statuses = (status.containerStatuses ?? []) as Obj[];
    const ready = statuses.filter((c) => c.ready === true).length;
    let restarts = 0;
    let lastRestart = 0;
    for (const cs of statuses) {
      restarts += Number(cs.restartCount ?? 0);
      const fin = ((cs.lastState as Obj | undefined)?.terminated as Obj | undefined)?.finishedAt;
      if (typeof fin === 'string') lastRestart = Math.max(lastRestart, Date.parse(fin));
    }
    const restartText =
      lastRestart > 0 && restarts > 0
        ? `${restarts} (${humanDuration(Date.now() - lastRestart)} ago)`
        : String(restarts);
    const gates = (spec.readinessGates ?? []) as Obj[];
    let gateText = '<none>';
    if (gates.length > 0) {
      const conds = (status.conditions ?? []) as Obj[];
      const ok = gates.filter((g) =>
        conds.some((c) => c.type === g.conditionType && c.status === 'True'),
      ).length;
      gateText = `${ok}/${gates.length}`;
    }
    const ips = (status.podIPs ?? []) as Obj[];
    return [
      o.metadata.name,
      `${ready}/${total}`,
      podStatusReason(o),
      restartText,
      age(o.metadata.creationTimestamp),
      none(ips[0]?.ip ?? status.podIP),
      none(spec.nodeName),
      none(status.nominatedNodeName),
      gateText,
    ];
  },
};

const TABLES: Partial<Record<Resource, TableDef>> = {
  pods: POD,
  persistentvolumeclaims: {
    columns: [
      col('Name', 'string', 0, 'name'),
      col('Status'),
      col('Volume'),
      col('Capacity'),
      col('Access Modes'),
      col('StorageClass'),
      col('VolumeAttributesClass'),
      col('Age'),
      col('VolumeMode', 'string', 1),
    ],
    cells: (o) => {
      const spec = (o.spec ?? {}) as Obj;
      const status = (o.status ?? {}) as Obj;
      const phase = o.metadata.deletionTimestamp ? 'Terminating' : String(status.phase ?? '');
      const bound = status.phase === 'Bound';
      return [
        o.metadata.name,
        phase,
        String(spec.volumeName ?? ''),
        bound ? String((status.capacity as Obj | undefined)?.storage ?? '') : '',
        bound ? accessModes(status.accessModes) : '',
        String(spec.storageClassName ?? ''),
        none(spec.volumeAttributesClassName),
        age(o.metadata.creationTimestamp),
        String(spec.volumeMode ?? ''),
      ];
    },
  },
  persistentvolumes: {
    columns: [
      col('Name', 'string', 0, 'name'),
      col('Capacity'),
      col('Access Modes'),
      col('Reclaim Policy'),
      col('Status'),
      col('Claim'),
      col('StorageClass'),
      col('VolumeAttributesClass'),
      col('Reason'),
      col('Age'),
      col('VolumeMode', 'string', 1),
    ],
    cells: (o) => {
      const spec = (o.spec ?? {}) as Obj;
      const status = (o.status ?? {}) as Obj;
      const claim = spec.claimRef as Obj | undefined;
      return [
        o.metadata.name,
        String((spec.capacity as Obj | undefined)?.storage ?? ''),
        accessModes(spec.accessModes),
        String(spec.persistentVolumeReclaimPolicy ?? ''),
        o.metadata.deletionTimestamp ? 'Terminating' : String(status.phase ?? ''),
        claim ? `${claim.namespace}/${claim.name}` : '',
        String(spec.storageClassName ?? ''),
        none(spec.volumeAttributesClassName),
        String(status.reason ?? ''),
        age(o.metadata.creationTimestamp),
        String(spec.volumeMode ?? ''),
      ];
    },
  },
  configmaps: {
    columns: [col('Name', 'string', 0, 'name'), col('Data', 'integer'), col('Age')],
    cells: (o) => [
      o.metadata.name,
      Object.keys((o.data ?? {}) as object).length + Object.keys((o.binaryData ?? {}) as object).length,
      age(o.metadata.creationTimestamp),
    ],
  },
  secrets: {
    columns: [col('Name', 'string', 0, 'name'), col('Type'), col('Data', 'integer'), col('Age')],
    cells: (o) => [
      o.metadata.name,
      String(o.type ?? 'Opaque'),
      Object.keys((o.data ?? {}) as object).length + Object.keys((o.stringData ?? {}) as object).length,
      age(o.metadata.creationTimestamp),
    ],
  },
  namespaces: {
    columns: [col('Name', 'string', 0, 'name'), col('Status'), col('Age')],
    cells: (o) => [
      o.metadata.name,
      String((o.status as Obj | undefined)?.phase ?? ''),
      age(o.metadata.creationTimestamp),
    ],
  },
  serviceaccounts: {
    columns: [col('Name', 'string', 0, 'name'), col('Secrets', 'integer'), col('Age')],
    cells: (o) => [
      o.metadata.name,
      ((o.secrets ?? []) as unknown[]).length,
      age(o.metadata.creationTimestamp),
    ],
  },
  events: {
    columns: [
      col('Last Seen'),
      col('Type'),
      col('Reason'),
      col('Object'),
      col('Subobject', 'string', 1),
      col('Source', 'string', 1),
      col('Message'),
      col('First Seen', 'string', 1),
      col('Count', 'string', 1),
      col('Name', 'string', 1, 'name'),
    ],
    cells: (o) => {
      const io = (o.involvedObject ?? {}) as Obj;
      const src = (o.source ?? {}) as Obj;
      const last = o.lastTimestamp ?? o.eventTime ?? o.metadata.creationTimestamp;
      return [
        age(last),
        String(o.type ?? ''),
        String(o.reason ?? ''),
        `${String(io.kind ?? '').toLowerCase()}/${String(io.name ?? '')}`,
        String(io.fieldPath ?? ''),
        src.host ? `${src.component}, ${src.host}` : String(src.component ?? ''),
        String(o.message ?? ''),
        age(o.firstTimestamp ?? o.metadata.creationTimestamp),
        String(o.count ?? 1),
        o.metadata.name,
      ];
    },
  },
  nodes: {
    columns: [
      col('Name', 'string', 0, 'name'),
      col('Status'),
      col('Roles'),
      col('Age'),
      col('Version'),
      col('Internal-IP', 'string', 1),
      col('External-IP', 'string', 1),
      col('OS-Image', 'string', 1),
      col('Kernel-Version', 'string', 1),
      col('Container-Runtime', 'string', 1),
    ],
    cells: (o) => {
      const status = (o.status ?? {}) as Obj;
      const conds = (status.conditions ?? []) as Obj[];
      const ready = conds.find((c) => c.type === 'Ready');
      let st = ready?.status === 'True' ? 'Ready' : ready ? 'NotReady' : 'Unknown';
      if ((o.spec as Obj | undefined)?.unschedulable) st += ',SchedulingDisabled';
      const roles = Object.keys(o.metadata.labels ?? {})
        .filter((k) => k.startsWith('node-role.kubernetes.io/'))
        .map((k) => k.slice('node-role.kubernetes.io/'.length));
      const addrs = (status.addresses ?? []) as Obj[];
      const ni = (status.nodeInfo ?? {}) as Obj;
      return [
        o.metadata.name,
        st,
        roles.length ? roles.join(',') : '<none>',
        age(o.metadata.creationTimestamp),
        String(ni.kubeletVersion ?? ''),
        none(addrs.find((a) => a.type === 'InternalIP')?.address),
        none(addrs.find((a) => a.type === 'ExternalIP')?.address),
        String(ni.osImage ?? ''),
        String(ni.kernelVersion ?? ''),
        String(ni.containerRuntimeVersion ?? ''),
      ];
    },
  },
  storageclasses: {
    columns: [
      col('Name', 'string', 0, 'name'),
      col('Provisioner'),
      col('ReclaimPolicy'),
      col('VolumeBindingMode'),
      col('AllowVolumeExpansion'),
      col('Age'),
    ],
    cells: (o) => [
      o.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true'
        ? `${o.metadata.name} (default)`
        : o.metadata.name,
      String(o.provisioner ?? ''),
      String(o.reclaimPolicy ?? 'Delete'),
      String(o.volumeBindingMode ?? 'Immediate'),
      String(o.allowVolumeExpansion === true),
      age(o.metadata.creationTimestamp),
    ],
  },
};

const DEFAULT_TABLE: TableDef = {
  columns: [col('Name', 'string', 0, 'name'), col('Age')],
  cells: (o) => [o.metadata.name, age(o.metadata.creationTimestamp)],
};

export type IncludeObject = 'None' | 'Metadata' | 'Object';

function rowObject(o: KObject, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

/** A meta.k8s.io/v1 Table for `objects`; `withColumns` false omits columnDefinitions (later watch events). */
export function toTable(
  resource: Resource,
  objects: KObject[],
  opts: {
    resourceVersion?: string;
    include?: IncludeObject;
    withColumns?: boolean;
    continueToken?: string;
  } = {},
): Record<string, unknown> {
  const def = TABLES[resource] ?? DEFAULT_TABLE;
  const include = opts.include ?? 'Metadata';
  const metadata: Obj = {};
  if (opts.resourceVersion) metadata.resourceVersion = opts.resourceVersion;
  if (opts.continueToken) metadata.continue = opts.continueToken;
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata,
    columnDefinitions: opts.withColumns === false ? null : def.columns,
    rows: objects.map((o) => {
      const row: Obj = { cells: def.cells(o) };
      const obj = rowObject(o, include);
      if (obj !== undefined) row.object = obj;
      return row;
    }),
  };
}
