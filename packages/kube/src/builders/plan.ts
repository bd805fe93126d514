import type { Config } from '@clauderon/config';
import type { SessionSpec } from '@clauderon/protocol';
import type {
  V1ConfigMap,
  V1OwnerReference,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Secret,
} from '@kubernetes/client-node';
import { buildCaConfigMap } from './ca-config-map.js';
import { buildWorkspaceClaim } from './claim.js';
import { sessionObjectNames } from './names.js';
import { buildPod } from './pod.js';
import { buildProxySecret } from './proxy-secret.js';

/** One object of a create plan; `step` is the create step (protocol CreateSteps) that makes it. */
export type PlannedObject =
  | { step: 'claim'; kind: 'PersistentVolumeClaim'; name: string; body: V1PersistentVolumeClaim }
  | { step: 'ca'; kind: 'ConfigMap'; name: string; body: V1ConfigMap }
  | { step: 'secret'; kind: 'Secret'; name: string; body: V1Secret }
  | { step: 'pod'; kind: 'Pod'; name: string; body: V1Pod };

export interface PlanInputs {
  /** The agent command, prompt substituted. */
  agentCommand: string[];
  /** Plain pod env (placeholders, NO_PROXY…). */
  plainEnv?: Record<string, string>;
  /** The proxy wiring; omit when the proxy is disabled (then no CA ConfigMap and no Secret). */
  proxy?: {
    /** PEM certificates the pod must trust (the proxy CA). */
    caBundlePem: string;
    /** Env values that carry the session's proxy credential (HTTP_PROXY, https_proxy…). */
    env: Record<string, string>;
  };
}

/**
 * The objects a create makes, in creation order: claim, CA ConfigMap, proxy Secret, pod. The pod comes
 * last because it refers to all the others (a missing Secret would make it fail to start). After the pod
 * exists, set `ownerRefTo(pod)` on the ConfigMap and the Secret (see there).
 */
export function planCreate(spec: SessionSpec, config: Config, inputs: PlanInputs): PlannedObject[] {
  const names = sessionObjectNames(spec.name);
  const plainEnv = inputs.plainEnv ?? {};
  const plan: PlannedObject[] = [
    {
      step: 'claim',
      kind: 'PersistentVolumeClaim',
      name: names.claim,
      body: buildWorkspaceClaim(spec, config),
    },
  ];
  if (inputs.proxy) {
    // The pod spec is readable by anyone who may list pods: a proxy credential must only be in the Secret.
    for (const secret of Object.values(inputs.proxy.env)) {
      if (secret.length > 0 && Object.values(plainEnv).some((v) => v.includes(secret))) {
        throw new Error('planCreate: a proxy Secret value appears in the plain pod env');
      }
    }
    plan.push(
      {
        step: 'ca',
        kind: 'ConfigMap',
        name: names.caConfigMap,
        body: buildCaConfigMap(spec, inputs.proxy.caBundlePem),
      },
      {
        step: 'secret',
        kind: 'Secret',
        name: names.proxySecret,
        body: buildProxySecret(spec, inputs.proxy.env),
      },
    );
  }
  const pod = buildPod(spec, config, {
    ...(inputs.proxy ? { proxySecretName: names.proxySecret, caConfigMapName: names.caConfigMap } : {}),
    proxyEnvNames: inputs.proxy ? Object.keys(inputs.proxy.env) : [],
    plainEnv,
    agentCommand: inputs.agentCommand,
  });
  plan.push({ step: 'pod', kind: 'Pod', name: names.pod, body: pod });
  return plan;
}

/**
 * Owner reference to the session pod, for the CA ConfigMap and the proxy Secret: if the daemon dies in the
 * middle of a delete, Kubernetes' garbage collector still removes them once the pod is gone. The claim is
 * deliberately NOT owned by the pod: it holds the repository and the agent's HOME, which must survive the
 * pod being deleted and re-created; it is removed explicitly by `delete` (and found by `gc` via labels).
 */
export function ownerRefTo(pod: V1Pod): V1OwnerReference {
  const uid = pod.metadata?.uid;
  const name = pod.metadata?.name;
  if (!uid || !name)
    throw new Error('ownerRefTo: the pod has no uid yet (use the object the server returned)');
  return { apiVersion: 'v1', kind: 'Pod', name, uid, controller: false, blockOwnerDeletion: false };
}
