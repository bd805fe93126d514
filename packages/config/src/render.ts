import { stringify } from 'smol-toml';
import type { LoadedConfig } from './load.js';
import { envName } from './load.js';
import { type Field, formatDuration, type Section, schema } from './schema.js';

function tomlValue(f: Field<unknown>, v: unknown): string {
  if (f.type === 'duration') return JSON.stringify(formatDuration(v as number));
  if (f.type === 'rules' || f.type === 'table' || f.type === 'string-map') {
    const s = stringify({ x: v }).trim();
    return s.startsWith('x = ') ? s.slice(4) : '{}';
  }
  return stringify({ x: v }).trim().slice(4);
}

/** config.example.toml, generated from the schema so it cannot drift (a test compares the two). */
export function renderExampleConfig(): string {
  const out: string[] = [
    '# clauderon configuration: ~/.clauderon/config.toml (or $CLAUDERON_HOME/config.toml).',
    '# Every key is optional; the value shown is the default.',
    '# Precedence: command-line flag > environment (CLAUDERON_<SECTION>_<KEY>) > this file > default.',
    '# Generated from packages/config/src/schema.ts by `npm run gen:example-config`.',
  ];
  const walk = (s: Section, prefix: string) => {
    const fields = Object.entries(s.fields).filter(([, v]) => v.kind === 'field') as [
      string,
      Field<unknown>,
    ][];
    const sections = Object.entries(s.fields).filter(([, v]) => v.kind === 'section') as [string, Section][];
    if (prefix) {
      out.push('', `# ${s.doc}`, `[${prefix}]`);
    }
    for (const [k, f] of fields) {
      const path = prefix ? `${prefix}.${k}` : k;
      const env =
        f.type === 'table' || f.type === 'rules' || f.type === 'string-map'
          ? ''
          : ` Env: ${f.env ?? envName(path)}.`;
      out.push(`# ${f.doc}${f.oneOf ? ` One of: ${f.oneOf.join(', ')}.` : ''}${env}`);
      if (f.type === 'rules') {
        out.push(
          '# Example:',
          '# [[proxy.rules]]',
          '# host = "api.example.com"',
          '# header = "authorization"',
          '# value = "Bearer {secret}"',
          '# secret_env = "EXAMPLE_TOKEN"',
          `${k} = []`,
        );
      } else {
        out.push(`${k} = ${tomlValue(f, f.default)}`);
      }
    }
    for (const [k, sub] of sections) walk(sub, prefix ? `${prefix}.${k}` : k);
  };
  walk(schema, '');
  return `${out.join('\n')}\n`;
}

/** `clauderon config show`: every effective value with where it came from. */
export function renderEffectiveConfig(loaded: LoadedConfig): string {
  const out: string[] = [];
  const walk = (s: Section, obj: Record<string, unknown>, prefix: string) => {
    const fields = Object.entries(s.fields).filter(([, v]) => v.kind === 'field') as [
      string,
      Field<unknown>,
    ][];
    const sections = Object.entries(s.fields).filter(([, v]) => v.kind === 'section') as [string, Section][];
    if (prefix && fields.length > 0) out.push('', `[${prefix}]`);
    for (const [k, f] of fields) {
      const path = prefix ? `${prefix}.${k}` : k;
      const src = loaded.sources.get(path) ?? 'default';
      const shown = f.type === 'rules' ? `[${(obj[k] as unknown[]).length} rule(s)]` : tomlValue(f, obj[k]);
      out.push(`${k} = ${shown}  # ${src}`);
    }
    for (const [k, sub] of sections)
      walk(sub, obj[k] as Record<string, unknown>, prefix ? `${prefix}.${k}` : k);
  };
  walk(schema, loaded.config as unknown as Record<string, unknown>, '');
  return `${out.join('\n').trim()}\n`;
}

/** Effective configuration as plain JSON with sources (for `config show -o json`). */
export function effectiveConfigJson(loaded: LoadedConfig): {
  config: unknown;
  sources: Record<string, string>;
} {
  return { config: loaded.config, sources: Object.fromEntries(loaded.sources) };
}
