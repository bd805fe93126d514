import { ClauderonError } from './errors.js';

/** Session names become part of object names, so they are kept short enough for every derived name. */
export const SESSION_NAME_MAX = 40;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Throws INVALID_NAME unless `name` is a DNS-1123 label of at most SESSION_NAME_MAX characters. */
export function validateSessionName(name: string): string {
  if (name.length === 0) throw new ClauderonError('INVALID_NAME', 'session name must not be empty');
  if (name.length > SESSION_NAME_MAX) {
    throw new ClauderonError(
      'INVALID_NAME',
      `session name "${printable(name)}" is ${name.length} characters long; the limit is ${SESSION_NAME_MAX}`,
      { hint: 'choose a shorter --name' },
    );
  }
  if (!DNS_LABEL.test(name)) {
    throw new ClauderonError(
      'INVALID_NAME',
      `session name "${printable(name)}" is not valid: use lower-case letters, digits and '-', starting and ending with a letter or digit`,
      { hint: `try --name ${suggestName(name) || 'my-session'}` },
    );
  }
  return name;
}

/** Derives a valid session name from arbitrary text (a repository folder name, say). */
export function suggestName(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, SESSION_NAME_MAX - 6)
    .replace(/-+$/g, '');
}

/** Is `s` a DNS-1123 label (namespaces, container names)? */
export function isDnsLabel(s: string): boolean {
  return s.length > 0 && s.length <= 63 && DNS_LABEL.test(s);
}

/** Is `s` a DNS-1123 subdomain (most object names)? */
export function isDnsSubdomain(s: string): boolean {
  return (
    s.length > 0 &&
    s.length <= 253 &&
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s)
  );
}

const QUANTITY = /^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][-+]?\d+)?$/;
const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

export type QuantityKind = 'cpu' | 'memory' | 'storage';

/**
 * Validates a Kubernetes resource quantity for a given use. Rejects negative values, Docker-style
 * suffixes (`8g`, `512mb`) and, for memory and storage, the milli suffix (`512m` is half a byte, which is
 * never what anyone meant).
 */
export function validateQuantity(value: string, kind: QuantityKind, flag: string): string {
  const v = value.trim();
  const bad = (why: string, hint?: string): never => {
    throw new ClauderonError(
      'INVALID_QUANTITY',
      `${flag} "${printable(value)}" is not a valid Kubernetes quantity: ${why}`,
      {
        hint: hint ?? (kind === 'cpu' ? 'use e.g. 2 or 500m' : 'use e.g. 8Gi or 512Mi'),
      },
    );
  };
  if (v.startsWith('-')) bad('it must not be negative');
  const docker = /^(\d+(?:\.\d+)?)\s*([kmgt])b?$/i.exec(v);
  if (docker && !QUANTITY.test(v)) {
    const unit = docker[2]!.toUpperCase();
    bad(
      'Docker-style sizes are not Kubernetes quantities',
      `did you mean ${docker[1]}${unit === 'K' ? 'Ki' : `${unit}i`}?`,
    );
  }
  const m = QUANTITY.exec(v);
  if (!m) bad('expected a number with an optional suffix (Ki, Mi, Gi, m, k, M, G…)');
  const suffix = m![3] ?? '';
  if (kind !== 'cpu' && suffix === 'm') {
    bad(`"m" means thousandths, so ${v} is a fraction of a byte`, `did you mean ${m![1]}Mi?`);
  }
  if (quantityToNumber(v) <= 0) bad('it must be greater than zero');
  return v;
}

/** Numeric value of a valid quantity (bytes or cores). */
export function quantityToNumber(q: string): number {
  const m = QUANTITY.exec(q.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  const s = m[3] ?? '';
  if (s in BINARY) return n * BINARY[s]!;
  if (s in DECIMAL) return n * DECIMAL[s]!;
  return n * 10 ** Number(s.slice(1));
}

/** Shows control characters visibly so error messages never write raw escapes to a terminal. */
export function printable(s: string, max = 80): string {
  const out = s.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  return out.length > max ? `${out.slice(0, max)}…` : out;
}
