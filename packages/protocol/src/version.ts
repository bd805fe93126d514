/** Version of clauderon, reported by `--version` and the daemon's health endpoint. */
export const VERSION = '0.1.0';
