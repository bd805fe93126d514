/** Prepares a pod's volumes as host directories that the container processes bind-mount. */
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { KObject, Store } from '../contract.js';
import { arr, type Json, num, obj, str } from './util.js';

export interface PreparedVolume {
  name: string;
  path: string;
  /** configMap, secret, projected and downwardAPI volumes are always mounted read-only. */
  readOnly: boolean;
}

export type PrepareResult = { volumes: Map<string, PreparedVolume> } | { error: string };

export function pvcDir(stateDir: string, pvcUid: string): string {
  return join(stateDir, 'volumes', pvcUid);
}

export function podDir(stateDir: string, podUid: string): string {
  return join(stateDir, 'pods', podUid);
}

/** Applies fsGroup like fsGroupChangePolicy OnRootMismatch: group-owned, setgid, group-writable. */
function applyFsGroup(dir: string, fsGroup: number | undefined): void {
  if (fsGroup === undefined) return;
  try {
    if (statSync(dir).gid === fsGroup) return;
  } catch {
    return;
  }
  const walk = (p: string): void => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) return;
    try {
      chownSync(p, st.uid, fsGroup);
      chmodSync(p, st.isDirectory() ? (st.mode & 0o7777) | 0o2070 : (st.mode & 0o7777) | 0o060);
    } catch {
      // not root: nothing we can do
    }
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
  };
  walk(dir);
}

function safeRel(p: string): string {
  const n = normalize(p).replace(/^\/+/, '');
  if (n.startsWith('..')) throw new Error(`invalid path ${p}`);
  return n;
}

function writeKeyFile(
  dir: string,
  rel: string,
  data: Buffer,
  mode: number,
  fsGroup: number | undefined,
): void {
  const file = join(dir, safeRel(rel));
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, data);
  chmodSync(file, mode);
  if (fsGroup !== undefined) {
    try {
      chownSync(file, 0, fsGroup);
    } catch {
      // not root
    }
  }
}

function keyData(o: KObject, kind: 'configmaps' | 'secrets'): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(obj(o.data) ?? {})) {
    if (typeof v === 'string')
      out.set(k, kind === 'secrets' ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8'));
  }
  for (const [k, v] of Object.entries(obj(o.binaryData) ?? {})) {
    if (typeof v === 'string') out.set(k, Buffer.from(v, 'base64'));
  }
  for (const [k, v] of Object.entries(obj(o.stringData) ?? {})) {
    if (typeof v === 'string') out.set(k, Buffer.from(v, 'utf8'));
  }
  return out;
}

/** Writes the keys of a ConfigMap/Secret into `dir`; returns an error text when it is missing. */
function writeObjectKeys(
  store: Store,
  ns: string,
  kind: 'configmaps' | 'secrets',
  src: Json,
  dir: string,
  defaultMode: number,
  fsGroup: number | undefined,
): string | undefined {
  const name = str(kind === 'secrets' ? (src.secretName ?? src.name) : src.name) ?? '';
  const o = store.get(kind, ns, name);
  if (!o) {
    if (src.optional === true) return undefined;
    return `${kind === 'configmaps' ? 'configmap' : 'secret'} "${name}" not found`;
  }
  const data = keyData(o, kind);
  const items = arr(src.items);
  if (items.length === 0) {
    for (const [k, v] of data) writeKeyFile(dir, k, v, defaultMode, fsGroup);
    return undefined;
  }
  for (const it of items) {
    const key = str(it.key) ?? '';
    const v = data.get(key);
    if (!v) {
      if (src.optional === true) continue;
      return `configmap references non-existent config key: ${key}`;
    }
    writeKeyFile(dir, str(it.path) ?? key, v, num(it.mode) ?? defaultMode, fsGroup);
  }
  return undefined;
}

function fieldValue(pod: KObject, path: string): string {
  const md = pod.metadata;
  if (path === 'metadata.labels') {
    return Object.entries(md.labels ?? {})
      .map(([k, v]) => `${k}="${v}"\n`)
      .join('');
  }
  if (path === 'metadata.annotations') {
    return Object.entries(md.annotations ?? {})
      .map(([k, v]) => `${k}="${v}"\n`)
      .join('');
  }
  if (path === 'metadata.name') return md.name;
  if (path === 'metadata.namespace') return md.namespace ?? 'default';
  if (path === 'metadata.uid') return md.uid ?? '';
  return '';
}

/**
 * Materialises every volume of `pod`. ConfigMap/Secret volumes are rewritten on each call (so a retry after
 * a FailedMount sees the object once it exists); emptyDirs and claims are created once and kept.
 */
