#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET..]: run each fuzz target (all by default) for SECONDS
# (default 10), starting from the committed seed corpus in fuzz/corpus/TARGET. New inputs
# found go to a scratch corpus under target/, so the committed seeds stay small; a crash
# fails the run and leaves its input in fuzz/artifacts/TARGET/.
#
# Needs cargo-fuzz (installed here if missing). cargo-fuzz uses nightly-only compiler flags;
# RUSTC_BOOTSTRAP=1 enables them on the stable toolchain, for the fuzz build only.
# Sanitizer: none (the protocol core has no unsafe code beyond one audited block), with
# debug assertions on, which also checks every Utf8Bytes against std's validator.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-10}
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -s none -a
for t in "${targets[@]}"; do
  scratch=../target/fuzz-corpus/$t
  log=../target/fuzz-$t.log
  mkdir -p "$scratch"
  if ! cargo fuzz run -s none -a "$t" "$scratch" "corpus/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz: $t: ${runs:-?} runs in ${seconds}s, no failure"
done
