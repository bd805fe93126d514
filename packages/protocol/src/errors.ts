/**
 * Stable error codes. Callers branch on `code`, never on message text. Each code maps to one exit code
 * (see README "Exit codes"); the CLI's single error boundary does that mapping.
 */
export const ErrorCodes = {
  USAGE: { code: 'CLAUDERON_E_USAGE', exit: 2 },
  INVALID_NAME: { code: 'CLAUDERON_E_INVALID_NAME', exit: 2 },
  INVALID_QUANTITY: { code: 'CLAUDERON_E_INVALID_QUANTITY', exit: 2 },
  INVALID_INPUT: { code: 'CLAUDERON_E_INVALID_INPUT', exit: 2 },
  REPO_INVALID: { code: 'CLAUDERON_E_REPO_INVALID', exit: 2 },
  UNKNOWN_BACKEND: { code: 'CLAUDERON_E_UNKNOWN_BACKEND', exit: 2 },
  CONFIG_INVALID: { code: 'CLAUDERON_E_CONFIG_INVALID', exit: 3 },
  DAEMON_UNREACHABLE: { code: 'CLAUDERON_E_DAEMON_UNREACHABLE', exit: 4 },
  DAEMON_RUNNING: { code: 'CLAUDERON_E_DAEMON_RUNNING', exit: 4 },
  DAEMON_SOCKET: { code: 'CLAUDERON_E_DAEMON_SOCKET', exit: 4 },
  BACKEND_DISABLED: { code: 'CLAUDERON_E_BACKEND_DISABLED', exit: 5 },
  SESSION_NOT_FOUND: { code: 'CLAUDERON_E_SESSION_NOT_FOUND', exit: 6 },
  SESSION_EXISTS: { code: 'CLAUDERON_E_SESSION_EXISTS', exit: 7 },
  SESSION_BUSY: { code: 'CLAUDERON_E_SESSION_BUSY', exit: 7 },
  UNPULLED_COMMITS: { code: 'CLAUDERON_E_UNPULLED_COMMITS', exit: 7 },
  KUBECONFIG: { code: 'CLAUDERON_E_KUBECONFIG', exit: 8 },
  CLUSTER_UNREACHABLE: { code: 'CLAUDERON_E_CLUSTER_UNREACHABLE', exit: 8 },
  NAMESPACE_MISSING: { code: 'CLAUDERON_E_NAMESPACE_MISSING', exit: 8 },
  STORAGE_CLASS_MISSING: { code: 'CLAUDERON_E_STORAGE_CLASS_MISSING', exit: 8 },
  SERVICE_ACCOUNT_MISSING: { code: 'CLAUDERON_E_SERVICE_ACCOUNT_MISSING', exit: 8 },
  PULL_SECRET_MISSING: { code: 'CLAUDERON_E_PULL_SECRET_MISSING', exit: 8 },
  FORBIDDEN: { code: 'CLAUDERON_E_FORBIDDEN', exit: 8 },
  KUBE_API: { code: 'CLAUDERON_E_KUBE_API', exit: 9 },
  IMAGE_PULL: { code: 'CLAUDERON_E_IMAGE_PULL', exit: 10 },
  POD_FAILED: { code: 'CLAUDERON_E_POD_FAILED', exit: 10 },
  SYNC_FAILED: { code: 'CLAUDERON_E_SYNC_FAILED', exit: 11 },
  PULL_FAILED: { code: 'CLAUDERON_E_PULL_FAILED', exit: 11 },
  TIMEOUT: { code: 'CLAUDERON_E_TIMEOUT', exit: 12 },
  PROXY: { code: 'CLAUDERON_E_PROXY', exit: 13 },
  CHECKS_FAILED: { code: 'CLAUDERON_E_CHECKS_FAILED', exit: 14 },
  CANCELLED: { code: 'CLAUDERON_E_CANCELLED', exit: 130 },
  INTERNAL: { code: 'CLAUDERON_E_INTERNAL', exit: 1 },
} as const;

export type ErrorKey = keyof typeof ErrorCodes;
export type ErrorCode = (typeof ErrorCodes)[ErrorKey]['code'];

const byCode = new Map<string, { code: ErrorCode; exit: number }>(
  Object.values(ErrorCodes).map((e) => [e.code, e]),
);

/** Exit code for an error code; unknown codes are internal errors. */
export function exitCodeFor(code: string): number {
  return byCode.get(code)?.exit ?? 1;
}

/** The wire shape of an error: how errors cross the daemon socket. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  /** One line telling the user how to fix it, when there is one. */
  hint?: string;
  details?: Record<string, unknown>;
}

/** A typed error with a stable code; the only error type that crosses package boundaries on purpose. */
export class ClauderonError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    key: ErrorKey,
    message: string,
    opts: { hint?: string; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ClauderonError';
    this.code = ErrorCodes[key].code;
    this.hint = opts.hint;
    this.details = opts.details;
  }

  get exitCode(): number {
    return exitCodeFor(this.code);
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.hint !== undefined) body.hint = this.hint;
    if (this.details !== undefined) body.details = this.details;
    return body;
  }

  /** Rebuilds a typed error from its wire shape (CLI side). */
  static fromBody(body: ErrorBody): ClauderonError {
    const key =
      (Object.keys(ErrorCodes) as ErrorKey[]).find((k) => ErrorCodes[k].code === body.code) ?? 'INTERNAL';
    const opts: { hint?: string; details?: Record<string, unknown> } = {};
    if (body.hint !== undefined) opts.hint = body.hint;
    if (body.details !== undefined) opts.details = body.details;
    return new ClauderonError(key, body.message, opts);
  }
}

export function isClauderonError(e: unknown): e is ClauderonError {
  return e instanceof ClauderonError;
}
