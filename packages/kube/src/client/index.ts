export * from './errors.js';
export * from './exec.js';
export * from './kube-client.js';
export * from './kubeconfig.js';
export * from './preflight.js';
export * from './terminal.js';
export * from './util.js';
export * from './watch.js';
