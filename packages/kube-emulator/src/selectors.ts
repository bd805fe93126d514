import type { KObject } from './contract.js';
import { badRequest } from './errors.js';

type LabelReq =
  | { key: string; op: 'eq' | 'ne'; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists' }
  | { key: string; op: 'gt' | 'lt'; value: number };

export type LabelSelector = (labels: Record<string, string> | undefined) => boolean;

const KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Splits on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function checkKey(key: string, sel: string): void {
  if (!KEY.test(key) || key.length > 317)
    throw badRequest(`unable to parse requirement: invalid label key "${key}" in selector "${sel}"`);
}
function checkValue(v: string): void {
  if (!VALUE.test(v) || v.length > 63)
    throw badRequest(`unable to parse requirement: invalid label value: "${v}"`);
}

/** Parses a label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1`); a bad one is a 400. */
export function parseLabelSelector(selector: string | null | undefined): LabelSelector {
  const sel = (selector ?? '').trim();
  if (!sel) return () => true;
  const reqs: LabelReq[] = [];
  for (const raw of splitTop(sel)) {
    const part = raw.trim();
    if (!part) throw badRequest(`unable to parse requirement: found '', expected: identifier`);
    const setOp = /^(\S+?)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part);
    const eqOp = /^([^!=<>\s]+)\s*(==|!=|=)\s*(.*)$/.exec(part);
    const cmpOp = /^([^!=<>\s]+)\s*([<>])\s*(.*)$/.exec(part);
    const notOp = /^!\s*(\S+)$/.exec(part);
    let m: RegExpExecArray | null = setOp;
    if (m) {
      const key = m[1]!;
      checkKey(key, sel);
      const values = m[3]!
        .split(',')
        .map((v) => v.trim())
        .filter((v, _i, a) => v !== '' || a.length === 1);
      values.forEach(checkValue);
      reqs.push({ key, op: m[2] as 'in' | 'notin', values });
    } else if (eqOp) {
      m = eqOp;
      const key = m[1]!;
      const value = m[3]!.trim();
      checkKey(key, sel);
      checkValue(value);
      reqs.push({ key, op: m[2] === '!=' ? 'ne' : 'eq', value });
    } else if (cmpOp) {
      m = cmpOp;
      const key = m[1]!;
      checkKey(key, sel);
      const n = Number(m[3]!.trim());
      if (!/^-?\d+$/.test(m[3]!.trim()))
        throw badRequest(
          `unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer`,
        );
      reqs.push({ key, op: m[2] === '>' ? 'gt' : 'lt', value: n });
    } else if (notOp) {
      m = notOp;
      checkKey(m[1]!, sel);
      reqs.push({ key: m[1]!, op: 'notexists' });
    } else if (/^\S+$/.test(part)) {
      checkKey(part, sel);
      reqs.push({ key: part, op: 'exists' });
    } else {
      throw badRequest(`unable to parse requirement: couldn't parse the selector string "${sel}"`);
    }
  }
  return (labels) => {
    const l = labels ?? {};
    return reqs.every((r) => {
      const has = Object.hasOwn(l, r.key);
      const v = l[r.key];
      switch (r.op) {
        case 'eq':
          return has && v === r.value;
        case 'ne':
          return !has || v !== r.value;
        case 'in':
          return has && r.values.includes(v!);
        case 'notin':
          return !has || !r.values.includes(v!);
        case 'exists':
          return has;
        case 'notexists':
          return !has;
        case 'gt':
          return has && /^-?\d+$/.test(v!) && Number(v) > r.value;
        case 'lt':
          return has && /^-?\d+$/.test(v!) && Number(v) < r.value;
        default:
          return false;
      }
    });
  };
}

export type FieldSelector = (obj: KObject) => boolean;