export function prepareVolumes(store: Store, stateDir: string, pod: KObject): PrepareResult {
  const ns = pod.metadata.namespace ?? 'default';
  const uid = pod.metadata.uid ?? pod.metadata.name;
  const spec = obj(pod.spec) ?? {};
  const fsGroup = num(obj(spec.securityContext)?.fsGroup);
  const base = podDir(stateDir, uid);
  const volumes = new Map<string, PreparedVolume>();
  for (const v of arr(spec.volumes)) {
    const name = str(v.name) ?? '';
    const pvc = obj(v.persistentVolumeClaim);
    if (pvc) {
      const claim = store.get('persistentvolumeclaims', ns, str(pvc.claimName) ?? '');
      if (!claim) return { error: `persistentvolumeclaim "${str(pvc.claimName)}" not found` };
      const dir = pvcDir(stateDir, claim.metadata.uid ?? claim.metadata.name);
      if (!existsDir(dir)) {
        // Like kind's local-path provisioner: a world-writable directory any pod user can use.
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o777);
      }
      applyFsGroup(dir, fsGroup);
      volumes.set(name, { name, path: dir, readOnly: pvc.readOnly === true });
      continue;
    }
    if (obj(v.emptyDir) || v.emptyDir !== undefined) {
      const dir = join(base, 'empty', name);
      if (!existsDir(dir)) {
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o777);
      }
      applyFsGroup(dir, fsGroup);
      volumes.set(name, { name, path: dir, readOnly: false });
      continue;
    }
    const hostPath = obj(v.hostPath);
    if (hostPath) {
      const p = str(hostPath.path) ?? '/';
      if (str(hostPath.type) === 'DirectoryOrCreate') mkdirSync(p, { recursive: true });
      volumes.set(name, { name, path: p, readOnly: false });
      continue;
    }
    const cm = obj(v.configMap);
    const sec = obj(v.secret);
    const proj = obj(v.projected);
    const dapi = obj(v.downwardAPI);
    if (!cm && !sec && !proj && !dapi) continue; // unsupported volume type: not mounted
    const dir = join(base, 'cm', name);
    if (cm || sec) {
      // Check before touching the directory: a missing object must leave earlier contents in place.
      const src = (cm ?? sec) as Json;
      const oname = str(sec ? (src.secretName ?? src.name) : src.name) ?? '';
      if (src.optional !== true && !store.get(cm ? 'configmaps' : 'secrets', ns, oname)) {
        return {
          error: `MountVolume.SetUp failed for volume "${name}" : ${cm ? 'configmap' : 'secret'} "${oname}" not found`,
        };
      }
    }
    // Empty the directory rather than replacing it: running containers have it bind-mounted, so rewriting
    // its files is how ConfigMap/Secret updates reach them.
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    for (const e of readdirSync(dir)) rmSync(join(dir, e), { recursive: true, force: true });
    chmodSync(dir, 0o755);
    if (fsGroup !== undefined) applyFsGroup(dir, fsGroup);
    if (cm || sec) {
      const kind = cm ? 'configmaps' : 'secrets';
      const src = (cm ?? sec) as Json;
      const err = writeObjectKeys(store, ns, kind, src, dir, num(src.defaultMode) ?? 0o644, fsGroup);
      if (err) return { error: `MountVolume.SetUp failed for volume "${name}" : ${err}` };
    }
    const writeDownward = (items: Json[], mode: number): void => {
      for (const it of items) {
        const fr = obj(it.fieldRef);
        const value = fr ? fieldValue(pod, str(fr.fieldPath) ?? '') : '';
        writeKeyFile(dir, str(it.path) ?? 'x', Buffer.from(value), num(it.mode) ?? mode, fsGroup);
      }
    };
    if (dapi) writeDownward(arr(dapi.items), num(dapi.defaultMode) ?? 0o644);
    if (proj) {
      const mode = num(proj.defaultMode) ?? 0o644;
      for (const s of arr(proj.sources)) {
        const pcm = obj(s.configMap);
        const psec = obj(s.secret);
        if (pcm || psec) {
          // Projected sources that the emulator cannot satisfy (e.g. kube-root-ca.crt) are skipped.
          const err = writeObjectKeys(
            store,
            ns,
            pcm ? 'configmaps' : 'secrets',
            { ...(pcm ?? psec), optional: true },
            dir,
            mode,
            fsGroup,
          );
          if (err) return { error: `MountVolume.SetUp failed for volume "${name}" : ${err}` };
        }
        const tok = obj(s.serviceAccountToken);
        if (tok)
          writeKeyFile(
            dir,
            str(tok.path) ?? 'token',
            Buffer.from('emulator-service-account-token'),
            mode,
            fsGroup,
          );
        const d = obj(s.downwardAPI);
        if (d) writeDownward(arr(d.items), mode);
      }
    }
    volumes.set(name, { name, path: dir, readOnly: true });
  }
  return { volumes };
}

function existsDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
