import type { Config, ProxyRule } from '@clauderon/config';
import { ClauderonError } from '@clauderon/protocol';
import type { SecretRef, SecretSource } from './secrets.js';

/** A credential rule: for `host`, drop what the pod sent and set `header` to `render(secret)`. */
export interface Rule {
  /** Stable name for logs ("builtin:anthropic-api-key", "rules[0]"). */
  readonly id: string;
  /** Exact host, or `*.suffix` for every subdomain of suffix. */
  readonly host: string;
  /** Lower-case header name. */
  readonly header: string;
  readonly secret: SecretRef;
  readonly render: (secret: string) => string;
  /** Environment variables pods get a placeholder for, so their tools start. */
  readonly placeholders: readonly string[];
}

/** Prefix of every placeholder credential handed to pods; the proxy replaces them upstream. */
export const PLACEHOLDER_PREFIX = 'clauderon-placeholder';

/** Headers that carry credentials; always removed from requests to a host the proxy injects for. */
export const CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'x-api-key'];

/** The built-in rules, in precedence order (the first active rule for a host wins). */
export const BUILTIN_RULES: readonly Rule[] = [
  {
    id: 'builtin:anthropic-api-key',
    host: 'api.anthropic.com',
    header: 'x-api-key',
    secret: { env: ['ANTHROPIC_API_KEY'], file: 'anthropic_api_key' },
    render: (s) => s,
    placeholders: ['ANTHROPIC_API_KEY'],
  },
  {
    id: 'builtin:anthropic-oauth',
    host: 'api.anthropic.com',
    header: 'authorization',
    secret: { env: ['CLAUDE_CODE_OAUTH_TOKEN'], file: 'claude_code_oauth_token' },
    render: (s) => `Bearer ${s}`,
    placeholders: ['CLAUDE_CODE_OAUTH_TOKEN'],
  },
  {
    id: 'builtin:github-api',
    host: 'api.github.com',
    header: 'authorization',
    secret: { env: ['GH_TOKEN', 'GITHUB_TOKEN'], file: 'gh_token' },
    render: (s) => `Bearer ${s}`,
    placeholders: ['GH_TOKEN', 'GITHUB_TOKEN'],
  },
  {
    id: 'builtin:github-git',
    host: 'github.com',
    header: 'authorization',
    secret: { env: ['GH_TOKEN', 'GITHUB_TOKEN'], file: 'gh_token' },
    render: (s) => `Basic ${Buffer.from(`x-access-token:${s}`).toString('base64')}`,
    placeholders: ['GH_TOKEN', 'GITHUB_TOKEN'],
  },
];

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function fromConfigRule(r: ProxyRule, i: number): Rule {
  const id = `proxy.rules[${i}]`;
  const header = r.header.toLowerCase();
  if (!HEADER_NAME.test(header)) {
    throw new ClauderonError('CONFIG_INVALID', `${id}.header "${r.header}" is not a valid header name.`);
  }
  if (!r.value.includes('{secret}')) {
    throw new ClauderonError('CONFIG_INVALID', `${id}.value must contain {secret}.`);
  }
  if (!r.secret_env && !r.secret_file) {
    throw new ClauderonError('CONFIG_INVALID', `${id} needs secret_env or secret_file.`);
  }
  if (!/^(\*\.)?[a-z0-9.-]+$/i.test(r.host) && !/^[0-9a-f:.]+$/i.test(r.host)) {
    throw new ClauderonError('CONFIG_INVALID', `${id}.host "${r.host}" must be a host name or *.suffix.`);
  }
  const secret: SecretRef = {};
  if (r.secret_env) secret.env = [r.secret_env];
  if (r.secret_file) secret.file = r.secret_file;
  return {
    id,
    host: r.host.toLowerCase(),
    header,
    secret,
    render: (s) => r.value.split('{secret}').join(s),
    placeholders: r.secret_env ? [r.secret_env] : [],
  };
}

/** The rules of a proxy config, user rules first (they override built-ins for the same host). */
export function rulesFor(config: Pick<Config['proxy'], 'rules' | 'builtin_rules'>): Rule[] {
  return [...config.rules.map(fromConfigRule), ...(config.builtin_rules ? BUILTIN_RULES : [])];
}

/** True when `host` matches `pattern`: equal, or `*.suffix` and host is a subdomain of suffix. */
export function hostMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase();
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p.startsWith('*.')) return h.endsWith(p.slice(1)) && h.length > p.length - 1;
  return p === h;
}

/**
 * Placeholder credentials for pod environments. With `secrets`, only those whose real secret is available
 * (and, for Anthropic, only the one the proxy will inject: the API key wins over the OAuth token, and a client
 * must send the matching kind of header); without, the built-in ones.
 */
export function placeholderEnv(
  opts: { config?: Pick<Config['proxy'], 'rules' | 'builtin_rules'>; secrets?: SecretSource } = {},
): Record<string, string> {
  const rules = opts.config ? rulesFor(opts.config) : [...BUILTIN_RULES];
  const env: Record<string, string> = {};
  const seenHosts = new Set<string>();
  for (const rule of rules) {
    if (rule.placeholders.length === 0) continue;
    if (opts.secrets) {
      let available = false;
      try {
        available = opts.secrets.get(rule.secret) !== undefined;
      } catch {
        available = false;
      }
      if (!available) continue;
      // Only the first active rule of a host is used; its placeholders alone tell the client what to send.
      if (seenHosts.has(rule.host)) continue;
      seenHosts.add(rule.host);
    } else if (rule.id === 'builtin:anthropic-oauth') {
      continue;
    }
    for (const name of rule.placeholders) {
      env[name] = `${PLACEHOLDER_PREFIX}-${name.toLowerCase().replace(/_/g, '-')}`;
    }
  }
  return env;
}
