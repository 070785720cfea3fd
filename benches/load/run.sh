#!/usr/bin/env bash
# Side-by-side load comparison of authgate with nginx and Caddy, on loopback, one command:
#   bash benches/load/run.sh            (DURATION=10 CONNS=50 ROUNDS=3 by default)
# Installs nginx-light, caddy and wrk from Debian's packages if missing, builds authgate in
# release, then runs benches/load/compare.py, which prints one table.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for tool in nginx caddy wrk; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=()
  for tool in "${missing[@]}"; do
    case "$tool" in nginx) pkgs+=(nginx-light) ;; *) pkgs+=("$tool") ;; esac
  done
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
cargo build --release --quiet --bin authgate --example bare_pingora
python3 benches/load/compare.py "$@"
echo
cargo bench --quiet --bench cache_memory 2>/dev/null | grep "^cache_memory"
cargo bench --quiet --bench moka_floor 2>/dev/null | grep "^moka_floor"
