import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ClauderonError, isDnsLabel, validateQuantity } from '@clauderon/protocol/core';
import { parse, TomlError } from 'smol-toml';
import {
  _deepFreeze,
  _defaultsOf,
  type Config,
  type Field,
  type FieldType,
  parseDuration,
  type Section,
  schema,
} from './schema.js';

/** Where a value came from, for `clauderon config show`. */
export type Source = 'default' | 'file' | `env:${string}` | 'flag';

export interface LoadedConfig {
  config: Config;
  /** Dotted key path → where its effective value came from. */
  sources: ReadonlyMap<string, Source>;
  paths: ClauderonPaths;
  /** Whether the config file existed. */
  fileFound: boolean;
}

export interface ClauderonPaths {
  home: string;
  configFile: string;
  socket: string;
  logs: string;
  worktrees: string;
  sessions: string;
  secrets: string;
  proxy: string;
}

/** $CLAUDERON_HOME, else ~/.clauderon. */
export function resolveHome(env: NodeJS.ProcessEnv): string {
  const h = env.CLAUDERON_HOME;
  return h && h.length > 0
    ? resolve(h)
    : join(env.HOME && env.HOME.length > 0 ? env.HOME : homedir(), '.clauderon');
}

export function clauderonPaths(home: string): ClauderonPaths {
  return {
    home,
    configFile: join(home, 'config.toml'),
    socket: join(home, 'clauderon.sock'),
    logs: join(home, 'logs'),
    worktrees: join(home, 'worktrees'),
    sessions: join(home, 'sessions'),
    secrets: join(home, 'secrets'),
    proxy: join(home, 'proxy'),
  };
}

export interface LoadOptions {
  env: NodeJS.ProcessEnv;
  /** Command-line values by dotted key (e.g. "features.kubernetes_backend": true); highest precedence. */
  flags?: Record<string, unknown>;
  /** Overrides the config file path (tests). */
  configFile?: string;
}

interface Problem {
  path: string;
  message: string;
  line?: number;
}

/**
 * parse → validate → merge env and flags → normalize → freeze. Every problem is collected and reported
 * in one CONFIG_INVALID error so the user fixes them all in one go.
 */
export function loadConfig(opts: LoadOptions): LoadedConfig {
  const home = resolveHome(opts.env);
  const paths = clauderonPaths(home);
  const file = opts.configFile ?? paths.configFile;
  const problems: Problem[] = [];
  const sources = new Map<string, Source>();
  const config = _defaultsOf(schema);
  forEachField(schema, (path) => sources.set(path, 'default'));

  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ClauderonError('CONFIG_INVALID', `cannot read ${file}: ${(e as Error).message}`);
    }
  }

  if (text !== undefined) {
    let doc: Record<string, unknown> | undefined;
    try {
      doc = parse(text) as Record<string, unknown>;
    } catch (e) {
      if (e instanceof TomlError) {
        const first = e.message.split('\n')[0] ?? e.message;
        throw new ClauderonError('CONFIG_INVALID', `${file}:${e.line}:${e.column}: invalid TOML: ${first}`, {
          hint: 'fix the syntax at that line (see config.example.toml)',
          details: { file, line: e.line, column: e.column },
        });
      }
      throw e;
    }
    applyDoc(schema, doc, config, '', problems, sources, text);
  }

  applyEnv(schema, opts.env, config, '', problems, sources);
  for (const [path, value] of Object.entries(opts.flags ?? {})) {
    if (value === undefined) continue;
    const field = fieldAt(path);
    if (!field) {
      problems.push({ path, message: 'unknown key' });
      continue;
    }
    const v = coerce(field, value, path, problems);
    if (v !== undefined) {
      setAt(config, path, v);
      sources.set(path, 'flag');
    }
  }

  checkValues(config as unknown as Config, problems);

  if (problems.length > 0) {
    const lines = problems.map(
      (p) =>
        `  ${p.path}: ${p.message}${p.line !== undefined ? ` (${sourceName(sources.get(p.path), file)}:${p.line})` : ''}`,
    );
    throw new ClauderonError(
      'CONFIG_INVALID',
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      { hint: 'see config.example.toml for every key, its type and default', details: { problems, file } },
    );
  }
  return { config: _deepFreeze(config) as unknown as Config, sources, paths, fileFound: text !== undefined };
}

function sourceName(_s: Source | undefined, file: string): string {
  return file;
}

function forEachField(s: Section, fn: (path: string, f: Field<unknown>) => void, prefix = ''): void {
  for (const [k, v] of Object.entries(s.fields)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (v.kind === 'section') forEachField(v, fn, p);
    else fn(p, v);
  }
}

