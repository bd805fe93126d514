import type { Config } from '@clauderon/config';
import { ClauderonError, type Resources, type SessionSpec } from '@clauderon/protocol';
import type {
  V1Container,
  V1EnvVar,
  V1Pod,
  V1PodSecurityContext,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { CA_BUNDLE_KEY } from './ca-config-map.js';
import { mergeTemplate } from './merge.js';
import { Components, sessionMetadata, sessionObjectNames } from './names.js';

/** Name of the init container that receives the workspace. The daemon execs the sync into it. */
export const INIT_CONTAINER = 'workspace';
/** Name of the container running the agent under tmux. */
export const AGENT_CONTAINER = 'agent';

/** Where the workspace claim is mounted. */
export const WORKSPACE_DIR = '/workspace';
/** clauderon's own state on the claim (sync marker, agent exit code). */
export const STATE_DIR = `${WORKSPACE_DIR}/.clauderon`;
/** The sync writes this file last; the init container exits 0 once it exists. */
export const SYNC_MARKER_PATH = `${STATE_DIR}/synced`;
/** The agent's exit code, written when the agent command ends (decimal, one line). */
export const AGENT_EXIT_PATH = `${STATE_DIR}/agent-exit`;
/** HOME of the agent, on the claim so the agent's own state survives a pod restart. */
export const HOME_DIR = `${WORKSPACE_DIR}/.home`;
/** Scratch space (an emptyDir): tmux's socket, the agent launcher. */
export const TMP_DIR = '/tmp';
/** Where the CA ConfigMap is mounted, read-only. */
export const CA_DIR = '/etc/clauderon/ca';
/** The CA bundle file every runtime in the pod is told to trust. */
export const CA_FILE_PATH = `${CA_DIR}/${CA_BUNDLE_KEY}`;

/** The tmux session that holds the agent's terminal. */
export const TMUX_SESSION = 'clauderon';
/**
 * What the daemon execs (with a tty) in the agent container to attach. It first waits (up to ~10 s) for
 * the tmux session, because the container counts as running a moment before tmux has created it.
 * Attaching always repaints the whole window; the chained `refresh-client` forces a second full redraw
 * once the client has its final size. Exec commands get no `$(VAR)` expansion, so no escaping here.
 */
export const ATTACH_COMMAND: readonly string[] = [
  '/bin/sh',
  '-c',
  `n=0
while ! tmux has-session -t '${TMUX_SESSION}' 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -gt 100 ]; then echo 'clauderon: the agent terminal is not running' >&2; exit 1; fi
  sleep 0.1
done
exec tmux -u attach-session -t '${TMUX_SESSION}' \\; refresh-client`,
];

/** Env names that point at the CA bundle, one per runtime the agent may use. */
export const CA_ENV_NAMES = [
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'REQUESTS_CA_BUNDLE',
  'GIT_SSL_CAINFO',
  'CURL_CA_BUNDLE',
] as const;

/** The uid/gid everything in the pod runs as. */
export const POD_UID = 1000;

const VOLUMES = { workspace: 'workspace', tmp: 'tmp', ca: 'ca' } as const;
const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';
/** Linux refuses a single argument longer than 128 KiB (MAX_ARG_STRLEN), and the prompt is one. */
const ARG_MAX = 128 * 1024 - 1;

// The init container idles until the daemon's sync (exec'd into this very container) writes the marker.
// A claim that was synced before (a re-created pod) passes straight through.
const INIT_SCRIPT = `set -u
trap 'exit 143' TERM INT
if [ ! -e '${SYNC_MARKER_PATH}' ]; then echo 'clauderon: waiting for the workspace'; fi
while [ ! -e '${SYNC_MARKER_PATH}' ]; do sleep 1; done
echo 'clauderon: workspace ready'
`;

// The agent container: each argument of the agent command is written to its own file (no quoting, any
// bytes, no size limit of tmux's command messages), a launcher rebuilds the argv from those files inside
// tmux, runs it in the repository and records its exit code; the container then lives exactly as long
// as the tmux session and exits with the agent's code.
const AGENT_SCRIPT = `set -u
state='${STATE_DIR}'
run='${TMP_DIR}/clauderon'
mkdir -p "$state" "$HOME" "$run/args" || exit 1
rm -f "$state/agent-exit" "$run/args/"*
i=0
for a in "$@"; do
  i=$((i + 1))
  printf '%s' "$a" > "$run/args/$(printf '%05d' "$i")" || exit 1
done
cat > "$run/agent.sh" <<'CLAUDERON_EOF'
set --
for f in ${TMP_DIR}/clauderon/args/*; do
  [ -e "$f" ] || continue
  v=$(cat "$f"; printf x)
  set -- "$@" "\${v%x}"
done
if cd "$CLAUDERON_REPO_DIR"; then "$@"; code=$?; else code=1; fi
printf '%s\\n' "$code" > '${AGENT_EXIT_PATH}.tmp' && mv -f '${AGENT_EXIT_PATH}.tmp' '${AGENT_EXIT_PATH}'
exit "$code"
CLAUDERON_EOF
cat > "$run/tmux.conf" <<'CLAUDERON_EOF'
set -g history-limit 50000
set -g window-size latest
set -g status off
set -s escape-time 10
CLAUDERON_EOF
trap 'tmux kill-server 2>/dev/null; exit 143' TERM INT HUP
tmux -f "$run/tmux.conf" new-session -d -s '${TMUX_SESSION}' -x 200 -y 50 "sh $run/agent.sh" || exit 1
while tmux has-session -t '${TMUX_SESSION}' 2>/dev/null; do sleep 1; done
if [ -s "$state/agent-exit" ]; then
  code=$(cat "$state/agent-exit")
  echo "clauderon: agent exited with code $code"
  exit "$code"
fi
echo 'clauderon: the agent terminal ended without an exit code' >&2
exit 1
`;

export interface BuildPodOptions {
  /** Secret holding the proxy env (see buildProxySecret); omit when the proxy is off. */
  proxySecretName?: string;
  /** ConfigMap holding the CA bundle (see buildCaConfigMap); omit when the proxy is off. */
  caConfigMapName?: string;
  /** Keys of the proxy Secret, each loaded as the env variable of the same name with a secretKeyRef. */
  proxyEnvNames: string[];
  /** Plain env (NO_PROXY, placeholder credentials…). Never secret values: the pod spec is readable. */
  plainEnv: Record<string, string>;
  /** The agent command with the prompt already substituted. */
  agentCommand: string[];
}

/**
 * Kubernetes expands `$(VAR)` in command and args with the container's env (a prompt mentioning `$(HOME)`
 * would be rewritten); `$$` is its escape for a literal `$`, so every `$` is doubled.
 */
export function escapeExpansion(s: string): string {
  return s.replace(/\$/g, () => '$$');
}

/** The repository directory in the pod. */
export function repoDir(spec: SessionSpec): string {
  const r = spec.repoName;
  if (!/^[A-Za-z0-9._-]+$/.test(r) || r === '.' || r === '..' || r === '.clauderon' || r === '.home') {
    throw new ClauderonError('INVALID_INPUT', `repository name "${r}" cannot be used as a directory name`);
  }
  return `${WORKSPACE_DIR}/${r}`;
}

/** requests/limits from the session's resources; empty values are left out (no empty maps either). */
export function buildResources(r: Resources): V1ResourceRequirements | undefined {
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (r.cpuRequest) requests.cpu = r.cpuRequest;
  if (r.memoryRequest) requests.memory = r.memoryRequest;
  if (r.cpuLimit) limits.cpu = r.cpuLimit;
  if (r.memoryLimit) limits.memory = r.memoryLimit;
  const out: V1ResourceRequirements = {};
  if (Object.keys(requests).length > 0) out.requests = requests;
  if (Object.keys(limits).length > 0) out.limits = limits;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Pod-level security context satisfying the Pod Security Standards "restricted" profile. */
export function podSecurityContext(): V1PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: POD_UID,
    runAsGroup: POD_UID,
    fsGroup: POD_UID,
    // The default ("Always") re-chowns every file of the workspace on every mount: minutes for a big
    // repository. Only the root's ownership is checked with OnRootMismatch.
    fsGroupChangePolicy: 'OnRootMismatch',
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** Container-level security context satisfying "restricted", applied to every container. */
export function containerSecurityContext(): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: POD_UID,
    runAsGroup: POD_UID,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/**
 * The session pod: init container `workspace` (waits for the sync), container `agent` (tmux holding the
 * agent). Then `kubernetes.pod_template` is merged in, and the fields listed in `enforce` are put back.
 */
export function buildPod(spec: SessionSpec, config: Config, opts: BuildPodOptions): V1Pod {
  const names = sessionObjectNames(spec.name);
  const repo = repoDir(spec);
  if (opts.agentCommand.length === 0) throw new ClauderonError('INVALID_INPUT', 'the agent command is empty');
  for (const a of opts.agentCommand) {
    if (Buffer.byteLength(a) > ARG_MAX) {
      throw new ClauderonError(
        'INVALID_INPUT',
        `an argument of the agent command (the prompt?) is ${Buffer.byteLength(a)} bytes; the limit is ${ARG_MAX}`,
        { hint: 'put a long prompt in a file in the repository and ask the agent to read it' },
      );
    }
  }
  for (const n of [...opts.proxyEnvNames, ...Object.keys(opts.plainEnv)]) {
    if (!ENV_NAME.test(n))
      throw new ClauderonError('INVALID_INPUT', `"${n}" is not a valid env variable name`);
  }
  const clash = opts.proxyEnvNames.find((n) => n in opts.plainEnv);
  if (clash !== undefined) {
    throw new Error(`buildPod: env "${clash}" is both a proxy Secret key and a plain variable`);
  }
  if (opts.proxyEnvNames.length > 0 && opts.proxySecretName === undefined) {
    throw new Error('buildPod: proxyEnvNames given without proxySecretName');
  }

  const base: Record<string, string> = {
    HOME: HOME_DIR,
    TMPDIR: TMP_DIR,
    TMUX_TMPDIR: TMP_DIR,
    TERM: 'xterm-256color',
    CLAUDERON_SESSION: spec.name,
    CLAUDERON_REPO_DIR: repo,
  };
  const plain: Record<string, string> = { ...base };
  if (opts.caConfigMapName !== undefined) for (const n of CA_ENV_NAMES) plain[n] = CA_FILE_PATH;
  if (opts.proxySecretName !== undefined && !('NO_PROXY' in opts.plainEnv)) {
    const noProxy = config.proxy.no_proxy.join(',');
    plain.NO_PROXY = noProxy;
    plain.no_proxy = noProxy;
  }
  Object.assign(plain, opts.plainEnv);
  const env: V1EnvVar[] = Object.entries(plain).map(([name, value]) => ({ name, value }));
  for (const key of opts.proxyEnvNames) {
    env.push({ name: key, valueFrom: { secretKeyRef: { name: opts.proxySecretName!, key } } });
  }

  const mounts: V1VolumeMount[] = [
    { name: VOLUMES.workspace, mountPath: WORKSPACE_DIR },
    { name: VOLUMES.tmp, mountPath: TMP_DIR },
  ];
  const volumes: V1Volume[] = [
    { name: VOLUMES.workspace, persistentVolumeClaim: { claimName: names.claim } },
    { name: VOLUMES.tmp, emptyDir: {} },
  ];
  if (opts.caConfigMapName !== undefined) {
    mounts.push({ name: VOLUMES.ca, mountPath: CA_DIR, readOnly: true });
    volumes.push({ name: VOLUMES.ca, configMap: { name: opts.caConfigMapName, defaultMode: 0o444 } });
  }
  const resources = buildResources(spec.resources);

  const init: V1Container = {
    name: INIT_CONTAINER,
    image: spec.image,
    imagePullPolicy: spec.pullPolicy,
    command: ['/bin/sh', '-c', INIT_SCRIPT].map(escapeExpansion),
    workingDir: WORKSPACE_DIR,
    env: Object.entries(base).map(([name, value]) => ({ name, value })),
    volumeMounts: mounts.filter((m) => m.name !== VOLUMES.ca),
    securityContext: containerSecurityContext(),
    ...(resources ? { resources } : {}),
  };
  const agent: V1Container = {
    name: AGENT_CONTAINER,
    image: spec.image,
    imagePullPolicy: spec.pullPolicy,
    // "$0" of the script is the first word after it; the agent command follows as "$@".
    command: ['/bin/sh', '-c', AGENT_SCRIPT, 'clauderon-agent', ...opts.agentCommand].map(escapeExpansion),
    workingDir: WORKSPACE_DIR,
    env,
    volumeMounts: mounts,
    // Ready means "attachable": the tmux session exists.
    readinessProbe: {
      exec: { command: ['tmux', 'has-session', '-t', TMUX_SESSION] },
      periodSeconds: 10,
      failureThreshold: 1,
    },
    securityContext: containerSecurityContext(),
    ...(resources ? { resources } : {}),
  };

  const meta = sessionMetadata(spec, names.pod, Components.pod);
  meta.annotations[DEFAULT_CONTAINER_ANNOTATION] = AGENT_CONTAINER;
  const k = config.kubernetes;
  const ours: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: meta,
    spec: {
      // Never: a pod whose agent has finished is a finished session. Restarting would start the agent again
      // with the original prompt on top of its own earlier work; the user decides what happens next.
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 10,
      automountServiceAccountToken: k.automount_service_account_token,
      // Service links would put every Service of the namespace into the agent's environment.
      enableServiceLinks: false,
      ...(k.service_account ? { serviceAccountName: k.service_account } : {}),
      ...(k.image_pull_secrets.length > 0
        ? { imagePullSecrets: k.image_pull_secrets.map((name) => ({ name })) }
        : {}),
      securityContext: podSecurityContext(),
      initContainers: [init],
      containers: [agent],
      volumes,
    },
  };

  const template = k.pod_template as { metadata?: unknown; spec?: unknown };
  const merged = mergeTemplate(ours, { metadata: template.metadata, spec: template.spec });
  return enforce(merged, ours);
}

/**
 * Puts back what `pod_template` must not change. Ours wins for: name, namespace, our labels and
 * annotations; restartPolicy, automountServiceAccountToken, the pod security context's restricted fields,
 * hostNetwork/hostPID/hostIPC (removed); on every container (template sidecars too) the restricted
 * security-context fields; on our two containers image, command, args, our env variables, our volume
 * mounts; and our volumes. Everything else (nodeSelector, tolerations, affinity, resources, extra
 * annotations, labels, env, volumes, sidecars…) comes from the template when it sets it.
 */
function enforce(pod: V1Pod, ours: V1Pod): V1Pod {
  const meta = pod.metadata!;
  meta.name = ours.metadata!.name!;
  meta.namespace = ours.metadata!.namespace!;
  meta.labels = { ...meta.labels, ...ours.metadata!.labels };
  meta.annotations = { ...meta.annotations, ...ours.metadata!.annotations };
  const s = pod.spec!;
  const o = ours.spec!;
  s.restartPolicy = o.restartPolicy!;
  s.automountServiceAccountToken = o.automountServiceAccountToken!;
  delete s.hostNetwork;
  delete s.hostPID;
  delete s.hostIPC;
  s.securityContext = { ...s.securityContext, ...podSecurityContext() };
  const all = [...(s.initContainers ?? []), ...s.containers];
  for (const c of all) c.securityContext = { ...c.securityContext, ...containerSecurityContext() };
  for (const oc of [...(o.initContainers ?? []), ...o.containers]) {
    const c = all.find((x) => x.name === oc.name)!;
    c.image = oc.image!;
    c.command = oc.command!;
    delete c.args;
    c.env = upsertByName(c.env ?? [], oc.env ?? []);
    c.volumeMounts = upsertByName(c.volumeMounts ?? [], oc.volumeMounts ?? []);
  }
  s.volumes = upsertByName(s.volumes ?? [], o.volumes ?? []);
  return pod;
}

/** Replaces (whole) or appends each of `items` in `arr` by name. */
function upsertByName<T extends { name: string }>(arr: T[], items: T[]): T[] {
  const out = [...arr];
  for (const item of items) {
    const i = out.findIndex((x) => x.name === item.name);
    if (i < 0) out.push(structuredClone(item));
    else out[i] = structuredClone(item);
  }
  return out;
}
