import { HEADER_BYTES, PULL_MAGIC, SNAPSHOT_MAGIC } from './payload.js';

/** File (relative to the repository directory) that exists once a sync completed and was verified. */
export const SYNC_MARKER = '.git/clauderon-synced';

/** Absolute path of the sync marker for a repository directory in the pod. It holds the synced commit. */
export function syncMarkerPath(dir: string): string {
  return `${dir.replace(/\/+$/, '')}/${SYNC_MARKER}`;
}

/** Quotes a string for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function checkDir(dir: string): void {
  if (!dir.startsWith('/') || dir === '/' || dir.includes('\0') || /(^|\/)\.\.?(\/|$)/.test(dir)) {
    throw new Error(`pod directory must be an absolute normalised path, got ${JSON.stringify(dir)}`);
  }
}

function checkBranch(branch: string): void {
  // Session branches are clauderon/<dns-label>; anything fancier is refused rather than quoted twice.
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(branch) || branch.includes('..') || branch.endsWith('/')) {
    throw new Error(`unsupported branch name ${JSON.stringify(branch)}`);
  }
}

// Shared prelude: error helpers, a private git configuration (no system or user config, so the result does
// not depend on the image: no autocrlf, no global excludes, and safe.directory for a volume owned by
// someone else) and the helpers both scripts use.
const PRELUDE = String.raw`
set -u
say() { printf 'clauderon-sync: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
tmp=
trap '[ -n "$tmp" ] && rm -rf -- "$tmp"' EXIT
trap 'exit 130' INT TERM HUP
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_COMMON_DIR GIT_NAMESPACE GIT_CEILING_DIRECTORIES
git_env() {
  printf '[safe]\n\tdirectory = *\n[core]\n\tquotePath = true\n[advice]\n\tdetachedHead = false\n' > "$tmp/.gitconfig"
  HOME=$tmp GIT_CONFIG_GLOBAL=$tmp/.gitconfig GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  export HOME GIT_CONFIG_GLOBAL GIT_CONFIG_NOSYSTEM GIT_TERMINAL_PROMPT
}
`;

export interface PodReceiveOptions {
  /** Repository directory in the pod, e.g. /workspace/<repoName>. */
  dir: string;
  branch: string;
  /** When the script runs as root: chown the repository to this uid (and gid, default the uid). */
  uid?: number;
  gid?: number;
  /** Overwrite the pod's commits and edits made since the last sync instead of refusing. */
  force?: boolean;
}

/**
 * A POSIX sh script (`sh -c SCRIPT`, snapshot payload on stdin) that builds or updates the repository at
 * `dir` from a buildSnapshot payload, verifies it against the manifest, writes the sync marker and prints a
 * one-line JSON result. Exits non-zero with a `clauderon-sync: ...` message on stderr on any mismatch.
 * Needs sh, git, coreutils (`head -c` must read exactly N bytes, as GNU head does) and tar; no network.
 */