/** The schema field at a dotted path, if any. */
export function fieldAt(path: string): Field<unknown> | undefined {
  let node: Field<unknown> | Section = schema;
  for (const part of path.split('.')) {
    if (node.kind !== 'section') return undefined;
    const next: Field<unknown> | Section | undefined = node.fields[part];
    if (!next) return undefined;
    node = next;
  }
  return node.kind === 'field' ? node : undefined;
}

function setAt(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[parts.at(-1)!] = value;
}

function lineOf(text: string, path: string): number | undefined {
  const parts = path.split('.');
  const key = parts.at(-1)!;
  const lines = text.split('\n');
  const table = parts.slice(0, -1).join('.');
  let current = '';
  const esc = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(l);
    if (header) {
      current = header[1]!.replace(/\s/g, '');
      if (current === path) return i + 1;
      continue;
    }
    if (
      new RegExp(`^["']?${esc}["']?\\s*=`).test(l) &&
      (current === table || `${current}.${key}`.endsWith(path))
    ) {
      return i + 1;
    }
    if (new RegExp(`^${table.replace(/\./g, '\\.')}\\.${esc}\\s*=`).test(l) && current === '') return i + 1;
  }
  return undefined;
}

function applyDoc(
  s: Section,
  doc: Record<string, unknown>,
  target: Record<string, unknown>,
  prefix: string,
  problems: Problem[],
  sources: Map<string, Source>,
  text: string,
): void {
  for (const [k, v] of Object.entries(doc)) {
    const path = prefix ? `${prefix}.${k}` : k;
    const def = s.fields[k];
    if (!def) {
      const near = Object.keys(s.fields).find((x) => editDistance(x, k) <= 2);
      problems.push({
        path,
        message: `unknown key${near ? ` (did you mean "${prefix ? `${prefix}.` : ''}${near}"?)` : ''}`,
        ...lineProp(text, path),
      });
      continue;
    }
    if (def.kind === 'section') {
      if (!isPlainObject(v)) {
        problems.push({
          path,
          message: `expected a table [${path}], got ${typeName(v)}`,
          ...lineProp(text, path),
        });
        continue;
      }
      applyDoc(def, v, target[k] as Record<string, unknown>, path, problems, sources, text);
      continue;
    }
    const before = problems.length;
    const value = coerce(def, v, path, problems, false);
    if (problems.length > before) {
      const line = lineOf(text, path);
      for (const p of problems.slice(before)) if (line !== undefined) p.line = line;
    }
    if (value !== undefined) {
      target[k] = value;
      sources.set(path, 'file');
    }
  }
}

function lineProp(text: string, path: string): { line?: number } {
  const line = lineOf(text, path);
  return line === undefined ? {} : { line };
}

function applyEnv(
  s: Section,
  env: NodeJS.ProcessEnv,
  target: Record<string, unknown>,
  prefix: string,
  problems: Problem[],
  sources: Map<string, Source>,
): void {
  for (const [k, def] of Object.entries(s.fields)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (def.kind === 'section') {
      applyEnv(def, env, target[k] as Record<string, unknown>, path, problems, sources);
      continue;
    }
    if (def.type === 'table' || def.type === 'rules' || def.type === 'string-map') continue;
    const names = [envName(path), ...(def.env ? [def.env] : [])];
    // The specific alias wins over the generic name when both are set.
    for (const name of names) {
      const raw = env[name];
      if (raw === undefined || raw === '') continue;
      const v = coerce(def, raw, `${path} (from ${name})`, problems, true);
      if (v !== undefined) {
        target[k] = v;
        sources.set(path, `env:${name}`);
      }
    }
  }
}

/** CLAUDERON_<SECTION>_<KEY>, e.g. CLAUDERON_KUBERNETES_TIMEOUTS_POD_START. */
export function envName(path: string): string {
  return `CLAUDERON_${path.replace(/\./g, '_').toUpperCase()}`;
}

