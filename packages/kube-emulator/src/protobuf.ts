import { StatusError } from './errors.js';

/**
 * A minimal reader for the Kubernetes protobuf envelope, enough for the bodies kubectl's typed clients send
 * as protobuf with no JSON fallback: `kubectl create configmap|secret|namespace|serviceaccount` and
 * `kubectl auth can-i` (SelfSubjectAccessReview). Field numbers come from k8s.io/api's generated.proto.
 */

type Fields = Map<number, Array<number | Buffer>>;

function readVarint(buf: Buffer, pos: { i: number }): number {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos.i >= buf.length) throw new Error('truncated varint');
    const b = buf[pos.i++]!;
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return result;
    shift += 7;
    if (shift > 63) throw new Error('varint too long');
  }
}

function parse(buf: Buffer): Fields {
  const out: Fields = new Map();
  const pos = { i: 0 };
  while (pos.i < buf.length) {
    const key = readVarint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value: number | Buffer;
    if (wire === 0) value = readVarint(buf, pos);
    else if (wire === 2) {
      const len = readVarint(buf, pos);
      if (pos.i + len > buf.length) throw new Error('truncated field');
      value = buf.subarray(pos.i, pos.i + len);
      pos.i += len;
    } else if (wire === 1) {
      value = buf.subarray(pos.i, pos.i + 8);
      pos.i += 8;
    } else if (wire === 5) {
      value = buf.subarray(pos.i, pos.i + 4);
      pos.i += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(value);
    out.set(field, list);
  }
  return out;
}

const bytes = (f: Fields, n: number): Buffer | undefined => {
  const v = f.get(n)?.at(-1);
  return Buffer.isBuffer(v) ? v : undefined;
};
/** Go's protobuf writes empty strings too; JSON omits them, so an empty string reads as unset. */
const str = (f: Fields, n: number): string | undefined => bytes(f, n)?.toString('utf8') || undefined;
const all = (f: Fields, n: number): Buffer[] =>
  (f.get(n) ?? []).filter((v): v is Buffer => Buffer.isBuffer(v));
const bool = (f: Fields, n: number): boolean | undefined => {
  const v = f.get(n)?.at(-1);
  return typeof v === 'number' ? v !== 0 : undefined;
};

function map(f: Fields, n: number, asBase64 = false): Record<string, string> | undefined {
  const entries = all(f, n);
  if (entries.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const e of entries) {
    const kv = parse(e);
    const v = bytes(kv, 2) ?? Buffer.alloc(0);
    out[str(kv, 1) ?? ''] = asBase64 ? v.toString('base64') : v.toString('utf8');
  }
  return out;
}

function objectMeta(buf: Buffer | undefined): Record<string, unknown> {
  if (!buf) return {};
  const f = parse(buf);
  const m: Record<string, unknown> = {};
  const set = (k: string, v: unknown) => {
    if (v !== undefined) m[k] = v;
  };
  set('name', str(f, 1));
  set('generateName', str(f, 2));
  set('namespace', str(f, 3));
  set('labels', map(f, 11));
  set('annotations', map(f, 12));
  const fin = all(f, 14).map((b) => b.toString('utf8'));
  if (fin.length > 0) m.finalizers = fin;
  return m;
}

function clean<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/** Decodes a `application/vnd.kubernetes.protobuf` body for `kind` into its JSON form. */
export function decodeProtobuf(body: Buffer, kind: string): Record<string, unknown> {
  const unsupported = () =>
    new StatusError(
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json`,
    );
  if (body.length < 4 || body.subarray(0, 4).toString('latin1') !== 'k8s\u0000') throw unsupported();
  let raw: Buffer | undefined;
  try {
    raw = bytes(parse(body.subarray(4)), 2);
  } catch {
    throw unsupported();
  }
  if (!raw) throw unsupported();
  try {
    const f = parse(raw);
    const metadata = objectMeta(bytes(f, 1));
    switch (kind) {
      case 'ConfigMap':
        return clean({ metadata, data: map(f, 2), binaryData: map(f, 3, true), immutable: bool(f, 4) });
      case 'Secret':
        return clean({
          metadata,
          data: map(f, 2, true),
          type: str(f, 3),
          stringData: map(f, 4),
          immutable: bool(f, 5),
        });
      case 'Namespace': {
        const spec = bytes(f, 2);
        const finalizers = spec ? all(parse(spec), 1).map((b) => b.toString('utf8')) : [];
        return clean({ metadata, spec: finalizers.length > 0 ? { finalizers } : undefined });
      }
      case 'ServiceAccount':
        return clean({ metadata, automountServiceAccountToken: bool(f, 4) });
      case 'SelfSubjectAccessReview': {
        const spec = bytes(f, 2);
        const s = spec ? parse(spec) : new Map();
        const ra = bytes(s, 1);
        const nra = bytes(s, 2);
        const out: Record<string, unknown> = {};
        if (ra) {
          const r = parse(ra);
          out.resourceAttributes = clean({
            namespace: str(r, 1),
            verb: str(r, 2),
            group: str(r, 3),
            version: str(r, 4),
            resource: str(r, 5),
            subresource: str(r, 6),
            name: str(r, 7),
          });
        }
        if (nra) {
          const r = parse(nra);
          out.nonResourceAttributes = clean({ path: str(r, 1), verb: str(r, 2) });
        }
        return { metadata, spec: out };
      }
      default:
        throw unsupported();
    }
  } catch (err) {
    if (err instanceof StatusError) throw err;
    throw new StatusError(400, 'BadRequest', `unable to decode protobuf body: ${(err as Error).message}`);
  }
}
