import { type Static, Type } from '@sinclair/typebox';

export { API_PREFIX, API_VERSION } from './core.js';

export const Backend = Type.Union([Type.Literal('kubernetes')]);
export type Backend = Static<typeof Backend>;

export const ErrorBodySchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  hint: Type.Optional(Type.String()),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

export const Resources = Type.Object({
  cpuLimit: Type.Optional(Type.String()),
  memoryLimit: Type.Optional(Type.String()),
  cpuRequest: Type.Optional(Type.String()),
  memoryRequest: Type.Optional(Type.String()),
});
export type Resources = Static<typeof Resources>;

/** What the CLI sends to create a session. Unset fields take the daemon's configured defaults. */
export const CreateSessionRequest = Type.Object(
  {
    backend: Backend,
    repo: Type.String({ minLength: 1, maxLength: 4096 }),
    prompt: Type.String({ maxLength: 1_000_000 }),
    name: Type.Optional(Type.String({ maxLength: 253 })),
    base: Type.Optional(Type.String({ maxLength: 1024 })),
    image: Type.Optional(Type.String({ maxLength: 1024 })),
    pullPolicy: Type.Optional(
      Type.Union([Type.Literal('Always'), Type.Literal('IfNotPresent'), Type.Literal('Never')]),
    ),
    resources: Type.Optional(Resources),
    storageClass: Type.Optional(Type.String({ maxLength: 253 })),
    storageSize: Type.Optional(Type.String({ maxLength: 64 })),
    namespace: Type.Optional(Type.String({ maxLength: 63 })),
    includeUncommitted: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateSessionRequest = Static<typeof CreateSessionRequest>;

/** The resolved, complete description of a session; stored in an annotation on every object it owns. */
export const SessionSpec = Type.Object({
  name: Type.String(),
  backend: Backend,
  namespace: Type.String(),
  repo: Type.String(),
  repoName: Type.String(),
  branch: Type.String(),
  baseCommit: Type.String(),
  prompt: Type.String(),
  image: Type.String(),
  pullPolicy: Type.String(),
  resources: Resources,
  storageClass: Type.Optional(Type.String()),
  storageSize: Type.String(),
  includeUncommitted: Type.Boolean(),
  createdAt: Type.String(),
});
export type SessionSpec = Static<typeof SessionSpec>;

export const SessionPhase = Type.Union([
  Type.Literal('Creating'),
  Type.Literal('Running'),
  Type.Literal('Exited'),
  Type.Literal('Failed'),
  Type.Literal('Deleting'),
  Type.Literal('Unknown'),
]);
export type SessionPhase = Static<typeof SessionPhase>;

export const Session = Type.Object({
  name: Type.String(),
  backend: Backend,
  namespace: Type.String(),
  phase: SessionPhase,
  /** What the agent is doing: running, exited (with code), waiting (with reason). */
  agent: Type.String(),
  repo: Type.String(),
  branch: Type.String(),
  createdAt: Type.String(),
  podName: Type.String(),
  attachedClients: Type.Integer(),
  message: Type.Optional(Type.String()),
});
export type Session = Static<typeof Session>;

export const SessionList = Type.Object({ sessions: Type.Array(Session) });
export type SessionList = Static<typeof SessionList>;

/** Steps a create goes through, in order; progress events name them. */
export const CreateSteps = [
  'validate',
  'preflight',
  'worktree',
  'snapshot',
  'claim',
  'ca',
  'secret',
  'pod',
  'schedule',
  'sync',
  'start',
  'ready',
] as const;
export type CreateStep = (typeof CreateSteps)[number];

/**
 * Long operations answer with newline-delimited JSON events: any number of `progress`, then exactly one
 * `result`, `done` or `error`.
 */
export type ProgressEvent =
  | { type: 'progress'; step: string; message: string; bytes?: { done: number; total: number } }
  | { type: 'result'; session: Session }
  /** The end of an operation that yields no session (delete, pull): a one-line summary and its data. */
  | { type: 'done'; message: string; data?: unknown }
  | { type: 'error'; error: Static<typeof ErrorBodySchema> };

export const Health = Type.Object({
  ok: Type.Boolean(),
  version: Type.String(),
  apiVersion: Type.Integer(),
  pid: Type.Integer(),
  kubernetesBackend: Type.Boolean(),
  uptimeSeconds: Type.Number(),
});
export type Health = Static<typeof Health>;

/** Attach WebSocket control messages (text frames); terminal bytes travel as binary frames. */
export type AttachControl =
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'detach' }
  | { type: 'notice'; message: string }
  | { type: 'exit'; code: number };
