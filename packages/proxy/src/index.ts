export { type AuditEntry, AuditLog } from './audit.js';
export { CA_BUNDLE_FILE, type Ca, caBundlePem, createCa, loadOrCreateCa } from './ca.js';
export { podProxyEnv } from './pod-env.js';
export {
  BUILTIN_RULES,
  CREDENTIAL_HEADERS,
  hostMatches,
  PLACEHOLDER_PREFIX,
  placeholderEnv,
  type Rule,
  rulesFor,
} from './rules.js';
export { loadSecretSource, type SecretRef, type SecretSource } from './secrets.js';
export { type ProxyLog, type ProxyServer, type StartProxyOptions, startProxy } from './server.js';
export { createTokenRegistry, type TokenRegistry } from './tokens.js';
