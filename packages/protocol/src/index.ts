export * from './api.js';
export * from './core.js';