function coerce(
  field: Field<unknown>,
  v: unknown,
  path: string,
  problems: Problem[],
  fromText = typeof v === 'string',
): unknown {
  const fail = (expected: string): undefined => {
    problems.push({
      path,
      message: `expected ${expected}, got ${fromText ? JSON.stringify(v) : typeName(v)}`,
    });
    return undefined;
  };
  const t: FieldType = field.type;
  switch (t) {
    case 'string':
      if (typeof v !== 'string') return fail('a string');
      if (field.oneOf && !field.oneOf.includes(v)) {
        problems.push({
          path,
          message: `must be one of ${field.oneOf.join(', ')}, got ${JSON.stringify(v)}`,
        });
        return undefined;
      }
      return v;
    case 'boolean':
      if (typeof v === 'boolean') return v;
      if (fromText && typeof v === 'string') {
        if (/^(1|true|yes|on)$/i.test(v)) return true;
        if (/^(0|false|no|off)$/i.test(v)) return false;
      }
      return fail('a boolean (true or false)');
    case 'integer': {
      const n = typeof v === 'bigint' ? Number(v) : fromText && typeof v === 'string' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail('an integer');
      if ((field.min !== undefined && n < field.min) || (field.max !== undefined && n > field.max)) {
        problems.push({ path, message: `must be between ${field.min} and ${field.max}` });
        return undefined;
      }
      return n;
    }
    case 'duration': {
      if (typeof v !== 'string') return fail('a duration string such as "30s", "5m" or "1h"');
      const ms = parseDuration(v);
      if (ms === undefined || ms <= 0) return fail('a duration such as "30s", "5m" or "1h"');
      return ms;
    }
    case 'string[]': {
      if (fromText && typeof v === 'string')
        return v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return fail('an array of strings');
      return [...v];
    }
    case 'string-map': {
      if (!isPlainObject(v) || !Object.values(v).every((x) => typeof x === 'string'))
        return fail('a table of strings');
      return { ...v };
    }
    case 'table':
      if (!isPlainObject(v)) return fail('a table');
      return structuredClone(v);
    case 'rules': {
      if (!Array.isArray(v)) return fail('an array of tables ([[proxy.rules]])');
      const out = [];
      for (const [i, r] of v.entries()) {
        const p = `${path}[${i}]`;
        if (!isPlainObject(r)) {
          problems.push({ path: p, message: `expected a table, got ${typeName(r)}` });
          continue;
        }
        const allowed = ['host', 'header', 'value', 'secret_env', 'secret_file'];
        for (const k of Object.keys(r))
          if (!allowed.includes(k)) problems.push({ path: `${p}.${k}`, message: 'unknown key' });
        for (const k of ['host', 'header', 'value']) {
          if (typeof r[k] !== 'string' || (r[k] as string).length === 0) {
            problems.push({ path: `${p}.${k}`, message: 'required string is missing' });
          }
        }
        if ((r.secret_env === undefined) === (r.secret_file === undefined)) {
          problems.push({ path: p, message: 'exactly one of secret_env or secret_file is required' });
        }
        if (typeof r.value === 'string' && !r.value.includes('{secret}')) {
          problems.push({ path: `${p}.value`, message: 'must contain {secret}' });
        }
        out.push({ ...r });
      }
      return out;
    }
  }
}

function checkValues(c: Config, problems: Problem[]): void {
  const q = (path: string, value: string, kind: 'cpu' | 'memory' | 'storage') => {
    if (value === '') return;
    try {
      validateQuantity(value, kind, path);
    } catch (e) {
      const err = e as ClauderonError;
      problems.push({ path, message: `${err.message}${err.hint ? ` (${err.hint})` : ''}` });
    }
  };
  const k = c.kubernetes;
  if (!isDnsLabel(k.namespace))
    problems.push({
      path: 'kubernetes.namespace',
      message: `"${k.namespace}" is not a valid namespace name`,
    });
  q('kubernetes.storage_size', k.storage_size, 'storage');
  q('kubernetes.resources.cpu_request', k.resources.cpu_request, 'cpu');
  q('kubernetes.resources.cpu_limit', k.resources.cpu_limit, 'cpu');
  q('kubernetes.resources.memory_request', k.resources.memory_request, 'memory');
  q('kubernetes.resources.memory_limit', k.resources.memory_limit, 'memory');
  if (k.image.trim() === '') problems.push({ path: 'kubernetes.image', message: 'must not be empty' });
  if (c.agent.command.length === 0) problems.push({ path: 'agent.command', message: 'must not be empty' });
  if (!/^[^:]+:\d{1,5}$|^\[[0-9a-f:]+\]:\d{1,5}$/i.test(c.proxy.listen)) {
    problems.push({
      path: 'proxy.listen',
      message: `expected host:port, got ${JSON.stringify(c.proxy.listen)}`,
    });
  }
  if (c.proxy.pod_url !== '' && !/^https?:\/\/[^/]+\/?$/.test(c.proxy.pod_url)) {
    problems.push({
      path: 'proxy.pod_url',
      message: `expected http://host:port, got ${JSON.stringify(c.proxy.pod_url)}`,
    });
  }
  const tpl = k.pod_template as Record<string, unknown>;
  for (const key of Object.keys(tpl)) {
    if (key !== 'metadata' && key !== 'spec')
      problems.push({
        path: `kubernetes.pod_template.${key}`,
        message: 'unknown key (expected metadata or spec)',
      });
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (typeof v === 'bigint') return 'an integer';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a float';
  if (isPlainObject(v)) return 'a table';
  return `a ${typeof v}`;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i]![j] = Math.min(
        dp[i - 1]![j]! + 1,
        dp[i]![j - 1]! + 1,
        dp[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return dp[a.length]![b.length]!;
}
