/**
 * Deep merge used for `kubernetes.pod_template`. Objects merge key by key; arrays whose elements all carry
 * a string `name` (containers, volumes, volumeMounts, env, imagePullSecrets…) merge element by element on
 * that name, keeping the base order and appending new names; any other array is replaced. A `null` in the
 * patch removes the key. Env entries are replaced whole, because merging `{value}` into `{valueFrom}` would
 * produce an invalid variable with both.
 */
export function mergeTemplate<T>(base: T, patch: unknown): T {
  return mergeValue(base, patch, '') as T;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNamedArray = (v: unknown): v is Array<Obj & { name: string }> =>
  Array.isArray(v) && v.every((e) => isObj(e) && typeof e.name === 'string');

function mergeValue(base: unknown, patch: unknown, key: string): unknown {
  if (patch === undefined) return clone(base);
  if (isObj(base) && isObj(patch)) {
    const out: Obj = clone(base) as Obj;
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = mergeValue(base[k], v, k);
    }
    return out;
  }
  if (isNamedArray(base) && isNamedArray(patch)) {
    const out = base.map((e) => clone(e) as Obj & { name: string });
    for (const p of patch) {
      const i = out.findIndex((e) => e.name === p.name);
      if (i < 0) out.push(clone(p) as Obj & { name: string });
      else out[i] = (key === 'env' ? clone(p) : mergeValue(out[i], p, '')) as Obj & { name: string };
    }
    return out;
  }
  return clone(patch);
}

function clone(v: unknown): unknown {
  return v === undefined ? undefined : structuredClone(v);
}
