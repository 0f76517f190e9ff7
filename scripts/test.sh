#!/usr/bin/env bash
# THE test command (README): setup, formatting, lints, every Rust test, every forge test,
# and the committed gas snapshot. Exits non-zero on the first failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
source "$here/env.sh"
cd "$root"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --quiet 2>&1 | tee "$CARGO_TARGET_DIR/last-test.log"

step "forge test"
(cd contracts && forge test)

step "forge snapshot --check (gas snapshot is current)"
(cd contracts && forge snapshot --check)

echo
echo "all checks passed"
