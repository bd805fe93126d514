import type { KObject } from './contract.js';
import { type FieldCause, fieldError } from './errors.js';
import type { ResourceInfo } from './resources.js';

const LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QNAME_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const CM_KEY_RE = /^[-._a-zA-Z0-9]+$/;

export const SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
export const LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QNAME_MSG =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

export function dnsLabelErrors(field: string, v: string): FieldCause[] {
  const out: FieldCause[] = [];
  if (v.length > 63) out.push(fieldError('Invalid', field, 'must be no more than 63 characters', v));
  if (!LABEL_RE.test(v)) out.push(fieldError('Invalid', field, LABEL_MSG, v));
  return out;
}

export function dnsSubdomainErrors(field: string, v: string): FieldCause[] {
  const out: FieldCause[] = [];
  if (v.length > 253) out.push(fieldError('Invalid', field, 'must be no more than 253 characters', v));
  if (!SUBDOMAIN_RE.test(v)) out.push(fieldError('Invalid', field, SUBDOMAIN_MSG, v));
  return out;
}

function qualifiedNameErrors(field: string, key: string): FieldCause[] {
  const parts = key.split('/');
  let name = key;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    name = parts[1]!;
    if (!prefix) return [fieldError('Invalid', field, 'prefix part must be non-empty', key)];
    if (!SUBDOMAIN_RE.test(prefix) || prefix.length > 253)
      return [fieldError('Invalid', field, `prefix part ${SUBDOMAIN_MSG}`, key)];
  } else if (parts.length > 2) {
    return [
      fieldError(
        'Invalid',
        field,
        "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        key,
      ),
    ];
  }
  if (!name) return [fieldError('Invalid', field, 'name part must be non-empty', key)];
  if (name.length > 63)
    return [fieldError('Invalid', field, 'name part must be no more than 63 characters', key)];
  if (!QNAME_RE.test(name)) return [fieldError('Invalid', field, QNAME_MSG, key)];
  return [];
}

/** Object metadata rules shared by every kind (name format, labels, annotations). */
export function validateMeta(ri: ResourceInfo, obj: KObject): FieldCause[] {
  const out: FieldCause[] = [];
  const m = obj.metadata;
  if (!m.name) out.push(fieldError('Required', 'metadata.name', 'name or generateName is required'));
  else if (ri.nameFormat === 'label') out.push(...dnsLabelErrors('metadata.name', m.name));
  else out.push(...dnsSubdomainErrors('metadata.name', m.name));
  for (const [k, v] of Object.entries(m.labels ?? {})) {
    out.push(...qualifiedNameErrors('metadata.labels', k));
    if (typeof v !== 'string' || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v))
      out.push(fieldError('Invalid', 'metadata.labels', LABEL_VALUE_MSG, v));
  }
  let annSize = 0;
  for (const [k, v] of Object.entries(m.annotations ?? {})) {
    out.push(...qualifiedNameErrors('metadata.annotations', k.toLowerCase()));
    annSize += k.length + String(v).length;
  }
  if (annSize > 256 * 1024)
    out.push(fieldError('TooLong', 'metadata.annotations', 'must have at most 262144 bytes'));
  return out;
}

function asArray(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? (v as Record<string, unknown>[]) : [];
}

function validateContainers(list: Record<string, unknown>[], path: string, names: Set<string>): FieldCause[] {
  const out: FieldCause[] = [];
  list.forEach((c, i) => {
    const p = `${path}[${i}]`;
    const name = typeof c.name === 'string' ? c.name : '';
    if (!name) out.push(fieldError('Required', `${p}.name`, ''));
    else {
      out.push(...dnsLabelErrors(`${p}.name`, name));
      if (names.has(name)) out.push(fieldError('Duplicate', `${p}.name`, '', name));
      names.add(name);
    }
    if (!c.image || typeof c.image !== 'string') out.push(fieldError('Required', `${p}.image`, ''));
  });
  return out;
}

/** The pod spec checks a client is likely to hit (containers, names, images, volumes). */
export function validatePod(obj: KObject): FieldCause[] {
  const out: FieldCause[] = [];
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const containers = asArray(spec.containers);
  if (containers.length === 0) out.push(fieldError('Required', 'spec.containers', ''));
  const names = new Set<string>();
  out.push(...validateContainers(containers, 'spec.containers', names));
  out.push(...validateContainers(asArray(spec.initContainers), 'spec.initContainers', names));
  const vols = new Set<string>();
  asArray(spec.volumes).forEach((v, i) => {
    const name = typeof v.name === 'string' ? v.name : '';
    if (!name) out.push(fieldError('Required', `spec.volumes[${i}].name`, ''));
    else {
      out.push(...dnsLabelErrors(`spec.volumes[${i}].name`, name));
      if (vols.has(name)) out.push(fieldError('Duplicate', `spec.volumes[${i}].name`, '', name));
      vols.add(name);
    }
  });
  for (const [path, list] of [
    ['spec.containers', containers],
    ['spec.initContainers', asArray(spec.initContainers)],
  ] as const) {
    list.forEach((c, i) => {
      asArray(c.volumeMounts).forEach((vm, j) => {
        if (typeof vm.name === 'string' && !vols.has(vm.name))
          out.push(fieldError('NotFound', `${path}[${i}].volumeMounts[${j}].name`, '', vm.name));
        if (!vm.mountPath) out.push(fieldError('Required', `${path}[${i}].volumeMounts[${j}].mountPath`, ''));
      });
    });
  }
  const rp = spec.restartPolicy;
  if (rp !== undefined && !['Always', 'OnFailure', 'Never'].includes(String(rp)))
    out.push({
      reason: 'FieldValueNotSupported',
      field: 'spec.restartPolicy',
      message: `Unsupported value: "${String(rp)}": supported values: "Always", "OnFailure", "Never"`,
    });
  return out;
}

export function validatePvc(obj: KObject): FieldCause[] {
  const out: FieldCause[] = [];
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const modes = spec.accessModes;
  if (!Array.isArray(modes) || modes.length === 0)
    out.push(fieldError('Required', 'spec.accessModes', 'at least 1 access mode is required'));
  const storage = (
    (spec.resources as Record<string, unknown> | undefined)?.requests as Record<string, unknown> | undefined
  )?.storage;
  if (storage === undefined || storage === null || storage === '')
    out.push(fieldError('Required', 'spec.resources[storage]', ''));
  return out;
}

export function validateConfigMapLike(obj: KObject): FieldCause[] {
  const out: FieldCause[] = [];
  const keys = [
    ...Object.keys((obj.data ?? {}) as object).map((k) => ['data', k] as const),
    ...Object.keys((obj.binaryData ?? {}) as object).map((k) => ['binaryData', k] as const),
  ];
  const seen = new Set<string>();
  let size = 0;
  for (const [field, k] of keys) {
    if (k.length > 253 || !CM_KEY_RE.test(k) || k === '.' || k === '..')
      out.push(
        fieldError(
          'Invalid',
          `${field}[${k}]`,
          "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
          k,
        ),
      );
    if (seen.has(k)) out.push(fieldError('Invalid', `${field}[${k}]`, 'duplicate of key present in data', k));
    seen.add(k);
    const v = (obj as Record<string, Record<string, unknown>>)[field]?.[k];
    size += k.length + (typeof v === 'string' ? v.length : 0);
  }
  if (size > 1024 * 1024) out.push(fieldError('TooLong', '', 'must have at most 1048576 bytes'));
  return out;
}
