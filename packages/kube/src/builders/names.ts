import { Annotations, ClauderonError, Labels, LabelValues, type SessionSpec } from '@clauderon/protocol';

/** Names of every object a session owns, all derived from the (validated, ≤ 40 character) session name. */
export interface SessionObjectNames {
  pod: string;
  claim: string;
  caConfigMap: string;
  proxySecret: string;
}

/** The `app.kubernetes.io/component` value of each object a session owns. */
export const Components = {
  pod: 'agent',
  claim: 'workspace',
  caConfigMap: 'ca',
  proxySecret: 'proxy',
} as const;
export type Component = (typeof Components)[keyof typeof Components];

/** Kubernetes caps names that end up in labels (and pod host names) at 63 characters. */
export const NAME_MAX = 63;

/** Derives every object name of a session; throws INVALID_NAME if any would exceed 63 characters. */
export function sessionObjectNames(name: string): SessionObjectNames {
  const names: SessionObjectNames = {
    pod: `clauderon-${name}`,
    claim: `clauderon-${name}-workspace`,
    caConfigMap: `clauderon-${name}-ca`,
    proxySecret: `clauderon-${name}-proxy`,
  };
  for (const n of Object.values(names)) {
    if (n.length > NAME_MAX) {
      throw new ClauderonError(
        'INVALID_NAME',
        `object name "${n}" derived from session "${name}" is longer than ${NAME_MAX} characters`,
        { hint: 'choose a shorter --name' },
      );
    }
  }
  return names;
}

/** Labels every session object carries; `component` tells the objects of one session apart. */
export function sessionLabels(name: string, component?: Component): Record<string, string> {
  const labels: Record<string, string> = {
    [Labels.name]: LabelValues.name,
    [Labels.managedBy]: LabelValues.managedBy,
    [Labels.instance]: name,
    [Labels.session]: name,
  };
  if (component !== undefined) labels[Labels.component] = component;
  return labels;
}

/**
 * Largest spec annotation we write. The API server caps all annotations of an object at 256 KiB together,
 * and the prompt (the only large field) also travels as one process argument, which Linux caps at 128 KiB.
 */
export const SPEC_ANNOTATION_MAX = 128 * 1024;

/** Annotations every session object carries: the SessionSpec as JSON, so a session can be rebuilt. */
export function sessionAnnotations(spec: SessionSpec): Record<string, string> {
  const json = JSON.stringify(spec);
  if (Buffer.byteLength(json) > SPEC_ANNOTATION_MAX) {
    throw new ClauderonError(
      'INVALID_INPUT',
      `the session description is ${Buffer.byteLength(json)} bytes; the limit is ${SPEC_ANNOTATION_MAX} (is the prompt very long?)`,
      { hint: 'put a long prompt in a file in the repository and ask the agent to read it' },
    );
  }
  return { [Annotations.spec]: json, [Annotations.createdAt]: spec.createdAt };
}

/** Reads the SessionSpec back from an object's annotations; undefined when absent or unreadable. */
export function specFromAnnotations(
  annotations: Record<string, string> | undefined,
): SessionSpec | undefined {
  const raw = annotations?.[Annotations.spec];
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as unknown;
    if (v && typeof v === 'object' && typeof (v as { name?: unknown }).name === 'string')
      return v as SessionSpec;
  } catch {
    // fall through: a hand-edited or truncated annotation is the same as none
  }
  return undefined;
}

/** Common metadata of a session object. */
export function sessionMetadata(
  spec: SessionSpec,
  name: string,
  component: Component,
): { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string> } {
  return {
    name,
    namespace: spec.namespace,
    labels: sessionLabels(spec.name, component),
    annotations: sessionAnnotations(spec),
  };
}
