import { Annotations, type Session, type SessionPhase, type SessionSpec } from '@clauderon/protocol';
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';

const AGENT = 'agent';

/** Reads the session spec a clauderon object carries in its annotation. */
export function specFromObject(obj: {
  metadata?: { annotations?: Record<string, string> };
}): SessionSpec | undefined {
  const raw = obj.metadata?.annotations?.[Annotations.spec];
  if (!raw) return undefined;
  try {
    const spec = JSON.parse(raw) as SessionSpec;
    return typeof spec.name === 'string' && typeof spec.namespace === 'string' ? spec : undefined;
  } catch {
    return undefined;
  }
}

function describeContainer(s: V1ContainerStatus | undefined): string {
  if (!s?.state) return 'pending';
  if (s.state.running) return 'running';
  if (s.state.terminated) return `exited (${s.state.terminated.exitCode})`;
  if (s.state.waiting) return `waiting (${s.state.waiting.reason ?? 'unknown'})`;
  return 'pending';
}

/** The user's view of a session, from its pod (cluster truth) and spec. Pure. */
export function sessionView(
  spec: SessionSpec,
  pod: V1Pod | undefined,
  opts: { attachedClients: number; localState?: string; podName: string },
): Session {
  let phase: SessionPhase = 'Unknown';
  let agent = 'pending';
  let message: string | undefined;
  if (opts.localState === 'creating') phase = 'Creating';
  else if (opts.localState === 'deleting') phase = 'Deleting';
  if (!pod) {
    if (phase === 'Unknown') {
      phase = 'Failed';
      agent = 'gone';
      message =
        'the session pod no longer exists (its workspace claim may remain; delete the session to clean up)';
    }
  } else {
    const agentStatus = pod.status?.containerStatuses?.find((c) => c.name === AGENT);
    const initStatus = pod.status?.initContainerStatuses?.[0];
    agent = describeContainer(agentStatus);
    if (pod.metadata?.deletionTimestamp) phase = 'Deleting';
    else if (phase === 'Unknown') {
      switch (pod.status?.phase) {
        case 'Running':
          phase = agentStatus?.state?.running ? 'Running' : 'Creating';
          break;
        case 'Succeeded':
          phase = 'Exited';
          break;
        case 'Failed':
          phase = agentStatus?.state?.terminated ? 'Exited' : 'Failed';
          break;
        case 'Pending':
          phase = 'Creating';
          if (initStatus?.state?.waiting?.reason && initStatus.state.waiting.reason !== 'PodInitializing') {
            agent = `waiting (${initStatus.state.waiting.reason})`;
          }
          break;
        default:
          phase = 'Unknown';
      }
    }
    const waiting = agentStatus?.state?.waiting ?? initStatus?.state?.waiting;
    if (waiting?.message) message = waiting.message;
  }
  const view: Session = {
    name: spec.name,
    backend: spec.backend,
    namespace: spec.namespace,
    phase,
    agent,
    repo: spec.repo,
    branch: spec.branch,
    createdAt: spec.createdAt,
    podName: opts.podName,
    attachedClients: opts.attachedClients,
  };
  if (message !== undefined) view.message = message;
  return view;
}
