export { cleanEnv } from './git.js';
export {
  encodeHeader,
  HEADER_BYTES,
  PAYLOAD_VERSION,
  PULL_MAGIC,
  PULL_SECTIONS,
  parseHeader,
  SNAPSHOT_MAGIC,
  SNAPSHOT_SECTIONS,
} from './payload.js';
export {
  type PodBundleOptions,
  type PodReceiveOptions,
  podBundleScript,
  podReceiveScript,
  SYNC_MARKER,
  shQuote,
  syncMarkerPath,
} from './pod-scripts.js';
export { type ApplyPulledBundleOptions, applyPulledBundle, type PullResult, readPayload } from './pull.js';
export { inspectRepo, type RepoInfo } from './repo.js';
export { type BuildSnapshotOptions, buildSnapshot, type ManifestEntry, type Snapshot } from './snapshot.js';
export {
  type CreatedWorktree,
  type CreateWorktreeOptions,
  createWorktree,
  type RemoveWorktreeOptions,
  removeWorktree,
  sessionBranch,
  stashWorktreeChanges,
  type UnpulledCommitsOptions,
  unpulledCommits,
  worktreePath,
} from './worktree.js';
