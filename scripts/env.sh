# Sourced by the scripts: puts the pinned tools on PATH and shares one cargo target dir
# outside the clone, so fresh clones (CI) reuse earlier builds on the same machine.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/node_modules/.bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sigil/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
