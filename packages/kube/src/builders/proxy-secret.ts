import type { SessionSpec } from '@clauderon/protocol';
import type { V1Secret } from '@kubernetes/client-node';
import { Components, sessionMetadata, sessionObjectNames } from './names.js';

/**
 * The Secret with the session's proxy environment (the proxy URL carrying the per-session token). The pod
 * reads each key with a secretKeyRef, so the values never appear in the pod spec.
 */
export function buildProxySecret(spec: SessionSpec, env: Record<string, string>): V1Secret {
  const names = sessionObjectNames(spec.name);
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: sessionMetadata(spec, names.proxySecret, Components.proxySecret),
    type: 'Opaque',
    // `data` (base64) rather than `stringData`: what we send is then exactly what a read returns.
    data,
  };
}
