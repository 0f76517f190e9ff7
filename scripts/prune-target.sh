#!/usr/bin/env bash
# Removes what the shared cargo target dir (scripts/env.sh) keeps but no build will use
# again: older copies of each test and binary executable and of the workspace's own
# libraries (a new hash per feature or dependency change, ~0.7 GB each in a debug build),
# and the incremental caches. A full disk shows up as a linker "Bus error"; this keeps the
# dependency artifacts, so nothing but the workspace crates rebuilds.
# Usage: scripts/prune-target.sh [--if-below GB]  (only when the target's disk has less free)
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ "${1:-}" = "--if-below" ]; then
  free_gb=$(df -BG --output=avail "$CARGO_TARGET_DIR" 2>/dev/null | tail -1 | tr -dc 0-9 || true)
  [ -n "$free_gb" ] && [ "$free_gb" -ge "${2:-20}" ] && exit 0
fi
for profile in debug release; do
  deps="$CARGO_TARGET_DIR/$profile/deps"
  [ -d "$deps" ] || continue
  python3 - "$deps" <<'PY'
import collections, os, re, sys
deps = sys.argv[1]
groups = collections.defaultdict(list)
for f in os.listdir(deps):
    m = re.match(r'^(.*)-([0-9a-f]{16})(\.[a-z]+)?$', f)
    if not m:
        continue
    name, ext = m.group(1), m.group(3) or ''
    p = os.path.join(deps, f)
    st = os.stat(p)
    if (ext == '' and st.st_mode & 0o111) or (name.startswith('libsigil_') and ext in ('.rlib', '.rmeta')):
        groups[(name, ext)].append((st.st_mtime, p, st.st_size))
freed = 0
for v in groups.values():
    v.sort(reverse=True)
    for _, p, size in v[1:]:
        os.remove(p)
        freed += size
print(f"prune-target: removed {freed / 1e9:.1f} GB of stale executables and workspace libraries in {deps}")
PY
  rm -rf "$CARGO_TARGET_DIR/$profile/incremental"
done
