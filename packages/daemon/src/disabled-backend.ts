import { ClauderonError } from '@clauderon/protocol';
import type { SessionBackend } from './backend.js';

export const BACKEND_DISABLED_MESSAGE =
  'the Kubernetes backend is experimental and disabled. Enable it in one of three ways: start the daemon with ' +
  '`clauderon daemon --enable-kubernetes-backend`, or set CLAUDERON_FEATURE_ENABLE_KUBERNETES_BACKEND=1 in the ' +
  "daemon's environment, or add `[features]` `kubernetes_backend = true` to ~/.clauderon/config.toml; then restart the daemon";

function disabled(): ClauderonError {
  return new ClauderonError('BACKEND_DISABLED', BACKEND_DISABLED_MESSAGE, {
    hint: 'clauderon daemon --enable-kubernetes-backend',
  });
}

/** Stands in when the Kubernetes backend is off: it never loads a kubeconfig or contacts a cluster. */
export function disabledBackend(): SessionBackend {
  const notFound = (name: string) =>
    new ClauderonError('SESSION_NOT_FOUND', `session "${name}" not found`, { hint: 'clauderon list' });
  return {
    async start() {},
    async create() {
      throw disabled();
    },
    async list() {
      return [];
    },
    async get(name) {
      throw notFound(name);
    },
    async delete(name) {
      throw notFound(name);
    },
    async logs(name) {
      throw notFound(name);
    },
    async pull(name) {
      throw notFound(name);
    },
    async attach(name, ws) {
      ws.close(4404, `session "${name}" not found`);
    },
    async gc() {
      throw disabled();
    },
    async doctor() {
      return [
        {
          name: 'kubernetes backend',
          ok: false,
          detail: 'disabled',
          hint: 'clauderon daemon --enable-kubernetes-backend',
        },
      ];
    },
    async proxyCa() {
      throw disabled();
    },
    async stop() {},
  };
}
