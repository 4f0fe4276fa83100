#!/usr/bin/env bash
# Runs the whole test suite: unit, property and scenario tests, doc tests, and a simulator smoke run.
# Installs what the tests need that cargo does not: etcdctl (Debian's etcd-client), which the
# server's integration tests drive, and chromium for the dashboard test.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need beyond cargo: etcdctl (Debian's etcd-client) for the compatibility tests,
# chromium (and its driver) for the dashboard test in a real browser.
missing=()
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: ${missing[*]} missing and cannot be installed here (not root or no" \
      "apt-get); the tests that need them skip themselves (and fail when CI is set)" >&2
  fi
fi

cargo test --workspace --release --doc
# The simulator smoke run: a few hundred seeds of 3- and 5-node clusters under faults.
# Clients write in sessions by default (exactly once; the exactly-once checker runs); the mode
# before sessions, and leader-lease reads, stay covered by shorter runs.
cargo run -p chorus-sim --release -- --seeds 200 --nodes 3
cargo run -p chorus-sim --release -- --seeds 100 --nodes 5
cargo run -p chorus-sim --release -- --seeds 50 --nodes 3 --no-sessions
cargo run -p chorus-sim --release -- --seeds 200 --nodes 3 --read-lease
# Followers answer "not leader" instead of forwarding writes through raft (the clients move).
cargo run -p chorus-sim --release -- --seeds 50 --nodes 3 --no-forward
# Busy clients: a leader's cycles carry proposals and commits together (its early answers).
cargo run -p chorus-sim --release -- --seeds 100 --nodes 3 --busy --duration-secs 5
# Every decoder of untrusted bytes under its fuzzer, briefly (the long run: docs/storage.md).
FUZZ_SECONDS="${FUZZ_SECONDS:-5}" bash scripts/fuzz-smoke.sh
# Unit, property, scenario and integration tests last, so their summary closes the output.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --release --no-fail-fast
else
  cargo test --workspace --release --no-fail-fast
fi
