#!/usr/bin/env bash
# THE test command (README): setup, formatting, lints, every Rust test, every forge test,
# and the committed gas snapshot. Exits non-zero on the first failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
source "$here/env.sh"
# A full disk shows up as a linker "Bus error": drop stale build outputs first.
"$here/prune-target.sh" --if-below 20
cd "$root"

step() { printf '\n== %s\n' "$*"; }

step "monitoring: alert rules load, their unit tests pass, every alert has a runbook"
promtool check rules monitoring/alerts.yml
promtool test rules monitoring/alerts.test.yml
for alert in $(sed -n 's/^ *- alert: *//p' monitoring/alerts.yml); do
  grep -q "alertname: $alert\$" monitoring/alerts.test.yml || { echo "alert $alert has no promtool test" >&2; exit 1; }
done
for book in $(grep -o 'docs/runbooks/[A-Za-z]*\.md' monitoring/alerts.yml | sort -u); do
  [ -f "$book" ] || { echo "missing runbook $book" >&2; exit 1; }
done

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace --quiet 2>&1 | tee "$CARGO_TARGET_DIR/last-test.log"

step "fuzz: short pass (every target replays its committed corpus, then 5 s of mutations; long runs: scripts/fuzz.sh)"
cargo build --quiet -p sigil-fuzz
"$CARGO_TARGET_DIR/debug/sigil-fuzz" run all --secs 5

step "chaos devnet: 4 nodes, 200 messages (and 20 back) plus 2 poison messages to a gas burner, node 3 killed mid-run, 4 reorgs below finality each orphaning a message, one lying RPC of 3 per chain, then the admin API through sigil admin (f + 1 members pause chain A: its message waits while chain B flows, and goes through after resume; reobserve finds every log stored; a Failed message is delivered by sigil admin retry once its receiver is fixed), then a reorg deeper than finality on chain A (every member halts it, alarms, attests nothing conflicting, and still serves chain B); a real Prometheus scrapes it all with the alert rules (every dashboard query returns data, SigilChainHalted fires); sigil verify --rpc --inbox accepts a delivered attestation and refuses a forged one; every good message delivered exactly once, every poison message Failed, no orphan attested or delivered, and the auditor (chains + stores) passes"
cargo build --quiet -p sigil-node -p sigil-testnet --bins
devnet_dir="$(mktemp -d "${TMPDIR:-/tmp}/sigil-ci-devnet.XXXXXX")"
"$CARGO_TARGET_DIR/debug/sigil" devnet --nodes 4 --messages 200 --poison 2 --kill-node 3 --reorgs 4 --lying-rpc --pause-check --deep-reorg --monitor --quiet \
  --timeout 180 --run-dir "$devnet_dir" || { echo "devnet failed; logs in $devnet_dir" >&2; exit 1; }
rm -rf "$devnet_dir"

step "devnet: committee rotation mid-run (node 5 joins, node 4 leaves, new group key) while messages flow both ways; every message delivered exactly once"
devnet_dir="$(mktemp -d "${TMPDIR:-/tmp}/sigil-ci-rotation.XXXXXX")"
"$CARGO_TARGET_DIR/debug/sigil" devnet --nodes 4 --messages 200 --rate 20 --burst 10 --poison 2 \
  --rotate-at 100 --join 1 --leave 1 --quiet --timeout 240 --run-dir "$devnet_dir" \
  || { echo "rotation devnet failed; logs in $devnet_dir" >&2; exit 1; }
rm -rf "$devnet_dir"

step "netns devnet: each of 4 members on a host of its own (a Linux network namespace, veth link to a bridge, its own address, listening on 0.0.0.0 and advertising that address), 20 ms one way between members (tc netem, or delay proxies where the kernel has no netem), node 3 killed mid-run; every message delivered exactly once, audit passes"
if ip netns add sigil-ci-probe 2>/dev/null; then
  ip netns del sigil-ci-probe
  devnet_dir="$(mktemp -d "${TMPDIR:-/tmp}/sigil-ci-netns.XXXXXX")"
  "$CARGO_TARGET_DIR/debug/sigil" devnet --nodes 4 --messages 200 --kill-node 3 --netns --latency-ms 20 --quiet \
    --timeout 180 --run-dir "$devnet_dir" \
    || { echo "netns devnet failed; logs in $devnet_dir" >&2; exit 1; }
  rm -rf "$devnet_dir"
else
  echo "SKIPPED: this machine does not permit network namespaces (ip netns add failed: it needs root or CAP_NET_ADMIN, and iproute2)"
fi

step "systemd units in docs/deploy: systemd-analyze verify reports nothing"
if command -v systemd-analyze >/dev/null; then
  units="$(mktemp -d "${TMPDIR:-/tmp}/sigil-units.XXXXXX")"
  for u in docs/deploy/*.service; do
    sed "s#/usr/local/bin/sigil#$CARGO_TARGET_DIR/debug/sigil#" "$u" > "$units/$(basename "$u")"
  done
  out="$(cd "$units" && systemd-analyze verify --man=no ./*.service 2>&1)" || true
  rm -rf "$units"
  if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
else
  echo "SKIPPED: systemd-analyze is not installed"
fi

step "forge test"
(cd contracts && forge test)

step "forge snapshot --check (gas snapshot is current)"
(cd contracts && forge snapshot --check)

echo
echo "all checks passed"
