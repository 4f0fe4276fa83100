#!/usr/bin/env bash
# Side-by-side benchmark of a 3-member etcd and a 3-node chorus on this machine's loopback.
#
# Both run with their default durability (fsync before acknowledging; nothing here turns it
# off). The same load generator (`chorus bench`) drives both through the etcd v3 API. The
# machine is shared and noisy, so the systems alternate A B A B for ROUNDS rounds (each round a
# fresh cluster of each), and the table quotes medians over the rounds.
#
#   bench/compare-etcd.sh                      # the whole matrix, 3 rounds, 10 s per run
#   ROUNDS=1 DURATION=3s LOAD_KEYS=20000 bench/compare-etcd.sh   # a quick smoke run
#
# Environment: ROUNDS (3; 0 runs the footprint phase alone), DURATION (10s), WARMUP (2s),
# LOAD_KEYS (1000000; 0 skips the memory and disk phase), OUT (bench/results/<time>), ONLY (a
# regex of matrix entries to run), SETTLE (3: seconds between removing a cluster's data and the
# next start).
# Installs Debian's etcd-server when `etcd` is missing (needs root and the package registry).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
SETTLE=${SETTLE:-3}
LOAD_KEYS=${LOAD_KEYS:-1000000}
ONLY=${ONLY:-.}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
WORK=$(mktemp -d /tmp/chorus-compare.XXXXXX)
trap 'stop_cluster; rm -rf "$WORK"' EXIT

if ! command -v etcd >/dev/null; then
  echo "installing etcd-server (Debian) ..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
echo "building chorus (release) ..."
(cd "$ROOT" && cargo build --release -q -p chorus-cli)
CHORUS=$ROOT/target/release/chorus

# name=client_port:peer_port for the three members of each system.
ETCD_PORTS=(22379 22381 22383)
CHORUS_PORTS=(23379 23381 23383)
PIDS=()

start_etcd() {
  local cluster="" i
  for i in 0 1 2; do cluster+="e$i=http://127.0.0.1:$((ETCD_PORTS[i] + 1)),"; done
  for i in 0 1 2; do
    local c=${ETCD_PORTS[i]} p=$((ETCD_PORTS[i] + 1))
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new \
      --initial-cluster-token chorus-compare --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) \
      >"$WORK/etcd-e$i.log" 2>&1 &
    PIDS+=($!)
  done
  ENDPOINTS=127.0.0.1:${ETCD_PORTS[0]},127.0.0.1:${ETCD_PORTS[1]},127.0.0.1:${ETCD_PORTS[2]}
  DATA=$WORK/etcd
}

start_chorus() {
  local cluster="" i
  for i in 0 1 2; do cluster+="c$i=http://127.0.0.1:$((CHORUS_PORTS[i] + 1)),"; done
  for i in 0 1 2; do
    local c=${CHORUS_PORTS[i]} p=$((CHORUS_PORTS[i] + 1))
    "$CHORUS" server --name "c$i" --data-dir "$WORK/chorus/c$i" \
      --listen-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "${cluster%,}" >"$WORK/chorus-c$i.log" 2>&1 &
    PIDS+=($!)
  done
  ENDPOINTS=127.0.0.1:${CHORUS_PORTS[0]},127.0.0.1:${CHORUS_PORTS[1]},127.0.0.1:${CHORUS_PORTS[2]}
  DATA=$WORK/chorus
}

stop_cluster() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

start() {
  rm -rf "$WORK/etcd" "$WORK/chorus"
  # The last cluster's deleted files are still being written back and discarded (this disk is
  # mounted with `discard`): let that finish, so neither system starts in the other's wake.
  sync
  sleep "$SETTLE"
  "start_$1"
  local tries
  for tries in $(seq 1 100); do
    if "$CHORUS" bench --endpoints "$ENDPOINTS" --clients 1 --conns 1 --warmup 0s \
      --duration 30s --request-timeout 1s put --total 1 >/dev/null 2>&1; then
      return
    fi
    sleep 0.2
  done
  echo "$1 did not start; logs in $WORK" >&2
  exit 1
}

