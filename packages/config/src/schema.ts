/**
 * The configuration schema: one definition gives the TypeScript type, the defaults, the documentation of
 * config.example.toml and validation. Keys are snake_case as in the TOML file.
 */

export type FieldType =
  | 'string'
  | 'boolean'
  | 'integer'
  | 'duration'
  | 'string[]'
  | 'string-map'
  | 'table'
  | 'rules';

export interface Field<T> {
  readonly kind: 'field';
  readonly type: FieldType;
  readonly default: T;
  readonly doc: string;
  /** Allowed values for an enumerated string. */
  readonly oneOf?: readonly string[];
  /** Environment variable that overrides this key (besides the generic CLAUDERON_<SECTION>_<KEY>). */
  readonly env?: string;
  /** Bounds for integers. */
  readonly min?: number;
  readonly max?: number;
  /** Phantom for type inference. */
  readonly __t?: T;
}

export interface Section {
  readonly kind: 'section';
  readonly doc: string;
  readonly fields: Readonly<Record<string, Field<unknown> | Section>>;
}

const f =
  <T>(type: FieldType) =>
  (def: T, doc: string, extra: Partial<Pick<Field<T>, 'oneOf' | 'env' | 'min' | 'max'>> = {}): Field<T> => ({
    kind: 'field',
    type,
    default: def,
    doc,
    ...extra,
  });
export const str = f<string>('string');
export const bool = f<boolean>('boolean');
export const int = f<number>('integer');
/** Durations are written as "30s", "5m", "1h" or "250ms" and held as milliseconds. */
export const duration = (def: string, doc: string) => f<number>('duration')(parseDuration(def)!, doc);
export const strList = f<string[]>('string[]');
export const strMap = f<Record<string, string>>('string-map');
export const table = f<Record<string, unknown>>('table');

export interface ProxyRule {
  /** Exact host, or `*.suffix` for every subdomain. */
  host: string;
  /** Header to set, e.g. "authorization" or "x-api-key". */
  header: string;
  /** Value template; `{secret}` is replaced by the secret. */
  value: string;
  /** Environment variable holding the secret. */
  secret_env?: string;
  /** File under $CLAUDERON_HOME/secrets/ holding the secret. */
  secret_file?: string;
}
export const rules = f<ProxyRule[]>('rules');

const section = <F extends Record<string, Field<unknown> | Section>>(doc: string, fields: F) =>
  ({ kind: 'section', doc, fields }) as const satisfies Section;

