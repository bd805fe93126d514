import { ClauderonError, type ErrorBody } from '@clauderon/protocol';

const STATUS: Record<string, number> = {
  CLAUDERON_E_USAGE: 400,
  CLAUDERON_E_INVALID_NAME: 400,
  CLAUDERON_E_INVALID_QUANTITY: 400,
  CLAUDERON_E_INVALID_INPUT: 400,
  CLAUDERON_E_REPO_INVALID: 400,
  CLAUDERON_E_UNKNOWN_BACKEND: 400,
  CLAUDERON_E_BACKEND_DISABLED: 403,
  CLAUDERON_E_SESSION_NOT_FOUND: 404,
  CLAUDERON_E_SESSION_EXISTS: 409,
  CLAUDERON_E_SESSION_BUSY: 409,
  CLAUDERON_E_UNPULLED_COMMITS: 409,
  CLAUDERON_E_TIMEOUT: 504,
  CLAUDERON_E_CANCELLED: 499,
};

export function httpStatusFor(code: string): number {
  return STATUS[code] ?? 500;
}

/** Any thrown value as the wire error shape; unexpected errors become INTERNAL without leaking stacks. */
export function toErrorBody(e: unknown): ErrorBody {
  if (e instanceof ClauderonError) return e.toBody();
  const v = e as { validation?: unknown; message?: string; statusCode?: number };
  if (v && v.validation !== undefined) {
    return { code: 'CLAUDERON_E_INVALID_INPUT', message: `invalid request: ${v.message}` };
  }
  if (v && typeof v.statusCode === 'number' && v.statusCode >= 400 && v.statusCode < 500) {
    return { code: 'CLAUDERON_E_INVALID_INPUT', message: `invalid request: ${v.message}` };
  }
  return {
    code: 'CLAUDERON_E_INTERNAL',
    message: `internal error: ${e instanceof Error ? e.message : String(e)}`,
  };
}
