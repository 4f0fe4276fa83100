#!/usr/bin/env bash
# A short smoke run of every cargo-fuzz target, on stable Rust: the targets are built with
# libFuzzer's coverage instrumentation (no nightly, no sanitizer) and each runs for a few seconds.
# The long run is documented in docs/storage.md (cargo +nightly fuzz run TARGET).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-10}"
target_dir="${CARGO_TARGET_DIR:-../target}/fuzz-sancov"
triple="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --bins --target "$triple" --target-dir "$target_dir"

for target in wal_record_decoder snapshot_decoder mvcc_snapshot_decoder replica_decoders member_table_decoder; do
  corpus="$(mktemp -d)"
  echo "fuzz smoke: $target for ${seconds}s"
  "$target_dir/$triple/release/$target" "$corpus" -max_total_time="$seconds" 2>&1 | tail -n 1
  rm -rf "$corpus"
done
