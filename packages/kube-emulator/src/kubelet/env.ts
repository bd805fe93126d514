/** Builds a container's environment the way the kubelet does (value, valueFrom, envFrom, $(VAR) expansion). */
import type { KObject, Store } from '../contract.js';
import { arr, type Json, obj, str } from './util.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type EnvResult = { env: Record<string, string> } | { error: string };

/** Expands `$(NAME)` references; `$$(` escapes. Unknown references stay as written, as in Kubernetes. */
export function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && name in env ? (env[name] as string) : m;
  });
}

function dataOf(o: KObject, kind: 'configmaps' | 'secrets'): Record<string, string> {
  const out: Record<string, string> = {};
  const data = obj(o.data) ?? {};
  for (const [k, v] of Object.entries(data)) {
    if (typeof v !== 'string') continue;
    out[k] = kind === 'secrets' ? Buffer.from(v, 'base64').toString('utf8') : v;
  }
  if (kind === 'configmaps') {
    for (const [k, v] of Object.entries(obj(o.binaryData) ?? {})) {
      if (typeof v === 'string') out[k] = Buffer.from(v, 'base64').toString('utf8');
    }
  } else {
    for (const [k, v] of Object.entries(obj(o.stringData) ?? {})) if (typeof v === 'string') out[k] = v;
  }
  return out;
}

function fieldPath(pod: KObject, path: string): string | undefined {
  const md = pod.metadata;
  const st = obj(pod.status) ?? {};
  const sp = obj(pod.spec) ?? {};
  const m = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(path);
  if (m) return md[m[1] as 'labels' | 'annotations']?.[m[2] as string] ?? '';
  switch (path) {
    case 'metadata.name':
      return md.name;
    case 'metadata.namespace':
      return md.namespace ?? 'default';
    case 'metadata.uid':
      return md.uid ?? '';
    case 'status.podIP':
      return str(st.podIP) ?? '';
    case 'status.hostIP':
      return str(st.hostIP) ?? '';
    case 'spec.nodeName':
      return str(sp.nodeName) ?? '';
    case 'spec.serviceAccountName':
      return str(sp.serviceAccountName) ?? 'default';
    default:
      return undefined;
  }
}

/** Resolves `container.env`/`envFrom` against the store; an error string is a CreateContainerConfigError. */
export function resolveEnv(store: Store, pod: KObject, container: Json): EnvResult {
  const ns = pod.metadata.namespace ?? 'default';
  const env: Record<string, string> = {};
  for (const from of arr(container.envFrom)) {
    const prefix = str(from.prefix) ?? '';
    for (const kind of ['configmaps', 'secrets'] as const) {
      const ref = obj(from[kind === 'configmaps' ? 'configMapRef' : 'secretRef']);
      if (!ref) continue;
      const name = str(ref.name) ?? '';
      const o = store.get(kind, ns, name);
      if (!o) {
        if (ref.optional === true) continue;
        return { error: `${kind === 'configmaps' ? 'configmap' : 'secret'} "${name}" not found` };
      }
      for (const [k, v] of Object.entries(dataOf(o, kind))) env[prefix + k] = v;
    }
  }
  for (const e of arr(container.env)) {
    const name = str(e.name);
    if (!name) continue;
    if (typeof e.value === 'string' || e.valueFrom === undefined) {
      env[name] = expand(str(e.value) ?? '', env);
      continue;
    }
    const vf = obj(e.valueFrom) ?? {};
    const cmRef = obj(vf.configMapKeyRef);
    const secRef = obj(vf.secretKeyRef);
    const ref = cmRef ?? secRef;
    if (ref) {
      const kind = cmRef ? 'configmaps' : 'secrets';
      const label = cmRef ? 'configmap' : 'secret';
      const oname = str(ref.name) ?? '';
      const key = str(ref.key) ?? '';
      const o = store.get(kind, ns, oname);
      if (!o) {
        if (ref.optional === true) continue;
        return { error: `${label} "${oname}" not found` };
      }
      const data = dataOf(o, kind);
      if (!(key in data)) {
        if (ref.optional === true) continue;
        return { error: `couldn't find key ${key} in ${cmRef ? 'ConfigMap' : 'Secret'} ${ns}/${oname}` };
      }
      env[name] = data[key] as string;
      continue;
    }
    const fr = obj(vf.fieldRef);
    if (fr) {
      const v = fieldPath(pod, str(fr.fieldPath) ?? '');
      if (v === undefined) return { error: `unsupported fieldPath: ${str(fr.fieldPath)}` };
      env[name] = v;
      continue;
    }
    if (obj(vf.resourceFieldRef)) env[name] = '0';
  }
  return { env };
}
