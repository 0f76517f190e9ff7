#!/usr/bin/env bash
# THE main job (README): set up, build, and run a local devnet — two anvil chains, the
# contracts deployed on both, DKG among N sigil nodes over libp2p, the nodes and a relayer,
# messages sent across both ways, and a report. Arguments go to `sigil devnet`
# (see `scripts/devnet.sh --help`), e.g. `scripts/devnet.sh --nodes 7 --messages 5000`.
# `scripts/devnet.sh --release ...` builds and runs optimised binaries (benchmarks); the
# default is the debug build, which the test suite shares, so the first run builds once.
set -euo pipefail
profile=debug
cargo_profile=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  cargo_profile=(--release)
  shift
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
source "$here/env.sh"
# A full disk shows up as a linker "Bus error": drop stale build outputs first.
"$here/prune-target.sh" --if-below 20
cd "$root"
# A cold build takes ~25 minutes on 2 cores (RocksDB's C++ is the largest part); cargo's own
# progress (crate n/N, the one compiling now) shows it is alive. A warm build takes seconds.
if [[ -x "$CARGO_TARGET_DIR/$profile/sigil" ]]; then
  echo "[devnet] building sigil and sigil-devnet ($profile, incremental) ..." >&2
else
  echo "[devnet] first $profile build of sigil and sigil-devnet: about 25 minutes on 2 cores, most of it" >&2
  echo "[devnet] RocksDB's C++; later runs reuse $CARGO_TARGET_DIR and take seconds" >&2
fi
start=$(date +%s)
# --progress on a terminal; one line per finished crate otherwise (CI logs stay readable).
if [[ -t 2 ]]; then
  cargo build ${cargo_profile[@]+"${cargo_profile[@]}"} -p sigil-node -p sigil-testnet --bins
else
  cargo build ${cargo_profile[@]+"${cargo_profile[@]}"} -p sigil-node -p sigil-testnet --bins 2>&1 | grep --line-buffered -E '^( +Compiling|error|warning: unused)|Finished' >&2
fi
echo "[devnet] build done in $(( $(date +%s) - start )) s" >&2
exec "$CARGO_TARGET_DIR/$profile/sigil" devnet "$@"
