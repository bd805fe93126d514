/**
 * The part of the protocol with no schema library behind it: error codes, labels, validation, version and
 * the API's constants. The CLI and config load only this, so `clauderon list` does not pay for TypeBox at
 * start-up; the schemas (api.ts) are for the daemon's request validation.
 */
export * from './errors.js';
export * from './labels.js';
export * from './validation.js';
export { VERSION } from './version.js';

/** Version of the daemon API; the CLI refuses a daemon with another major. */
export const API_VERSION = 1;
export const API_PREFIX = '/v1';
