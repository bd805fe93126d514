export * from './ca-config-map.js';
export * from './claim.js';
export * from './merge.js';
export * from './names.js';
export * from './plan.js';
export * from './pod.js';
export * from './proxy-secret.js';
