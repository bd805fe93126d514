import { badRequest, StatusError } from './errors.js';

type Json = unknown;
type JsonObject = Record<string, unknown>;

const isObj = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

export const clone = <T>(v: T): T => structuredClone(v);

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObj(patch)) return clone(patch);
  const out: JsonObject = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * Merge keys of the lists that strategic merge patch merges element-wise (from the core/v1 struct tags);
 * every other list is replaced. Keys are the parent field names, which is enough for the core types.
 */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  volumes: 'name',
  env: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  ports: 'containerPort',
  imagePullSecrets: 'name',
  conditions: 'type',
  ownerReferences: 'uid',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  resourceClaims: 'name',
  secrets: 'name',
  containerStatuses: 'name',
  initContainerStatuses: 'name',
  podIPs: 'ip',
  hostIPs: 'ip',
};
/** Primitive lists with `patchStrategy:"merge"`: elements are unioned. */
const MERGE_PRIMITIVES = new Set(['finalizers']);

/** A reasonable strategic merge patch for core/v1 objects (merge-by-key lists and the usual directives). */
export function strategicMergePatch(target: Json, patch: Json): Json {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _, ...rest } = patch;
    return clone(rest);
  }
  if (patch.$patch === 'delete') return undefined;
  const out: JsonObject = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k.startsWith('$retainKeys') || k.startsWith('$setElementOrder/')) continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      const cur = out[field];
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter((x) => !v.includes(x));
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const key = MERGE_KEYS[k];
    const cur = out[k];
    if (Array.isArray(v) && key) {
      out[k] = mergeList(Array.isArray(cur) ? cur : [], v, key);
    } else if (Array.isArray(v) && MERGE_PRIMITIVES.has(k)) {
      const base = Array.isArray(cur) ? [...cur] : [];
      for (const x of v) if (!base.includes(x)) base.push(x);
      out[k] = base;
    } else if (isObj(v)) {
      const merged = strategicMergePatch(cur, v);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    } else {
      out[k] = clone(v);
    }
  }
  return out;
}

function mergeList(cur: unknown[], patch: unknown[], key: string): unknown[] {
  if (patch.some((p) => isObj(p) && p.$patch === 'replace')) {
    return patch.filter((p) => !(isObj(p) && p.$patch === 'replace')).map(clone);
  }
  const out = cur.map(clone);
  for (const p of patch) {
    if (!isObj(p) || !(key in p)) {
      out.push(clone(p));
      continue;
    }
    const idx = out.findIndex((c) => isObj(c) && c[key] === p[key]);
    if (p.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMergePatch(out[idx], p);
    else out.push(strategicMergePatch({}, p));
  }
  return out;
}

function parsePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/'))
    throw badRequest(`the server rejected our request due to an error in our request`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function patchFail(msg: string): StatusError {
  return new StatusError(422, 'Invalid', msg);
}

function getAt(doc: Json, parts: string[]): Json {
  let cur: Json = doc;
  for (const p of parts) {
    if (Array.isArray(cur)) cur = cur[Number(p)];
    else if (isObj(cur)) cur = cur[p];
    else return undefined;
  }
  return cur;
}

/** RFC 6902 JSON patch (add, remove, replace, move, copy, test). */
export function jsonPatch(doc: Json, ops: unknown): Json {
  if (!Array.isArray(ops))
    throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let root: Json = clone(doc);
  for (const raw of ops) {
    if (!isObj(raw)) throw badRequest('invalid JSON patch operation');
    const op = String(raw.op);
    const path = parsePointer(String(raw.path ?? ''));
    const apply = (parts: string[], fn: (parent: Json, last: string) => void) => {
      if (parts.length === 0) throw patchFail(`the server rejected our request: cannot ${op} the root`);
      const parent = getAt(root, parts.slice(0, -1));
      if (!isObj(parent) && !Array.isArray(parent))
        throw patchFail(
          `the server rejected our request due to an error in our request: doc is missing path: "${raw.path}"`,
        );
      fn(parent, parts[parts.length - 1]!);
    };
    const add = (parts: string[], value: Json) => {
      if (parts.length === 0) {
        root = clone(value);
        return;
      }
      apply(parts, (parent, last) => {
        if (Array.isArray(parent)) {
          const i = last === '-' ? parent.length : Number(last);
          if (!Number.isInteger(i) || i < 0 || i > parent.length)
            throw patchFail(`add operation does not apply: index out of range`);
          parent.splice(i, 0, clone(value));
        } else (parent as JsonObject)[last] = clone(value);
      });
    };
    const remove = (parts: string[]): Json => {
      let removed: Json;
      apply(parts, (parent, last) => {
        if (Array.isArray(parent)) {
          const i = Number(last);
          if (!(i >= 0 && i < parent.length))
            throw patchFail(`remove operation does not apply: doc is missing path: "${raw.path}"`);
          removed = parent.splice(i, 1)[0];
        } else {
          if (!Object.hasOwn(parent as JsonObject, last))
            throw patchFail(`remove operation does not apply: doc is missing path: "${raw.path}"`);
          removed = (parent as JsonObject)[last];
          delete (parent as JsonObject)[last];
        }
      });
      return removed;
    };
    switch (op) {
      case 'add':
        add(path, raw.value);
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace':
        if (getAt(root, path) === undefined)
          throw patchFail(`replace operation does not apply: doc is missing key: ${raw.path}: missing value`);
        remove(path);
        add(path, raw.value);
        break;
      case 'move': {
        const from = parsePointer(String(raw.from ?? ''));
        const v = remove(from);
        add(path, v);
        break;
      }
      case 'copy': {
        const from = parsePointer(String(raw.from ?? ''));
        add(path, getAt(root, from));
        break;
      }
      case 'test':
        if (JSON.stringify(getAt(root, path)) !== JSON.stringify(raw.value))
          throw patchFail(
            `the server rejected our request due to an error in our request: testing value ${raw.path} failed`,
          );
        break;
      default:
        throw badRequest(`Unexpected kind: ${op}`);
    }
  }
  return root;
}