export function podReceiveScript(opts: PodReceiveOptions): string {
  checkDir(opts.dir);
  checkBranch(opts.branch);
  const owner = opts.uid === undefined ? '' : `${opts.uid}:${opts.gid ?? opts.uid}`;
  if (opts.uid !== undefined && !/^\d+:\d+$/.test(owner)) throw new Error('uid/gid must be integers');
  return `DIR=${shQuote(opts.dir)}
BRANCH=${shQuote(opts.branch)}
BRANCH_JSON=${shQuote(JSON.stringify(opts.branch))}
OWNER=${shQuote(owner)}
FORCE=${opts.force ? 1 : 0}
${PRELUDE}
parent=$(dirname -- "$DIR")
mkdir -p -- "$parent" || die "cannot create $parent"
tmp=$(mktemp -d "$parent/.clauderon-sync.XXXXXX") || die "cannot create a temporary directory in $parent"

# --- read the payload: a fixed ${HEADER_BYTES}-byte header, then exactly N bytes per section ---
hdr=$(dd bs=1 count=${HEADER_BYTES} 2>/dev/null)
set -f
set -- $hdr
set +f
[ "\${1:-}" = ${SNAPSHOT_MAGIC} ] || die "payload is not a clauderon snapshot (bad or missing header)"
[ "\${2:-}" = 1 ] || die "unsupported snapshot version \${2:-}"
shift 2
s_bundle=; s_index=; s_tree=; s_deleted=; s_manifest=; p_head=; p_sum=
for kv in "$@"; do
  case $kv in
    bundle=*) s_bundle=\${kv#*=} ;;
    index=*) s_index=\${kv#*=} ;;
    tree=*) s_tree=\${kv#*=} ;;
    deleted=*) s_deleted=\${kv#*=} ;;
    manifest=*) s_manifest=\${kv#*=} ;;
    head=*) p_head=\${kv#*=} ;;
    sha256=*) p_sum=\${kv#*=} ;;
  esac
done
for n in "$s_bundle" "$s_index" "$s_tree" "$s_deleted" "$s_manifest"; do
  case $n in ''|*[!0-9]*) die "malformed snapshot header (payload truncated?)" ;; esac
done
readsec() {
  head -c "$2" > "$tmp/$1" || die "reading the $1 section failed"
  got=$(wc -c < "$tmp/$1")
  [ "$((got + 0))" -eq "$2" ] || die "payload truncated: section $1 has $((got + 0)) of $2 bytes"
}
readsec bundle "$s_bundle"
readsec index "$s_index"
readsec tree "$s_tree"
readsec deleted "$s_deleted"
readsec manifest "$s_manifest"
exec 0</dev/null
if [ -n "$p_sum" ] && [ "$p_sum" != - ] && command -v sha256sum >/dev/null 2>&1; then
  sum=$(cat "$tmp/bundle" "$tmp/index" "$tmp/tree" "$tmp/deleted" "$tmp/manifest" | sha256sum)
  [ "\${sum%% *}" = "$p_sum" ] || die "payload corrupted: sha256 mismatch"
fi
m_magic=; m_format=; m_head=; m_branch=; m_index=; m_count=
{ read -r m_magic _v; read -r _k m_format; read -r _k m_head; read -r _k m_branch; read -r _k m_index; read -r _k m_count; } < "$tmp/manifest"
[ "$m_magic" = clauderon-manifest ] || die "payload corrupted: bad manifest"
[ "$m_head" = "$p_head" ] || die "payload corrupted: manifest head differs from header"
[ "$m_branch" = "$BRANCH" ] || die "snapshot is for branch $m_branch, expected $BRANCH"
tail -n +7 "$tmp/manifest" | LC_ALL=C sort > "$tmp/expected"
git_env

# Prints HEAD-vs-working-tree differences (paths, modes, blob ids; gitlinks left out), sorted.
listing() {
  # cp -p keeps the index's mtime, which git's racy-entry check depends on.
  if [ -f .git/index ]; then cp -p .git/index "$tmp/idx" || return 1; else rm -f "$tmp/idx"; fi
  GIT_INDEX_FILE=$tmp/idx git add --all -- . >/dev/null 2>"$tmp/add.err" || { cat "$tmp/add.err" >&2; return 1; }
  t=$(GIT_INDEX_FILE=$tmp/idx git write-tree) || return 1
  git diff-tree -r --no-renames --no-abbrev HEAD "$t" > "$tmp/raw" || return 1
  while IFS= read -r l; do
    case $l in ':160000 '*|':'??????' 160000 '*) ;; *) printf '%s\\n' "$l" ;; esac
  done < "$tmp/raw" | LC_ALL=C sort
}
state() {
  printf 'head %s\\nbranch %s\\nindex %s\\n' "$(git rev-parse -q --verify HEAD)" "$(git symbolic-ref -q HEAD)" "$(git write-tree 2>/dev/null)"
  listing
}

# --- the repository ---
if [ -e "$DIR/.git" ] || [ -L "$DIR/.git" ]; then
  [ -d "$DIR/.git" ] && [ ! -L "$DIR/.git" ] || die "$DIR/.git is not a repository directory; refusing to touch it"
  mode=update
else
  if [ -d "$DIR" ] && [ -n "$(ls -A -- "$DIR")" ]; then
    die "$DIR exists, is not empty and is not a repository; refusing to overwrite it"
  fi
  mkdir -p -- "$DIR" || die "cannot create $DIR"
  if [ "$m_format" = sha1 ]; then fmt=; else fmt=--object-format=$m_format; fi
  git init -q --template= $fmt "$DIR" 2>"$tmp/err" || die "git init failed: $(cat "$tmp/err")"
  mode=full
fi
cd "$DIR" || die "cannot enter $DIR"
# A pod whose workspace changed since the last sync (the agent's commits or edits) is not overwritten.
if [ "$mode" = update ] && [ "$FORCE" != 1 ] && [ -f .git/clauderon-state ]; then
  state > "$tmp/now" 2>/dev/null || die "cannot read the workspace's current state"
  [ "$(cat "$tmp/now")" = "$(cat .git/clauderon-state)" ] ||
    die "the workspace in the pod has commits or edits made since the last sync; pull them first (or sync with force)"
fi
rm -f -- "$DIR/${SYNC_MARKER}"

if [ -s "$tmp/bundle" ]; then
  git bundle verify -q "$tmp/bundle" >/dev/null 2>"$tmp/err" ||
    die "the history bundle does not apply: $(cat "$tmp/err") (corrupt payload, or the pod lacks the base commit: send a full snapshot)"
  git fetch -q --no-tags "$tmp/bundle" "+refs/heads/$BRANCH:refs/clauderon/incoming" 2>"$tmp/err" ||
    die "fetching from the bundle failed: $(cat "$tmp/err")"
  new=$(git rev-parse -q --verify "refs/clauderon/incoming^{commit}") || die "the bundle does not carry $BRANCH"
  git update-ref -d refs/clauderon/incoming
else
  new=$(git rev-parse -q --verify "$m_head^{commit}") ||
    die "the pod lacks commit $m_head and the snapshot carries no history: send a full snapshot"
fi
[ "$new" = "$m_head" ] || die "the bundle's $BRANCH is $new, expected $m_head"
git update-ref "refs/heads/$BRANCH" "$new" || die "cannot update $BRANCH"
git symbolic-ref HEAD "refs/heads/$BRANCH" || die "cannot switch to $BRANCH"
git reset -q --hard "$new" 2>"$tmp/err" || die "checkout failed: $(cat "$tmp/err")"
if [ -s "$tmp/index" ]; then
  git apply --cached "$tmp/index" 2>"$tmp/err" || die "staged changes do not apply: $(cat "$tmp/err")"
fi
# Deleted paths, one per line, bytes outside printable ASCII as \\0ooo escapes for printf %b.
while IFS= read -r l; do
  p=$(printf '%bx' "$l")
  rm -f -- "./\${p%x}" || die "cannot delete \${p%x}"
done < "$tmp/deleted"
git clean -q -f -d >/dev/null 2>"$tmp/err" || die "git clean failed: $(cat "$tmp/err")"
if [ -s "$tmp/tree" ]; then
  tar -xof "$tmp/tree" -C "$DIR" 2>"$tmp/err" || die "extracting the working-tree files failed: $(cat "$tmp/err")"
fi
git update-index -q --refresh >/dev/null 2>&1

# --- verify against the manifest ---
cur=$(git rev-parse -q --verify HEAD)
[ "$cur" = "$m_head" ] || die "verification failed: HEAD is $cur, expected $m_head"
[ "$(git symbolic-ref -q HEAD)" = "refs/heads/$BRANCH" ] || die "verification failed: HEAD is not on $BRANCH"
if [ "$m_index" != - ]; then
  it=$(git write-tree 2>/dev/null)
  [ "$it" = "$m_index" ] || die "verification failed: staged changes differ from the snapshot (index tree $it, expected $m_index)"
fi
listing > "$tmp/actual" || die "verification failed: cannot compute the working-tree state"
LC_ALL=C comm -3 "$tmp/expected" "$tmp/actual" > "$tmp/mismatch"
if [ -s "$tmp/mismatch" ]; then
  say "verification failed: the working tree does not match the snapshot manifest:"
  n=0
  while IFS= read -r l; do
    n=$((n + 1))
    [ "$n" -le 20 ] || continue
    case $l in "	"*) say "  found:    \${l#?}" ;; *) say "  expected: $l" ;; esac
  done < "$tmp/mismatch"
  [ "$n" -le 20 ] || say "  ... and $((n - 20)) more"
  exit 1
fi
state > .git/clauderon-state || die "cannot record the synced state"
printf '%s\\n' "$m_head" > "$DIR/${SYNC_MARKER}" || die "cannot write the sync marker"
if [ -n "$OWNER" ] && [ "$(id -u)" = 0 ]; then chown -R "$OWNER" "$DIR" || die "chown $OWNER failed"; fi
printf '{"ok":true,"mode":"%s","head":"%s","branch":%s,"changes":%s}\\n' "$mode" "$m_head" "$BRANCH_JSON" "$m_count"
`;
}

