import { ClauderonError } from '@clauderon/protocol';
import { ApiException } from '@kubernetes/client-node';

/** The metav1.Status an API error carries, as far as we read it. */
export interface KubeStatus {
  message?: string;
  reason?: string;
  code?: number;
  details?: {
    name?: string;
    kind?: string;
    group?: string;
    causes?: Array<{ reason?: string; message?: string }>;
  };
}

/** What a failed call was doing, for the error message. */
export interface ErrorContext {
  /** e.g. "create pod clauderon-x" */
  action: string;
  namespace?: string;
}

/** The parsed Status body of an ApiException, if it has one. */
export function statusOf(err: unknown): KubeStatus | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const body: unknown = err.body;
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as KubeStatus;
    } catch {
      return { message: body };
    }
  }
  if (body && typeof body === 'object') return body as KubeStatus;
  return undefined;
}

/** HTTP status of an API error (ApiException, a Watch error, or a WebSocket handshake error). */
export function httpCodeOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const e = err as { statusCode?: unknown; message?: unknown } | undefined;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  const m = typeof e?.message === 'string' ? /Unexpected server response: (\d{3})/.exec(e.message) : null;
  return m ? Number(m[1]) : undefined;
}

export function isNotFound(err: unknown): boolean {
  return httpCodeOf(err) === 404;
}

export function isAlreadyExists(err: unknown): boolean {
  return httpCodeOf(err) === 409 && statusOf(err)?.reason === 'AlreadyExists';
}

const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** The network or TLS error code somewhere in an error's cause chain (ECONNREFUSED, CERT_…). */
export function networkCodeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 6 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (NET_CODES.has(code) || isTlsCode(code))) return code;
    // ws reports handshake failures as an ErrorEvent whose `error` is the socket error
    e = (e as { cause?: unknown; error?: unknown }).cause ?? (e as { error?: unknown }).error;
  }
  return undefined;
}

function isTlsCode(code: string): boolean {
  return (
    code.startsWith('CERT_') ||
    code.startsWith('ERR_TLS') ||
    code.startsWith('ERR_SSL') ||
    code.includes('SELF_SIGNED') ||
    code.startsWith('UNABLE_TO_') ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT'
  );
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: unknown } | undefined)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

/** Maps any error from client-node (REST, watch, WebSocket) to a ClauderonError with a fix where one exists. */
export function mapKubeError(err: unknown, ctx: ErrorContext): ClauderonError {
  if (err instanceof ClauderonError) return err;
  // A deadline (our per-request one, AbortSignal.timeout) is no cancellation: the server did not answer.
  if ((err as { name?: unknown } | undefined)?.name === 'TimeoutError') {
    return new ClauderonError('TIMEOUT', `${ctx.action}: the Kubernetes API server did not answer in time`, {
      hint: 'check that the cluster is reachable and not overloaded, then retry',
      cause: err,
    });
  }
  if (isAbort(err)) return new ClauderonError('CANCELLED', `${ctx.action}: cancelled`, { cause: err });
  const code = httpCodeOf(err);
  const status = statusOf(err);
  const serverMsg =
    status?.message ?? (err instanceof Error && !(err instanceof ApiException) ? err.message : '');
  const details: Record<string, unknown> = {};
  if (code !== undefined) details.status = code;
  if (status?.reason) details.reason = status.reason;
  if (code === 401) {
    return new ClauderonError(
      'FORBIDDEN',
      `${ctx.action}: the cluster rejected the credentials (401 Unauthorized)`,
      {
        hint: 'refresh the kubeconfig credentials (e.g. log in to the cluster again) and retry',
        details,
        cause: err,
      },
    );
  }
  if (code === 403) {
    return new ClauderonError('FORBIDDEN', `${ctx.action}: forbidden: ${serverMsg || 'no permission'}`, {
      hint: `ask a cluster admin for RBAC rights in namespace ${ctx.namespace ?? '(the configured namespace)'}; \`clauderon doctor\` lists what is needed`,
      details,
      cause: err,
    });
  }
  if (code === 404 && status?.details?.kind === 'namespaces' && ctx.namespace !== undefined) {
    return namespaceMissing(ctx.namespace, err);
  }
  if (
    code === 404 &&
    ctx.namespace !== undefined &&
    serverMsg.includes(`namespaces "${ctx.namespace}" not found`)
  ) {
    return namespaceMissing(ctx.namespace, err);
  }
  let net = networkCodeOf(err);
  // undici's "fetch failed" with a cause we do not know still means no response ever came.
  if (net === undefined && code === undefined && err instanceof TypeError && err.message === 'fetch failed') {
    net = ((err.cause as Error | undefined)?.message ?? 'fetch failed').split('\n')[0];
  }
  if (net !== undefined) {
    const tls = isTlsCode(net!);
    return new ClauderonError(
      'CLUSTER_UNREACHABLE',
      `${ctx.action}: cannot reach the Kubernetes API server (${net}${tls ? ', TLS' : ''})`,
      {
        hint: tls
          ? "check the cluster's certificate-authority in the kubeconfig"
          : 'check that the cluster is running and that kubernetes.context / the kubeconfig point at it (`kubectl cluster-info`)',
        details: { ...details, network: net },
        cause: err,
      },
    );
  }
  // WebSocket handshake failures arrive as ErrorEvent-like objects, not Errors: use their message too.
  const msg = (err as { message?: unknown } | undefined)?.message;
  const what = serverMsg || (typeof msg === 'string' && msg !== '' ? msg.split('\n')[0] : String(err));
  return new ClauderonError(
    'KUBE_API',
    `${ctx.action}: ${what}${code !== undefined ? ` (HTTP ${code})` : ''}`,
    {
      details,
      cause: err,
    },
  );
}

function namespaceMissing(namespace: string, cause: unknown): ClauderonError {
  return new ClauderonError('NAMESPACE_MISSING', `namespace "${namespace}" does not exist`, {
    hint: `kubectl create namespace ${namespace}`,
    details: { namespace },
    cause,
  });
}
