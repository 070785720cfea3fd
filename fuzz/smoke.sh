#!/usr/bin/env bash
# Every fuzz target for a short while (CI): the committed corpus replayed, then fresh inputs.
# The long runs are local:  cargo +nightly fuzz run -O <target> corpus/<target> -- -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")"
each=${FUZZ_SECONDS:-20}

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs a nightly compiler; without one, let stable accept the unstable flags.
if cargo +nightly --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
# An unoptimised build without a sanitizer compiles in a few minutes; the targets are safe Rust, and
# the long local runs use AddressSanitizer.
flags=(--dev --sanitizer none)
"${cargo[@]}" fuzz build "${flags[@]}"
for target in $("${cargo[@]}" fuzz list); do
  scratch=$(mktemp -d)
  log="$scratch/log"
  echo "fuzz smoke: $target (${each}s)"
  if ! "${cargo[@]}" fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$each" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz smoke: $target FAILED (the input is under fuzz/artifacts/$target)"
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" || true
  rm -rf "$scratch"
done
