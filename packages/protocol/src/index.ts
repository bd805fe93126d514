export * from './api.js';
export * from './errors.js';
export * from './labels.js';
export * from './validation.js';
export { VERSION } from './version.js';
