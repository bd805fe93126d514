import type { SessionBackend } from '../backend.js';
import { disabledBackend } from '../disabled-backend.js';
import type { BackendContext } from '../run.js';

/** The Kubernetes session backend (being built). */
export async function createKubernetesBackend(_ctx: BackendContext): Promise<SessionBackend> {
  return disabledBackend();
}
