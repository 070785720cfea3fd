#!/usr/bin/env bash
# The instruction counts of benches/load/instructions.sh, with the pingora change proposed
# upstream (README, "Performance"): pingora-http 0.9.1 with `pingora-http.patch` (a pre-parsed
# `HeaderName` inserted without a copy and a re-parse; `RequestHeader::reserve` and
# `ResponseHeader::reserve`), and authgate with `authgate.patch`, which uses both. Built in a copy
# of this checkout, into a target directory of its own; the checkout itself is not changed.
#   bash benches/load/pingora-patch/instructions.sh     about 10 minutes on 2 cores
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
work=${PATCHED_DIR:-/tmp/authgate-pingora-patch}
rm -rf "$work/src" "$work/authgate"
mkdir -p "$work"
# pingora-http as published, then patched.
cargo fetch --quiet --manifest-path "$repo/Cargo.toml"
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/pingora-http-0.9.1 | head -1)
cp -r "$registry" "$work/src"
patch -s -d "$work/src" -p1 < "$here/pingora-http.patch"
# This checkout's committed tree, patched, building against it.
git -C "$repo" archive --format=tar HEAD --prefix=authgate/ | tar -x -C "$work"
patch -s -d "$work/authgate" -p1 < "$here/authgate.patch"
printf '\n[patch.crates-io]\npingora-http = { path = "%s" }\n' "$work/src" >> "$work/authgate/Cargo.toml"
cp "$repo/Cargo.lock" "$work/authgate/"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$work/target} bash "$work/authgate/benches/load/instructions.sh" "$@"
