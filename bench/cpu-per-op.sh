#!/usr/bin/env bash
# Member CPU per operation: starts a fresh 3-member cluster of SYSTEM (chorus or etcd) on
# loopback, warms it up, runs one `chorus bench` load and prints the bench's human line and, for
# each member, the CPU time it used (user + system, from /proc/<pid>/stat) divided by the
# operations, in microseconds. Where throughput is CPU-bound (this machine: the members and the
# generator share two cores), this is the number to lower; it is also steadier than throughput
# between runs. Alternate the systems (or builds) and compare only runs made side by side.
#
#   bench/cpu-per-op.sh chorus          # 64-client puts, 5 s
#   CLIENTS=256 bench/cpu-per-op.sh etcd
#   CHORUS=/tmp/chorus-old bench/cpu-per-op.sh chorus   # another build
#
# Environment: CLIENTS (64), CONNS (8), DURATION (5s), WORKLOAD (put), CHORUS (the release build;
# also the generator), SERVER_ENV (extra environment for the members, e.g. CHORUS_LOG=warn).
set -euo pipefail

SYSTEM=${1:?usage: cpu-per-op.sh chorus|etcd}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHORUS=${CHORUS:-$ROOT/target/release/chorus}
CLIENTS=${CLIENTS:-64}
CONNS=${CONNS:-8}
DURATION=${DURATION:-5s}
WORKLOAD=${WORKLOAD:-put}
BASE=26379
WORK=$(mktemp -d /tmp/chorus-cpu.XXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$CHORUS" ] || (cd "$ROOT" && cargo build --release -q -p chorus-cli)

cluster=""
for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((BASE + 1 + i * 2)),"; done
sync
for i in 0 1 2; do
  client=$((BASE + i * 2)) peer=$((BASE + 1 + i * 2))
  case "$SYSTEM" in
    chorus)
      env ${SERVER_ENV:-} "$CHORUS" server --name "m$i" --data-dir "$WORK/m$i" \
        --listen-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "${cluster%,}" >"$WORK/m$i.log" 2>&1 &
      ;;
    etcd)
      env ${SERVER_ENV:-} etcd --name "m$i" --data-dir "$WORK/m$i" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "${cluster%,}" --initial-cluster-state new --initial-cluster-token cpu \
        --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) >"$WORK/m$i.log" 2>&1 &
      ;;
    *) echo "unknown system $SYSTEM (chorus or etcd)" >&2; exit 2 ;;
  esac
  PIDS+=($!)
done
ENDPOINTS=127.0.0.1:$BASE,127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 4))

bench() { "$CHORUS" bench --endpoints "$ENDPOINTS" "$@"; }
ready=""
for _ in $(seq 150); do
  if bench --clients 1 --conns 1 --warmup 0s --duration 30s --request-timeout 1s put --total 1 >/dev/null 2>&1; then
    ready=yes
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "the $SYSTEM cluster never took a write" >&2; exit 1; }

shape=(--clients "$CLIENTS" --conns "$CONNS" --key-size 8 --val-size 256)
bench "${shape[@]}" --warmup 1s --duration 1s "$WORKLOAD" >/dev/null
cpu_ticks() { for pid in "${PIDS[@]}"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done; }
before=($(cpu_ticks))
bench "${shape[@]}" --warmup 0s --duration "$DURATION" "$WORKLOAD" >"$WORK/out"
after=($(cpu_ticks))

ops=$(grep -o '"ops":[0-9]*' "$WORK/out" | cut -d: -f2)
echo "$SYSTEM $(grep -v '^{' "$WORK/out" | head -1)"
ticks_per_second=$(getconf CLK_TCK)
python3 - "$ops" "$ticks_per_second" "${before[@]}" "${after[@]}" <<'PY'
import sys
ops, hz = int(sys.argv[1]), int(sys.argv[2])
ticks = list(map(int, sys.argv[3:]))
before, after = ticks[:3], ticks[3:]
per_op = [(a - b) * 1e6 / hz / ops for a, b in zip(after, before)]
print("  member CPU per op (us):", " ".join(f"{x:.1f}" for x in per_op), f"sum {sum(per_op):.1f}")
PY