export interface PodBundleOptions {
  dir: string;
  branch: string;
  /** Also send `git diff HEAD` (staged and unstaged) and the untracked, non-ignored files. */
  includeUncommitted: boolean;
  /** A commit the local repository has: only newer history is bundled when it is an ancestor. */
  haveCommit?: string;
}

/**
 * A POSIX sh script that writes a pull-back payload (see applyPulledBundle) for `branch` of the repository at
 * `dir` to stdout; messages go to stderr. Needs sh, git, coreutils.
 */
export function podBundleScript(opts: PodBundleOptions): string {
  checkDir(opts.dir);
  checkBranch(opts.branch);
  const have = opts.haveCommit ?? '';
  if (have && !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(have))
    throw new Error('haveCommit must be a full commit id');
  return `DIR=${shQuote(opts.dir)}
BRANCH=${shQuote(opts.branch)}
HAVE=${shQuote(have)}
INCLUDE=${opts.includeUncommitted ? 1 : 0}
${PRELUDE}
exec 0</dev/null
cd "$DIR" 2>/dev/null && [ -d .git ] || die "$DIR is not a repository"
tmp=$(mktemp -d "$DIR/.git/clauderon-pull.XXXXXX") || die "cannot create a temporary directory"
git_env
head=$(git rev-parse -q --verify "refs/heads/$BRANCH^{commit}") || die "branch $BRANCH does not exist in $DIR"
if [ -n "$HAVE" ] && git merge-base --is-ancestor "$HAVE" "$head" 2>/dev/null; then
  if [ "$HAVE" = "$head" ]; then : > "$tmp/bundle"; else
    git bundle create "$tmp/bundle" "refs/heads/$BRANCH" "^$HAVE" >/dev/null 2>"$tmp/err" || die "git bundle failed: $(cat "$tmp/err")"
  fi
else
  git bundle create "$tmp/bundle" "refs/heads/$BRANCH" >/dev/null 2>"$tmp/err" || die "git bundle failed: $(cat "$tmp/err")"
fi
: > "$tmp/patch"
: > "$tmp/tree"
if [ "$INCLUDE" = 1 ]; then
  [ "$(git symbolic-ref -q HEAD)" = "refs/heads/$BRANCH" ] || die "HEAD is not on $BRANCH; cannot send uncommitted changes"
  git diff HEAD --binary --no-renames --no-ext-diff --no-textconv --no-color --src-prefix=a/ --dst-prefix=b/ --ignore-submodules=all > "$tmp/patch" 2>"$tmp/err" ||
    die "git diff failed: $(cat "$tmp/err")"
  git ls-files -z --others --exclude-standard > "$tmp/untracked" || die "git ls-files failed"
  if [ -s "$tmp/untracked" ]; then
    # A tree of just the untracked files, archived by git itself (keeps modes and symlinks; no GNU tar needed).
    GIT_INDEX_FILE=$tmp/uidx GIT_LITERAL_PATHSPECS=1 git add --pathspec-from-file="$tmp/untracked" --pathspec-file-nul >/dev/null 2>"$tmp/err" ||
      die "collecting untracked files failed: $(cat "$tmp/err")"
    t=$(GIT_INDEX_FILE=$tmp/uidx git write-tree) || die "git write-tree failed"
    git archive --format=tar "$t" > "$tmp/tree" || die "git archive failed"
  fi
fi
sz() { s=$(wc -c < "$1"); echo $((s + 0)); }
sum=-
if command -v sha256sum >/dev/null 2>&1; then sum=$(cat "$tmp/bundle" "$tmp/patch" "$tmp/tree" | sha256sum); sum=\${sum%% *}; fi
printf '%-${HEADER_BYTES - 1}s\\n' "${PULL_MAGIC} 1 bundle=$(sz "$tmp/bundle") patch=$(sz "$tmp/patch") tree=$(sz "$tmp/tree") head=$head sha256=$sum"
cat "$tmp/bundle" "$tmp/patch" "$tmp/tree"
`;
}
