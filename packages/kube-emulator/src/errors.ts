/** A Kubernetes `metav1.Status` failure, thrown inside the emulator and sent as the HTTP answer. */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  toStatus(): Record<string, unknown> {
    const s: Record<string, unknown> = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
    };
    if (this.details) s.details = this.details;
    s.code = this.code;
    return s;
  }
}

export interface FieldCause {
  reason: string;
  message: string;
  field: string;
}

export const notFound = (res: string, name: string): StatusError =>
  new StatusError(404, 'NotFound', `${res} "${name}" not found`, { name, kind: res });

export const alreadyExists = (res: string, name: string): StatusError =>
  new StatusError(409, 'AlreadyExists', `${res} "${name}" already exists`, { name, kind: res });

export const conflict = (res: string, name: string): StatusError =>
  new StatusError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${res} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, kind: res },
  );

export const badRequest = (message: string): StatusError => new StatusError(400, 'BadRequest', message);

export const forbidden = (message: string, details?: Record<string, unknown>): StatusError =>
  new StatusError(403, 'Forbidden', message, details);

/** One field error as apimachinery's `field.Error` prints it. */
export function fieldError(
  type: 'Invalid' | 'Required' | 'Forbidden' | 'Duplicate' | 'NotSupported' | 'TooLong' | 'NotFound',
  field: string,
  message: string,
  value?: unknown,
): FieldCause {
  const reasons = {
    Invalid: 'FieldValueInvalid',
    Required: 'FieldValueRequired',
    Forbidden: 'FieldValueForbidden',
    Duplicate: 'FieldValueDuplicate',
    NotSupported: 'FieldValueNotSupported',
    TooLong: 'FieldValueTooLong',
    NotFound: 'FieldValueNotFound',
  } as const;
  const label = {
    Invalid: 'Invalid value',
    Required: 'Required value',
    Forbidden: 'Forbidden',
    Duplicate: 'Duplicate value',
    NotSupported: 'Unsupported value',
    TooLong: 'Too long',
    NotFound: 'Not found',
  }[type];
  let text: string;
  if (type === 'Invalid' || type === 'Duplicate' || type === 'NotSupported' || type === 'NotFound') {
    const v = typeof value === 'string' ? `"${value}"` : JSON.stringify(value);
    text = `${label}: ${v}${message ? `: ${message}` : ''}`;
  } else {
    text = message ? `${label}: ${message}` : label;
  }
  return { reason: reasons[type], message: text, field };
}

/** 422 Invalid with the CamelCase kind, as the real server words it. */
export function invalid(kind: string, name: string, causes: FieldCause[]): StatusError {
  const parts = causes.map((c) => `${c.field}: ${c.message}`);
  const joined = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`;
  return new StatusError(422, 'Invalid', `${kind} "${name}" is invalid: ${joined}`, {
    name,
    kind,
    causes: causes.map((c) => ({ reason: c.reason, message: c.message, field: c.field })),
  });
}

export function internalError(err: unknown): StatusError {
  const msg = err instanceof Error ? err.message : String(err);
  return new StatusError(500, 'InternalError', `Internal error occurred: ${msg}`, {
    causes: [{ message: msg }],
  });
}