# One matrix entry: a name, then `chorus bench` arguments.
run() {
  local system=$1 round=$2 name=$3
  shift 3
  [[ $name =~ $ONLY ]] || return 0
  local line
  line=$("$CHORUS" bench --endpoints "$ENDPOINTS" --label "$system" --duration "$DURATION" \
    --warmup "$WARMUP" --key-size 8 --val-size 256 "$@" | tail -n 1)
  echo "$line" | python3 -c '
import json, sys
r = json.load(sys.stdin)
r["entry"], r["round"] = sys.argv[1], int(sys.argv[2])
print(json.dumps(r))' "$name" "$round" >>"$RESULTS"
  echo "$line" | python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency_ms"]
print("  [%s round %s] %s: %.0f ops/s, p50 %.2f ms, p99 %.2f ms, %d errors"
      % (r["label"], sys.argv[2], sys.argv[1], r["ops_per_sec"], l["p50"], l["p99"], r["errors"]))' "$name" "$round"
}

matrix() {
  local system=$1 round=$2
  run "$system" "$round" put-1 --clients 1 --conns 1 put
  run "$system" "$round" put-16 --clients 16 --conns 4 put
  run "$system" "$round" put-64 --clients 64 --conns 8 put
  run "$system" "$round" put-256 --clients 256 --conns 16 put
  run "$system" "$round" range-linearizable-64 --clients 64 --conns 8 range --consistency l
  run "$system" "$round" range-serializable-64 --clients 64 --conns 8 range --consistency s
  run "$system" "$round" txn-16-hot4 --clients 16 --conns 4 txn --hot-keys 4
  run "$system" "$round" watch-1000 --conns 4 watch --watchers 1000 --streams 10 --putters 1
}

# Resident memory (KiB, summed over the members) and on-disk size after LOAD_KEYS keys.
footprint() {
  local system=$1
  start "$system"
  "$CHORUS" bench --endpoints "$ENDPOINTS" --label "$system" --clients 64 --conns 8 \
    --warmup 0s --duration 24h --key-space "$LOAD_KEYS" put --sequential --total "$LOAD_KEYS" \
    | tail -n 1 >"$OUT/load-$system.json"
  sleep 5
  local rss=0 pid
  for pid in "${PIDS[@]}"; do
    rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status")))
  done
  local disk
  disk=$(du -sk "$DATA" | cut -f1)
  echo "{\"system\":\"$system\",\"keys\":$LOAD_KEYS,\"rss_kib_per_member\":$((rss / 3)),\"disk_kib_per_member\":$((disk / 3))}" \
    | tee -a "$OUT/footprint.jsonl"
  stop_cluster
}

echo "results in $OUT"
for round in $(seq 1 "$ROUNDS"); do
  for system in etcd chorus; do
    echo "round $round: $system"
    start "$system"
    matrix "$system" "$round"
    stop_cluster
  done
done
if [[ $LOAD_KEYS -gt 0 ]]; then
  footprint etcd
  footprint chorus
fi

python3 - "$RESULTS" "$OUT/footprint.jsonl" <<'PY' | tee "$OUT/table.md"
import json, os, statistics, sys
# ROUNDS=0 runs the footprint phase alone: no matrix results.
rows = [json.loads(line) for line in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
entries = list(dict.fromkeys(r["entry"] for r in rows))
def med(system, entry, get):
    values = [get(r) for r in rows if r["label"] == system and r["entry"] == entry]
    return statistics.median(values) if values else float("nan")
print("| entry | etcd ops/s | chorus ops/s | ratio | etcd p99 ms | chorus p99 ms |")
print("|---|---|---|---|---|---|")
for e in entries:
    eo, co = med("etcd", e, lambda r: r["ops_per_sec"]), med("chorus", e, lambda r: r["ops_per_sec"])
    ep, cp = med("etcd", e, lambda r: r["latency_ms"]["p99"]), med("chorus", e, lambda r: r["latency_ms"]["p99"])
    ratio = co / eo if eo else float("nan")
    print(f"| {e} | {eo:.0f} | {co:.0f} | {ratio:.2f} | {ep:.2f} | {cp:.2f} |")
try:
    fp = {r["system"]: r for r in map(json.loads, open(sys.argv[2]))}
    e, c = fp["etcd"], fp["chorus"]
    print()
    print(f"| after {e['keys']} keys | etcd | chorus | ratio |")
    print("|---|---|---|---|")
    for k, label in (("rss_kib_per_member", "resident MiB per member"), ("disk_kib_per_member", "disk MiB per member")):
        print(f"| {label} | {e[k]/1024:.0f} | {c[k]/1024:.0f} | {c[k]/e[k]:.2f} |")
except (FileNotFoundError, KeyError):
    pass
PY
