#!/usr/bin/env bash
# Runs the whole test suite: unit, property and scenario tests, doc tests, and a simulator smoke run.
# Installs what the tests need that cargo does not (nothing yet).
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --release --no-fail-fast
else
  cargo test --workspace --release --no-fail-fast
fi
cargo test --workspace --release --doc
# The simulator smoke run: a few hundred seeds of 3- and 5-node clusters under faults.
cargo run -p chorus-sim --release -- --seeds 200 --nodes 3
cargo run -p chorus-sim --release -- --seeds 100 --nodes 5