export const schema = section('clauderon configuration', {
  features: section('Experimental features, off by default.', {
    kubernetes_backend: bool(
      false,
      'Enable the Kubernetes backend (also --enable-kubernetes-backend or CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND=1).',
      {
        env: 'CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND',
      },
    ),
  }),
  daemon: section('The local daemon.', {
    log_level: str('info', 'Log level.', {
      oneOf: ['trace', 'debug', 'info', 'warn', 'error'],
    }),
    shutdown_timeout: duration(
      '10s',
      'How long shutdown waits for in-flight work before recording it for recovery.',
    ),
  }),
  kubernetes: section('The Kubernetes backend.', {
    kubeconfig: str('', 'Path to the kubeconfig file; empty means $KUBECONFIG, then ~/.kube/config.'),
    context: str('', 'kubeconfig context to use; empty means the current context.'),
    namespace: str('clauderon', 'Namespace that session objects are created in.'),
    storage_class: str('', 'StorageClass of the workspace claim; empty means the cluster default.'),
    storage_size: str('10Gi', 'Size of the workspace claim.'),
    access_mode: str('ReadWriteOnce', 'Access mode of the workspace claim.', {
      oneOf: ['ReadWriteOnce', 'ReadWriteOncePod', 'ReadWriteMany'],
    }),
    image: str('clauderon-agent:0.1.0', 'Agent image (see docker/agent/Dockerfile).'),
    image_pull_policy: str('IfNotPresent', 'Image pull policy of the agent container.', {
      oneOf: ['Always', 'IfNotPresent', 'Never'],
    }),
    image_pull_secrets: strList([], 'Names of image pull secrets in the namespace.'),
    service_account: str('', 'Service account of session pods; empty means the namespace default.'),
    automount_service_account_token: bool(false, 'Mount the service account token into session pods.'),
    pod_template: table(
      {},
      'Merged into every session pod: { metadata = {…}, spec = {…} } (nodeSelector, tolerations, annotations…).',
    ),
    resources: section('Default container resources; empty means unset.', {
      cpu_request: str('500m', 'CPU request.'),
      memory_request: str('1Gi', 'Memory request.'),
      cpu_limit: str('', 'CPU limit.'),
      memory_limit: str('', 'Memory limit.'),
    }),
    timeouts: section('Named timeouts of create.', {
      pod_start: duration('10m', 'From pod creation until the agent runs, excluding image pull and sync.'),
      image_pull: duration('10m', 'How long an image may take to pull.'),
      sync: duration('10m', 'How long the workspace sync may take.'),
      command_start: duration('1m', 'How long the agent command may take to start.'),
      delete: duration('5m', 'How long delete waits for the pod to go.'),
    }),
  }),
  agent: section('The coding agent started in each session.', {
    command: strList(
      ['claude', '--dangerously-skip-permissions', '{prompt}'],
      'Command that starts the agent; "{prompt}" is replaced by the prompt.',
    ),
    multiplexer: str('tmux', 'Terminal multiplexer holding the agent terminal in the pod.', {
      oneOf: ['tmux'],
    }),
  }),
  attach: section('clauderon attach.', {
    detach_keys: str('ctrl-p,ctrl-q', 'Key sequence that detaches and leaves the agent running.'),
  }),
  proxy: section('The credential-injecting proxy.', {
    enabled: bool(true, 'Run the proxy and route session pods through it.'),
    listen: str('127.0.0.1:8899', 'Address the proxy listens on (host:port).'),
    pod_url: str(
      '',
      'URL pods use to reach the proxy; empty means http://<listen>. On kind/k3d use the host gateway, e.g. http://host.docker.internal:8899.',
    ),
    no_proxy: strList(
      ['localhost', '127.0.0.1', '::1', '.svc', '.cluster.local'],
      'Hosts pods reach directly.',
    ),
    allow: strList([], 'When non-empty, the only hosts (or *.suffix) pods may reach through the proxy.'),
    upstream_ca_file: str('', 'Extra CA certificates (PEM) trusted for upstream servers.'),
    host_overrides: strMap(
      {},
      'Host → address overrides for upstream connections ("api.example.com" = "127.0.0.1:8443").',
    ),
    builtin_rules: bool(true, 'Enable the built-in rules for Anthropic and GitHub.'),
    rules: rules(
      [],
      'Extra credential rules: [[proxy.rules]] host, header, value, secret_env | secret_file.',
    ),
  }),
});

type Infer<S> =
  S extends Field<infer T>
    ? T
    : S extends { kind: 'section'; fields: infer F }
      ? { readonly [K in keyof F]: Infer<F[K]> }
      : never;

/** The effective, frozen configuration. */
export type Config = Infer<typeof schema>;

/** Parses "30s", "5m", "1h", "250ms", "1h30m"; returns milliseconds or undefined. */
export function parseDuration(s: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  if (!/^(\d+(?:\.\d+)?(ms|s|m|h))+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(re)) {
    const n = Number(m[1]);
    total += m[2] === 'ms' ? n : m[2] === 's' ? n * 1e3 : m[2] === 'm' ? n * 6e4 : n * 3.6e6;
  }
  return total;
}

export function formatDuration(ms: number): string {
  if (ms % 3.6e6 === 0) return `${ms / 3.6e6}h`;
  if (ms % 6e4 === 0) return `${ms / 6e4}m`;
  if (ms % 1e3 === 0) return `${ms / 1e3}s`;
  return `${ms}ms`;
}

function defaultsOf(s: Section): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.fields)) {
    out[k] = v.kind === 'section' ? defaultsOf(v) : structuredClone(v.default);
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The defaults as a frozen Config; `overrides` (same shape, partial) is merged in, for tests. */
export function defaultConfig(overrides: DeepPartial<Config> = {}): Config {
  const base = defaultsOf(schema);
  mergeInto(base, overrides as Record<string, unknown>);
  return deepFreeze(base) as unknown as Config;
}

export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { -readonly [K in keyof T]?: DeepPartial<T[K]> }
    : T;

function mergeInto(target: Record<string, unknown>, src: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(src)) {
    const t = target[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && t && typeof t === 'object' && !Array.isArray(t)) {
      mergeInto(t as Record<string, unknown>, v as Record<string, unknown>);
    } else {
      target[k] = v;
    }
  }
}

export { deepFreeze as _deepFreeze, defaultsOf as _defaultsOf, mergeInto as _mergeInto };
