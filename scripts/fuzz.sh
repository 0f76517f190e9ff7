#!/usr/bin/env bash
# Long fuzzing campaigns, on demand (the test suite runs only a short pass).
#
#   scripts/fuzz.sh <target> <seconds>      one target
#   scripts/fuzz.sh afl <seconds>           every AFL-capable target in turn
#
# AFL-capable targets (member, dkg, keystore) run under AFL++ with coverage feedback: the
# pinned cargo-afl is installed once into ~/.cache/sigil/tools, the harness is built with
# instrumentation into its own target dir (stable toolchain), afl-fuzz runs for <seconds>
# seeded from fuzz/corpus/<target>, and the queue is minimised (afl-cmin) back into
# fuzz/corpus/<target> (commit it). The others (config, attestation, api) live in sigil-node,
# whose RocksDB/libp2p graph is not rebuilt instrumented: they run in-process
# (`sigil-fuzz run`, release build, mutations without coverage feedback).
# Crashes go to fuzz/crashes/ and the exit status is 1. Figures: RELIABILITY.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
cd "$root"

target="${1:?usage: scripts/fuzz.sh <target|afl> <seconds>}"
secs="${2:?usage: scripts/fuzz.sh <target|afl> <seconds>}"
CARGO_AFL_VERSION=0.18.2
tools="$HOME/.cache/sigil/tools"
afl_target="$HOME/.cache/sigil/afl-target"
export PATH="$tools/bin:$PATH"
afl_targets="member dkg keystore"

if [ "$target" = afl ]; then
  for t in $afl_targets; do "$0" "$t" "$secs"; done
  exit 0
fi

out="$root/fuzz/out/$target"
mkdir -p "$root/fuzz/crashes"

if ! printf '%s\n' $afl_targets | grep -qx "$target"; then
  cargo build --quiet --release -p sigil-fuzz
  "$CARGO_TARGET_DIR/release/sigil-fuzz" run "$target" --secs "$secs" --seed "$(date +%s)"
  exit $?
fi

if ! cargo afl --version 2>/dev/null | grep -q "$CARGO_AFL_VERSION"; then
  echo "installing cargo-afl $CARGO_AFL_VERSION into $tools (once)"
  cargo install --locked cargo-afl --version "$CARGO_AFL_VERSION" --root "$tools"
fi
CARGO_TARGET_DIR="$afl_target" cargo afl build --quiet --release -p sigil-fuzz \
  --no-default-features --features afl
bin="$afl_target/release/sigil-fuzz"

rm -rf "$out"
mkdir -p "$out"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
echo "afl-fuzz $target for ${secs}s (log: $out.log)"
cargo afl fuzz -V "$secs" -i "fuzz/corpus/$target" -o "$out" -- "$bin" afl "$target" > "$out.log" 2>&1 || true
stats="$out/default/fuzzer_stats"
[ -f "$stats" ] || { echo "afl-fuzz did not start; see $out.log" >&2; tail -20 "$out.log" >&2; exit 1; }
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|saved_crashes|saved_hangs) ' "$stats"

# Minimise the queue (with the old corpus) back into the committed corpus.
tmp="$(mktemp -d)"
cargo afl cmin -i "$out/default/queue" -o "$tmp/min" -- "$bin" afl "$target" > "$out.cmin.log" 2>&1 \
  && { rm -rf "fuzz/corpus/$target"; mkdir -p "fuzz/corpus/$target";
       for f in "$tmp/min"/*; do cp "$f" "fuzz/corpus/$target/$(sha256sum "$f" | cut -c1-16)"; done; } \
  || echo "afl-cmin failed (see $out.cmin.log); corpus left as it was"
rm -rf "$tmp"
echo "corpus: $(ls "fuzz/corpus/$target" | wc -l) entries in fuzz/corpus/$target"

crashes=$(ls "$out/default/crashes" 2>/dev/null | grep -v README || true)
if [ -n "$crashes" ]; then
  for c in $crashes; do cp "$out/default/crashes/$c" "fuzz/crashes/$target-$(sha256sum "$out/default/crashes/$c" | cut -c1-16)"; done
  echo "CRASHES in $target: see fuzz/crashes/ (replay: sigil-fuzz run $target with the file in its corpus)" >&2
  exit 1
fi
