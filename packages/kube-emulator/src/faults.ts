import type { KubeletFaults } from './contract.js';

export type Verb =
  | 'get'
  | 'list'
  | 'watch'
  | 'create'
  | 'update'
  | 'patch'
  | 'delete'
  | 'deletecollection'
  | 'exec';

/** One API request as the fault module and the request log see it. */
export interface RequestRecord {
  verb: Verb;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  watch: boolean;
}

export interface FaultMatch {
  verb?: Verb;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

export type FaultAction =
  | { status: number; reason?: string; message?: string }
  | { timeout: true }
  | { reset: true };

export interface FailNextSpec extends FaultMatch {
  /** How many matching requests fail (default 1). */
  count?: number;
  action: FaultAction;
}

export interface DenyRule {
  verb: string;
  resource: string;
  namespace?: string;
}

interface Armed {
  match: FaultMatch;
  remaining: number;
  action: FaultAction;
}

function matches(m: FaultMatch, r: RequestRecord): boolean {
  return (
    (m.verb === undefined || m.verb === r.verb) &&
    (m.resource === undefined || m.resource === r.resource) &&
    (m.subresource === undefined || m.subresource === (r.subresource ?? '')) &&
    (m.namespace === undefined || m.namespace === r.namespace) &&
    (m.name === undefined || m.name === r.name)
  );
}

/** True when a deny rule covers `verb` on `resource` in `namespace` ('*' matches anything). */
export function denied(
  rules: DenyRule[],
  verb: string,
  resource: string,
  namespace?: string,
): DenyRule | undefined {
  return rules.find(
    (d) =>
      (d.verb === '*' || d.verb === verb) &&
      (d.resource === '*' || d.resource === resource) &&
      (d.namespace === undefined || d.namespace === '' || d.namespace === namespace),
  );
}

/**
 * Fault injection and the request log. Programmatic twin of the `/emulator/` admin API.
 */
export class Faults {
  private armed: Armed[] = [];
  private latencies: Array<{ ms: number; match: FaultMatch }> = [];
  private log: RequestRecord[] = [];
  /** Runtime deny rules for SelfSubjectAccessReviews and requests (the `deny` start option is separate). */
  readonly denyRules: DenyRule[] = [];

  constructor(
    private readonly hooks: { endWatches: () => number; kubelet: () => KubeletFaults | undefined },
  ) {}

  /** Every API request so far (excluding /emulator/ admin calls), oldest first. */
  get requests(): readonly RequestRecord[] {
    return this.log;
  }

  /** Counts logged requests matching `m`. */
  count(m: FaultMatch & { watch?: boolean } = {}): number {
    return this.log.filter((r) => matches(m, r) && (m.watch === undefined || m.watch === r.watch)).length;
  }

  resetRequests(): void {
    this.log = [];
  }

  /** Makes the next `count` (default 1) matching requests fail with `action`. */
  failNext(spec: FailNextSpec): void {
    const { count, action, ...match } = spec;
    this.armed.push({ match, remaining: count ?? 1, action });
  }

  /** Delays every matching request (all when `match` is omitted) by `ms` before it is handled. */
  addLatency(ms: number, match: FaultMatch = {}): void {
    this.latencies.push({ ms, match });
  }

  /** Ends every open watch cleanly, as an API server restart or load balancer would. Returns how many. */
  endWatches(): number {
    return this.hooks.endWatches();
  }

  /** Closes exec/attach streams abnormally (forwarded to the kubelet). */
  killStreams(namespace?: string, pod?: string): number {
    return this.hooks.kubelet()?.killStreams(namespace, pod) ?? 0;
  }

  /** Makes a running container exit (forwarded to the kubelet). */
  exitContainer(
    namespace: string,
    pod: string,
    container: string,
    code: number,
    signal?: NodeJS.Signals,
  ): boolean {
    return this.hooks.kubelet()?.exitContainer(namespace, pod, container, code, signal) ?? false;
  }

  /** Adds a runtime deny rule (SelfSubjectAccessReview says no, and matching requests get 403). */
  deny(rule: DenyRule): void {
    this.denyRules.push(rule);
  }

  /** Removes armed failures, latencies and runtime deny rules. */
  clear(): void {
    this.armed = [];
    this.latencies = [];
    this.denyRules.length = 0;
  }

  /** @internal Records a request and returns the latency and fault that apply to it. */
  intercept(r: RequestRecord): { latencyMs: number; action?: FaultAction } {
    this.log.push(r);
    // Bounded so a long-running emulator does not grow without limit.
    if (this.log.length > 100_000) this.log.splice(0, this.log.length - 50_000);
    let latencyMs = 0;
    for (const l of this.latencies) if (matches(l.match, r)) latencyMs += l.ms;
    const a = this.armed.find((x) => x.remaining > 0 && matches(x.match, r));
    if (!a) return { latencyMs };
    a.remaining--;
    this.armed = this.armed.filter((x) => x.remaining > 0);
    return { latencyMs, action: a.action };
  }
}
