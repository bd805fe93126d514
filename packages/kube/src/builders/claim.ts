import type { Config } from '@clauderon/config';
import type { SessionSpec } from '@clauderon/protocol';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { Components, sessionMetadata, sessionObjectNames } from './names.js';

/** The workspace claim: holds the repository and the agent's HOME, and outlives pod restarts. */
export function buildWorkspaceClaim(spec: SessionSpec, config: Config): V1PersistentVolumeClaim {
  const names = sessionObjectNames(spec.name);
  const storageClass = spec.storageClass ?? config.kubernetes.storage_class;
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: sessionMetadata(spec, names.claim, Components.claim),
    spec: {
      accessModes: [config.kubernetes.access_mode],
      resources: { requests: { storage: spec.storageSize || config.kubernetes.storage_size } },
      // An empty class means "the cluster default": the field must then be absent, because an explicit
      // "" asks for a claim with no class at all (static provisioning only).
      ...(storageClass ? { storageClassName: storageClass } : {}),
    },
  };
}
