#!/usr/bin/env bash
# Fuzz smoke test for the pool core: builds the `pool_ops` cargo-fuzz target,
# replays the committed seed corpus, then fuzzes for FUZZ_SECONDS (default 30).
# Exits non-zero on any crash (a model mismatch panics), leak, or timeout.
#
#   fuzz/smoke.sh                  # from anywhere; FUZZ_SECONDS=300 for longer
#
# Installs cargo-fuzz if it is missing. Works on a stable toolchain:
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags cargo-fuzz passes.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

cargo fuzz build pool_ops

# Every committed seed, once.
cargo fuzz run pool_ops corpus/pool_ops -- -runs=0

# New inputs go to a scratch corpus, so the committed seeds stay small.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/cymem_rs-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
cargo fuzz run pool_ops "$scratch" corpus/pool_ops -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1
echo "smoke.sh: no crash in ${seconds}s of fuzzing"
