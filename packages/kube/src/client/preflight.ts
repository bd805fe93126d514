import type { Config } from '@clauderon/config';
import { ClauderonError, type SessionSpec } from '@clauderon/protocol';
import { httpCodeOf, mapKubeError } from './errors.js';
import type { KubeClient } from './kube-client.js';

/** The access a session needs, checked with SelfSubjectAccessReviews. */
export const REQUIRED_ACCESS: ReadonlyArray<{ verb: string; resource: string; subresource?: string }> = [
  { verb: 'create', resource: 'pods' },
  { verb: 'create', resource: 'persistentvolumeclaims' },
  { verb: 'create', resource: 'configmaps' },
  { verb: 'create', resource: 'secrets' },
  { verb: 'create', resource: 'pods', subresource: 'exec' },
  { verb: 'delete', resource: 'pods' },
  { verb: 'watch', resource: 'pods' },
  { verb: 'delete', resource: 'persistentvolumeclaims' },
];

const DEFAULT_CLASS_ANNOTATIONS = [
  'storageclass.kubernetes.io/is-default-class',
  'storageclass.beta.kubernetes.io/is-default-class',
];

/** Outcome of one check: undefined when it passed or could not be decided (no right to look). */
type Check = Promise<ClauderonError | undefined>;

/**
 * Checks, in this order, and throws the first failure with its one-line fix: the namespace exists, the
 * storage class exists (or, unset, a default class exists), the service account exists when configured,
 * each image pull secret exists, and every access in REQUIRED_ACCESS is allowed. A check we are not
 * allowed to perform (e.g. reading StorageClasses) is skipped: the access reviews still speak. All checks
 * run concurrently.
 */
export async function preflight(
  client: KubeClient,
  spec: SessionSpec,
  config: Config,
  signal?: AbortSignal,
): Promise<void> {
  const ns = spec.namespace;
  const k = config.kubernetes;
  const o = () => client.requestOptions(signal);

  /** Runs a read; returns 'missing' on 404, 'unknown' on 403, or throws other errors mapped. */
  const probe = async (action: string, fn: () => Promise<unknown>): Promise<'ok' | 'missing' | 'unknown'> => {
    try {
      await fn();
      return 'ok';
    } catch (e) {
      const code = httpCodeOf(e);
      if (code === 404) return 'missing';
      if (code === 403) return 'unknown';
      throw mapKubeError(e, { action, namespace: ns });
    }
  };

  const namespace: Check = probe(`read namespace ${ns}`, () =>
    client.core.readNamespace({ name: ns }, o()),
  ).then((r) =>
    r === 'missing'
      ? new ClauderonError('NAMESPACE_MISSING', `namespace "${ns}" does not exist`, {
          hint: `kubectl create namespace ${ns}`,
          details: { namespace: ns },
        })
      : undefined,
  );

  const className = spec.storageClass ?? k.storage_class;
  const storage: Check = className
    ? probe(`read storage class ${className}`, () =>
        client.storage.readStorageClass({ name: className }, o()),
      ).then((r) =>
        r === 'missing'
          ? new ClauderonError('STORAGE_CLASS_MISSING', `storage class "${className}" does not exist`, {
              hint: 'set kubernetes.storage_class (or --storage-class) to one listed by `kubectl get storageclass`, or leave it empty for the default',
              details: { storageClass: className },
            })
          : undefined,
      )
    : (async () => {
        try {
          const list = await client.storage.listStorageClass({}, o());
          const isDefault = list.items.some((c) =>
            DEFAULT_CLASS_ANNOTATIONS.some((a) => c.metadata?.annotations?.[a] === 'true'),
          );
          if (isDefault) return undefined;
          const names = list.items.map((c) => c.metadata?.name).filter((n) => n);
          return new ClauderonError('STORAGE_CLASS_MISSING', 'the cluster has no default storage class', {
            hint:
              names.length > 0
                ? `set kubernetes.storage_class to one of: ${names.join(', ')}`
                : 'install a storage provisioner, or set kubernetes.storage_class',
            details: { storageClasses: names },
          });
        } catch (e) {
          if (httpCodeOf(e) === 403) return undefined;
          throw mapKubeError(e, { action: 'list storage classes', namespace: ns });
        }
      })();

  const serviceAccount: Check = k.service_account
    ? probe(`read service account ${k.service_account}`, () =>
        client.core.readNamespacedServiceAccount({ namespace: ns, name: k.service_account }, o()),
      ).then((r) =>
        r === 'missing'
          ? new ClauderonError(
              'SERVICE_ACCOUNT_MISSING',
              `service account "${k.service_account}" does not exist in namespace ${ns}`,
              {
                hint: `kubectl -n ${ns} create serviceaccount ${k.service_account}`,
                details: { namespace: ns, serviceAccount: k.service_account },
              },
            )
          : undefined,
      )
    : Promise.resolve(undefined);

  const pullSecrets: Check[] = k.image_pull_secrets.map((name) =>
    probe(`read secret ${name}`, () => client.core.readNamespacedSecret({ namespace: ns, name }, o())).then(
      (r) =>
        r === 'missing'
          ? new ClauderonError(
              'PULL_SECRET_MISSING',
              `image pull secret "${name}" does not exist in namespace ${ns}`,
              {
                hint: `kubectl -n ${ns} create secret docker-registry ${name} --docker-server=… --docker-username=… --docker-password=…`,
                details: { namespace: ns, secret: name },
              },
            )
          : undefined,
    ),
  );

  const reviews: Check[] = REQUIRED_ACCESS.map(async (a) => {
    const res = await client.call(`check access (${a.verb} ${a.resource})`, ns, () =>
      client.authz.createSelfSubjectAccessReview(
        {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                namespace: ns,
                verb: a.verb,
                resource: a.resource,
                ...(a.subresource ? { subresource: a.subresource } : {}),
              },
            },
          },
        },
        o(),
      ),
    );
    if (res.status?.allowed) return undefined;
    const what = `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}`;
    return new ClauderonError('FORBIDDEN', `not allowed to ${what} in namespace ${ns}`, {
      hint: `ask a cluster admin to grant "${what}" in namespace ${ns} (e.g. a Role bound to your user)`,
      details: {
        namespace: ns,
        verb: a.verb,
        resource: a.resource,
        subresource: a.subresource,
        reason: res.status?.reason,
      },
    });
  });

  const all = [namespace, storage, serviceAccount, ...pullSecrets, ...reviews];
  // Settle everything first so no rejection goes unhandled, then report in check order.
  const results = await Promise.allSettled(all);
  for (const r of results) {
    if (r.status === 'rejected') throw r.reason;
    if (r.value !== undefined) throw r.value;
  }
}
