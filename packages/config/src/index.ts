export * from './load.js';
export * from './render.js';
export * from './schema.js';
