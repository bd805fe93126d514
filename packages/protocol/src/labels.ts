/** Every label and annotation key clauderon puts on Kubernetes objects. Nothing else may spell them. */
export const Labels = {
  name: 'app.kubernetes.io/name',
  managedBy: 'app.kubernetes.io/managed-by',
  instance: 'app.kubernetes.io/instance',
  component: 'app.kubernetes.io/component',
  /** Our own session label: the session name. Selecting on it finds everything a session owns. */
  session: 'clauderon.dev/session',
} as const;

export const LabelValues = {
  name: 'clauderon',
  managedBy: 'clauderon',
} as const;

export const Annotations = {
  /** JSON of the SessionSpec, so the daemon can rebuild a session from the cluster alone. */
  spec: 'clauderon.dev/spec',
  /** The create step a session had reached; lets a restarted daemon finish or roll back. */
  state: 'clauderon.dev/state',
  createdAt: 'clauderon.dev/created-at',
} as const;

/** Selector that finds every object clauderon manages. */
export const managedSelector = `${Labels.managedBy}=${LabelValues.managedBy}`;

/** Selector that finds every object of one session. */
export function sessionSelector(session: string): string {
  return `${managedSelector},${Labels.session}=${session}`;
}
