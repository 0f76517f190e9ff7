#!/usr/bin/env bash
# THE main job (README): set up, build, and run a local devnet — two anvil chains, the
# contracts deployed on both, DKG among N sigil nodes over libp2p, the nodes and a relayer,
# messages sent across both ways, and a report. Arguments go to `sigil devnet`
# (see `scripts/devnet.sh --help`), e.g. `scripts/devnet.sh --nodes 7 --messages 5000`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
source "$here/env.sh"
cd "$root"
echo "[devnet] building sigil and sigil-devnet ..." >&2
cargo build --quiet -p sigil-node -p sigil-testnet --bins
exec "$CARGO_TARGET_DIR/debug/sigil" devnet "$@"