/** Field getters per resource, mirroring each registry's `ToSelectableFields`. */
const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));
const spec = (o: KObject) => (o.spec ?? {}) as Record<string, unknown>;
const status = (o: KObject) => (o.status ?? {}) as Record<string, unknown>;
const meta: Record<string, (o: KObject) => string> = {
  'metadata.name': (o: KObject) => o.metadata.name,
  'metadata.namespace': (o: KObject) => str(o.metadata.namespace),
};

const FIELDS: Record<string, Record<string, (o: KObject) => string>> = {
  pods: {
    ...meta,
    'spec.nodeName': (o) => str(spec(o).nodeName),
    'spec.restartPolicy': (o) => str(spec(o).restartPolicy),
    'spec.schedulerName': (o) => str(spec(o).schedulerName),
    'spec.serviceAccountName': (o) => str(spec(o).serviceAccountName),
    'spec.hostNetwork': (o) => String(spec(o).hostNetwork === true),
    'status.phase': (o) => str(status(o).phase),
    'status.podIP': (o) => {
      const ips = status(o).podIPs as Array<{ ip: string }> | undefined;
      return str(ips?.[0]?.ip ?? status(o).podIP);
    },
    'status.nominatedNodeName': (o) => str(status(o).nominatedNodeName),
  },
  events: {
    ...meta,
    'involvedObject.kind': (o) => str((o.involvedObject as Record<string, unknown>)?.kind),
    'involvedObject.namespace': (o) => str((o.involvedObject as Record<string, unknown>)?.namespace),
    'involvedObject.name': (o) => str((o.involvedObject as Record<string, unknown>)?.name),
    'involvedObject.uid': (o) => str((o.involvedObject as Record<string, unknown>)?.uid),
    'involvedObject.apiVersion': (o) => str((o.involvedObject as Record<string, unknown>)?.apiVersion),
    'involvedObject.resourceVersion': (o) =>
      str((o.involvedObject as Record<string, unknown>)?.resourceVersion),
    'involvedObject.fieldPath': (o) => str((o.involvedObject as Record<string, unknown>)?.fieldPath),
    reason: (o) => str(o.reason),
    reportingComponent: (o) => str(o.reportingComponent),
    source: (o) => str((o.source as Record<string, unknown>)?.component),
    type: (o) => str(o.type),
  },
  namespaces: { 'metadata.name': (o) => o.metadata.name, 'status.phase': (o) => str(status(o).phase) },
  secrets: { ...meta, type: (o) => str(o.type) },
  persistentvolumes: { 'metadata.name': (o) => o.metadata.name, name: (o) => o.metadata.name },
  nodes: {
    'metadata.name': (o) => o.metadata.name,
    'spec.unschedulable': (o) => String(spec(o).unschedulable === true),
  },
};

function unescapeValue(v: string): string {
  return v.replace(/\\(.)/g, '$1');
}

/** Splits on unescaped commas. */
function splitFields(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[i + 1];
      i++;
    } else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** Parses a field selector for `resource`; an unsupported field label is a 400 as on the real server. */
export function parseFieldSelector(resource: string, selector: string | null | undefined): FieldSelector {
  const sel = (selector ?? '').trim();
  if (!sel) return () => true;
  const fields = FIELDS[resource] ?? meta;
  const reqs: Array<{ get: (o: KObject) => string; neg: boolean; value: string }> = [];
  for (const raw of splitFields(sel)) {
    const part = raw.trim();
    if (!part) continue;
    const m = /^([^=!]+?)\s*(==|!=|=)(.*)$/.exec(part);
    if (!m) throw badRequest(`invalid selector: '${sel}'; can't understand '${part}'`);
    const field = m[1]!.trim();
    const get = fields[field];
    if (!get) throw badRequest(`field label not supported: ${field}`);
    reqs.push({ get, neg: m[2] === '!=', value: unescapeValue(m[3]!.trim()) });
  }
  return (o) => reqs.every((r) => (r.get(o) === r.value) !== r.neg);
}
