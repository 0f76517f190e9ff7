#!/usr/bin/env bash
# Idempotent setup for a fresh machine: Debian packages, pinned npm tooling (Foundry
# binaries, solc, OpenZeppelin), and a forge build. Safe to run repeatedly; it only
# installs what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages --------------------------------------------------------------
# libclang-dev + clang: bindgen for the rocksdb crate; pkg-config/libssl-dev are not
# needed (alloy uses rustls). nodejs/npm: Foundry and solc come from the npm registry.
# prometheus: promtool tests the alert rules, and `sigil devnet --monitor` runs it (the
# package's service is not started).
apt_pkgs=(libclang-dev clang build-essential nodejs npm prometheus)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere (e.g. a preinstalled node); accept working binaries.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust components ----------------------------------------------------------------
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    log "adding rustup component $c"; rustup component add "$c"
  fi
done

# --- npm tooling (pinned by package-lock.json) ----------------------------------------
stamp="node_modules/.sigil-lock-hash"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" || ! -x node_modules/.bin/forge ]]; then
  log "installing npm packages from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" > "$stamp"
fi
export PATH="$root/node_modules/.bin:$PATH"
for b in anvil forge cast; do command -v "$b" >/dev/null || { log "missing $b after npm ci"; exit 1; }; done

# --- contracts ----------------------------------------------------------------------
(cd contracts && forge build --quiet)
log "ready: $(forge --version | head -1)"
