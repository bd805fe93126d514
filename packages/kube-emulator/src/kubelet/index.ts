/**
 * The emulator's kubelet: schedules pods onto its node, runs their containers as real processes, and
 * serves logs, exec and attach. (Stub: filled in incrementally.)
 */
import type { Kubelet, KubeletOptions, StartKubelet } from '../contract.js';

export const startKubelet: StartKubelet = (opts: KubeletOptions): Kubelet => {
  void opts;
  return {
    nodeName: 'emulator-node',
    handleStream(_kind, _req, socket) {
      socket.destroy();
    },
    handleLog(_req, res) {
      res.writeHead(501, { 'content-type': 'text/plain' });
      res.end('not implemented');
    },
    faults: {
      exitContainer: () => false,
      killStreams: () => 0,
    },
    stop: async () => {},
  };
};
