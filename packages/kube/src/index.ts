export * from './builders/index.js';
export * from './client/index.js';
