/**
 * The length-prefixed framing shared by the snapshot (host → pod) and the pull-back (pod → host).
 *
 * A payload is a fixed-size header followed by its sections, back to back:
 *
 *   <MAGIC> <VERSION> <name>=<bytes> ... sha256=<hex of all sections concatenated, or "-">
 *
 * ASCII, padded with spaces to HEADER_BYTES - 1 and ended by "\n". Being fixed-size, the receiver reads it
 * with `dd bs=1 count=256` and then exactly <bytes> per section with `head -c`, so it never needs stdin EOF
 * (exec protocol v4 cannot signal one).
 */
export const HEADER_BYTES = 256;

export const SNAPSHOT_MAGIC = 'CLAUDERON-SNAPSHOT';
export const PULL_MAGIC = 'CLAUDERON-PULL';
export const PAYLOAD_VERSION = 1;

/** Section order of a snapshot payload. */
export const SNAPSHOT_SECTIONS = ['bundle', 'index', 'tree', 'deleted', 'manifest'] as const;
/** Section order of a pull-back payload. */
export const PULL_SECTIONS = ['bundle', 'patch', 'tree'] as const;

export interface Header {
  magic: string;
  version: number;
  sizes: Map<string, number>;
  fields: Map<string, string>;
}

/** Encodes a header; `sizes` in section order, `fields` are extra key=value pairs (no spaces). */
export function encodeHeader(magic: string, sizes: [string, number][], fields: [string, string][]): Buffer {
  const parts = [magic, String(PAYLOAD_VERSION), ...sizes.map(([k, v]) => `${k}=${v}`)];
  parts.push(...fields.map(([k, v]) => `${k}=${v}`));
  const line = parts.join(' ');
  if (line.length > HEADER_BYTES - 1 || /[\s]/.test(fields.map(([, v]) => v).join(''))) {
    throw new Error(`payload header does not fit: ${line}`);
  }
  return Buffer.from(`${line.padEnd(HEADER_BYTES - 1, ' ')}\n`, 'ascii');
}

/** Parses a header; throws with a readable message when it is not one of ours. */
export function parseHeader(buf: Buffer, magic: string, sections: readonly string[]): Header {
  if (buf.length !== HEADER_BYTES || buf[HEADER_BYTES - 1] !== 0x0a) {
    throw new Error('payload header is truncated or malformed');
  }
  const words = buf.toString('ascii').trim().split(/ +/);
  if (words[0] !== magic) throw new Error(`payload does not start with ${magic}`);
  const version = Number(words[1]);
  if (version !== PAYLOAD_VERSION) throw new Error(`unsupported payload version ${words[1]}`);
  const sizes = new Map<string, number>();
  const fields = new Map<string, string>();
  for (const w of words.slice(2)) {
    const eq = w.indexOf('=');
    if (eq < 1) throw new Error(`malformed payload header field "${w}"`);
    const k = w.slice(0, eq);
    const v = w.slice(eq + 1);
    if (sections.includes(k)) {
      if (!/^\d{1,15}$/.test(v)) throw new Error(`malformed size for section ${k}`);
      sizes.set(k, Number(v));
    } else fields.set(k, v);
  }
  for (const s of sections) if (!sizes.has(s)) throw new Error(`payload header lacks section ${s}`);
  return { magic, version, sizes, fields };
}
