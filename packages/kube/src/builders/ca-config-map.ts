import type { SessionSpec } from '@clauderon/protocol';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { Components, sessionMetadata, sessionObjectNames } from './names.js';

/** Key of the CA bundle in the CA ConfigMap; it is mounted as a file of this name. */
export const CA_BUNDLE_KEY = 'ca.crt';

/**
 * The ConfigMap holding the proxy's CA certificate bundle (PEM). Certificates only: a private key would be
 * refused here, because ConfigMaps are readable by anyone who may read the namespace.
 */
export function buildCaConfigMap(spec: SessionSpec, caBundlePem: string): V1ConfigMap {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(caBundlePem)) {
    throw new Error('buildCaConfigMap: the CA bundle contains a private key; pass certificates only');
  }
  const names = sessionObjectNames(spec.name);
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: sessionMetadata(spec, names.caConfigMap, Components.caConfigMap),
    data: { [CA_BUNDLE_KEY]: caBundlePem },
  };
}
