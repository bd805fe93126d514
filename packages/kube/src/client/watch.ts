import { formatDuration } from '@clauderon/config';
import { ClauderonError } from '@clauderon/protocol';
import { type CoreV1Event, type V1ContainerStatus, type V1Pod, Watch } from '@kubernetes/client-node';
import { mapKubeError } from './errors.js';
import type { KubeClient } from './kube-client.js';
import { sleep } from './util.js';

/**
 * One observation of a watched pod. `SYNC` is the state read from the API (at the start, and after a 410
 * Gone forced a re-list); the others are the watch's own events.
 */
export interface PodEvent {
  type: 'SYNC' | 'ADDED' | 'MODIFIED' | 'DELETED';
  pod: V1Pod;
}

const MAX_WATCH_FAILURES = 5;

/**
 * Watches one pod as an async generator. Starts from a read's resourceVersion, re-watches when client-node's
 * inactivity timeout (30 s, TimeoutError) or the server ends the stream, re-lists on 410 Gone, ends after
 * DELETED or when `signal` aborts (quietly: check the signal), and always releases the watch in `finally`.
 * A pod that does not exist at the start is reported as a KUBE_API error with details.reason "NotFound".
 */
export async function* watchPod(
  client: KubeClient,
  namespace: string,
  name: string,
  signal: AbortSignal,
): AsyncGenerator<PodEvent> {
  const action = `watch pod ${namespace}/${name}`;
  const read = async (): Promise<V1Pod | undefined> => {
    try {
      return await client.getPod(namespace, name, { signal });
    } catch (e) {
      if (signal.aborted) return undefined;
      throw e;
    }
  };
  let pod = await read();
  if (signal.aborted) return;
  if (pod === undefined) {
    throw new ClauderonError('KUBE_API', `pod ${namespace}/${name} not found`, {
      details: { reason: 'NotFound', namespace, name },
    });
  }
  yield { type: 'SYNC', pod };
  let rv = pod.metadata?.resourceVersion;

  const watch = new Watch(client.kubeConfig);
  if (client.watchInactivityMs !== undefined) {
    // client-node keeps this knob private; tests lower it to exercise the re-watch path quickly.
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = client.watchInactivityMs;
  }
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`;
  let ctrl: AbortController | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onAbort = () => {
    ctrl?.abort();
    notify();
  };
  signal.addEventListener('abort', onAbort);
  const abortedPromise = new Promise<undefined>((r) => {
    if (signal.aborted) r(undefined);
    else signal.addEventListener('abort', () => r(undefined), { once: true });
  });
  let failures = 0;
  try {
    while (!signal.aborted) {
      const events: Array<{ type: string; object: unknown }> = [];
      let ended: { err: unknown } | undefined;
      const starting = watch.watch(
        path,
        { fieldSelector: `metadata.name=${name}`, resourceVersion: rv, allowWatchBookmarks: true },
        (type: string, object: unknown) => {
          events.push({ type, object });
          notify();
        },
        (err: unknown) => {
          ended = { err: err ?? null };
          notify();
        },
      );
      // client-node resolves only once the server answers; a server that never does must not outlive our
      // deadline: give up on abort, and abort that watch whenever it does start.
      const started = await Promise.race([starting, abortedPromise]);
      if (started === undefined) {
        starting.then(
          (c) => c.abort(),
          () => {},
        );
        return;
      }
      ctrl = started;
      let relist = false;
      while (true) {
        const ev = events.shift();
        if (ev !== undefined) {
          const obj = ev.object as V1Pod & { code?: number; message?: string };
          if (ev.type === 'BOOKMARK') {
            rv = obj.metadata?.resourceVersion ?? rv;
          } else if (ev.type === 'ERROR') {
            if (obj.code === 410) {
              relist = true;
              ctrl.abort();
              break;
            }
            throw new ClauderonError('KUBE_API', `${action}: ${obj.message ?? 'watch error'}`, {
              details: { status: obj.code },
            });
          } else if (ev.type === 'ADDED' || ev.type === 'MODIFIED' || ev.type === 'DELETED') {
            failures = 0;
            rv = obj.metadata?.resourceVersion ?? rv;
            pod = obj;
            yield { type: ev.type, pod: obj };
            if (ev.type === 'DELETED') return;
          }
          continue;
        }
        if (ended !== undefined || signal.aborted) break;
        await new Promise<void>((r) => {
          wake = r;
        });
      }
      if (signal.aborted) return;
      const err = (ended as { err: unknown } | undefined)?.err;
      if (relist || (err as { statusCode?: number } | null)?.statusCode === 410) {
        // Our resourceVersion is too old to resume from: read the current state and watch from there.
        const fresh = await read();
        if (signal.aborted) return;
        if (fresh === undefined) {
          yield { type: 'DELETED', pod };
          return;
        }
        pod = fresh;
        rv = fresh.metadata?.resourceVersion;
        yield { type: 'SYNC', pod };
        continue;
      }
      if (err === null || err === undefined || (err as { name?: string }).name === 'TimeoutError') {
        // The server closed the stream, or nothing happened for 30 s (client-node's inactivity timer,
        // kubernetes-client/javascript#3022): resume from the last resourceVersion.
        continue;
      }
      failures++;
      if (failures >= MAX_WATCH_FAILURES) throw mapKubeError(err, { action, namespace });
      try {
        await sleep(Math.min(200 * 2 ** failures, 5000), signal);
      } catch {
        return;
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    ctrl?.abort();
  }
}

export interface WaitForPodOptions {
  signal: AbortSignal;
  timeoutMs: number;
  /** The config key that sets this timeout, named in the TIMEOUT error (e.g. kubernetes.timeouts.pod_start). */
  timeoutKey?: string;
  /** What is being waited for, for messages ("the workspace container to start"). */
  what?: string;
  /** Fail at once on waiting reasons that never recover (default true). */
  failFast?: boolean;
}

/** Waiting reasons that do not recover on their own, with the error code they map to. */
export const FATAL_WAITING_REASONS: Readonly<Record<string, 'IMAGE_PULL' | 'POD_FAILED'>> = {
  ErrImagePull: 'IMAGE_PULL',
  ImagePullBackOff: 'IMAGE_PULL',
  InvalidImageName: 'IMAGE_PULL',
  ErrImageNeverPull: 'IMAGE_PULL',
  CreateContainerConfigError: 'POD_FAILED',
  CreateContainerError: 'POD_FAILED',
  CrashLoopBackOff: 'POD_FAILED',
  RunContainerError: 'POD_FAILED',
};

/** A pod state that will never get better by waiting, if there is one. */
export interface PodProblem {
  key: 'IMAGE_PULL' | 'POD_FAILED';
  container?: string;
  reason: string;
  message: string;
}

/** Finds a fatal state in a pod: a fatal waiting reason, a failed init container, or a finished pod. */
export function podProblem(pod: V1Pod): PodProblem | undefined {
  const statuses: V1ContainerStatus[] = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
  ];
  for (const s of statuses) {
    const w = s.state?.waiting;
    const key = w?.reason ? FATAL_WAITING_REASONS[w.reason] : undefined;
    if (key !== undefined) {
      return { key, container: s.name, reason: w!.reason!, message: w?.message ?? '' };
    }
  }
  for (const s of pod.status?.initContainerStatuses ?? []) {
    const t = s.state?.terminated;
    if (t && t.exitCode !== 0) {
      return {
        key: 'POD_FAILED',
        container: s.name,
        reason: t.reason ?? 'Error',
        message: `exited with code ${t.exitCode}${t.message ? `: ${t.message}` : ''}`,
      };
    }
  }
  const phase = pod.status?.phase;
  if (phase === 'Failed' || phase === 'Succeeded') {
    return {
      key: 'POD_FAILED',
      reason: pod.status?.reason ?? phase,
      message: pod.status?.message ?? `the pod has finished (${phase})`,
    };
  }
  return undefined;
}

/** A one-line summary of where a pod is (phase, waiting reasons), for timeout messages. */
export function describePod(pod: V1Pod): string {
  const parts = [`phase ${pod.status?.phase ?? 'Unknown'}`];
  for (const c of pod.status?.conditions ?? []) {
    if (c.status === 'False' && c.reason)
      parts.push(`${c.type}: ${c.reason}${c.message ? ` (${c.message})` : ''}`);
  }
  for (const s of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    if (s.state?.waiting?.reason) parts.push(`${s.name}: ${s.state.waiting.reason}`);
  }
  return parts.join(', ');
}

/** Formats events as indented lines for an error message (newest last, at most `max`). */
export function formatEvents(events: CoreV1Event[], max = 8): string {
  return events
    .slice(-max)
    .map((e) => `  ${e.type ?? 'Normal'} ${e.reason ?? ''}: ${(e.message ?? '').trim()}`)
    .join('\n');
}

/**
 * Waits, by watching, until `predicate(pod)` holds. With failFast (default), fails at once on waiting
 * reasons that never recover (IMAGE_PULL or POD_FAILED, quoting the pod's Events), on a failed init
 * container, or on a finished pod; a deleted pod is POD_FAILED; the deadline is TIMEOUT naming the config
 * key; an abort is CANCELLED.
 */
export async function waitForPod(
  client: KubeClient,
  namespace: string,
  name: string,
  predicate: (pod: V1Pod) => boolean,
  opts: WaitForPodOptions,
): Promise<V1Pod> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = AbortSignal.any([opts.signal, deadline]);
  const what = opts.what ?? 'the pod to be ready';
  let last: V1Pod | undefined;
  for await (const ev of watchPod(client, namespace, name, signal)) {
    last = ev.pod;
    if (ev.type === 'DELETED') {
      throw new ClauderonError(
        'POD_FAILED',
        `pod ${namespace}/${name} was deleted while waiting for ${what}`,
        {
          details: { pod: name, namespace },
        },
      );
    }
    if (predicate(ev.pod)) return ev.pod;
    if (opts.failFast === false) continue;
    const problem = podProblem(ev.pod);
    if (problem !== undefined) throw await problemError(client, ev.pod, problem);
  }
  if (opts.signal.aborted) {
    throw new ClauderonError('CANCELLED', `waiting for ${what} (pod ${namespace}/${name}): cancelled`);
  }
  const events = last ? await eventsOf(client, last) : [];
  const key = opts.timeoutKey ?? 'kubernetes.timeouts.pod_start';
  throw new ClauderonError(
    'TIMEOUT',
    `pod ${namespace}/${name}: gave up waiting for ${what} after ${formatDuration(opts.timeoutMs)}` +
      (last ? ` (${describePod(last)})` : '') +
      (events.length > 0 ? `\nEvents:\n${formatEvents(events)}` : ''),
    {
      hint: `raise ${key} in the config if the cluster is just slow (e.g. a cold image pull)`,
      details: { pod: name, namespace, timeoutKey: key, timeoutMs: opts.timeoutMs },
    },
  );
}

async function eventsOf(client: KubeClient, pod: V1Pod): Promise<CoreV1Event[]> {
  try {
    return await client.listEvents(pod.metadata!.namespace!, pod.metadata!.name!, pod.metadata?.uid);
  } catch {
    return []; // the events are decoration; the real error is the one we are reporting
  }
}

async function problemError(client: KubeClient, pod: V1Pod, p: PodProblem): Promise<ClauderonError> {
  const events = await eventsOf(client, pod);
  const name = pod.metadata?.name ?? '';
  const where = p.container ? `container ${p.container}` : 'pod';
  const image = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
    (c) => c.name === p.container,
  )?.image;
  const msg =
    `pod ${pod.metadata?.namespace}/${name}: ${where}: ${p.reason}${p.message ? `: ${p.message}` : ''}` +
    (events.length > 0 ? `\nEvents:\n${formatEvents(events)}` : '');
  const hint =
    p.key === 'IMAGE_PULL'
      ? `check the image${image ? ` "${image}"` : ''} (kubernetes.image / --image) and kubernetes.image_pull_secrets`
      : `see \`kubectl -n ${pod.metadata?.namespace} describe pod ${name}\` and \`kubectl -n ${pod.metadata?.namespace} logs ${name}${p.container ? ` -c ${p.container}` : ''}\``;
  return new ClauderonError(p.key, msg, {
    hint,
    details: {
      pod: name,
      namespace: pod.metadata?.namespace,
      ...(p.container ? { container: p.container } : {}),
      reason: p.reason,
      events: events.map((e) => ({ type: e.type, reason: e.reason, message: e.message })),
    },
  });
}

/** Status of one (init or app) container of a pod. */
export function containerStatus(pod: V1Pod, container: string): V1ContainerStatus | undefined {
  return [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (s) => s.name === container,
  );
}

/** Predicate for waitForPod: the named (init or app) container is running. */
export function isContainerRunning(container: string): (pod: V1Pod) => boolean {
  return (pod) => containerStatus(pod, container)?.state?.running !== undefined;
}
