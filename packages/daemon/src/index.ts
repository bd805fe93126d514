export { buildApp, InflightTracker } from './app.js';
export type { DoctorCheck, Emit, SessionBackend } from './backend.js';
export { BACKEND_DISABLED_MESSAGE, disabledBackend } from './disabled-backend.js';
export { type DaemonOptions, runDaemon } from './run.js';
export { prepareSocketPath, socketAnswers } from './socket.js';
export { SessionStore, type StoredSession } from './store.js';
