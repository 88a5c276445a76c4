#!/usr/bin/env bash
# Live-tail benchmark: `ferry tail` follows a steady SET load (ferry load, random keys out of
# 1,000,000) at increasing rates; for each rate it reports the rate achieved, the tail's lag
# (first event of a key -> written on the target) p50/p99, and the convergence time after the
# writes stop (until the load's final marker key is on the target), then checks the target
# with a full compare. Also the replay set's memory per million remembered keys.
#
#   bench/live.sh                    rates 25000 50000 100000, 10 s each
#   RATES="50000" SECONDS_PER_RATE=20 bench/live.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"25000 50000 100000"}
DURATION=${SECONDS_PER_RATE:-10}
scripts/setup.sh >/dev/null
cargo build --release -p ferry-cli -p ferry-engine --examples 2>&1 | tail -1
ferry=$PWD/target/release/ferry
cli=/usr/bin/redis-cli
. scripts/lib.sh

now_ms() { date +%s%3N; }
src=$(free_port); dst=$(free_port)
start_redis "$src" source --notify-keyspace-events KA
start_redis "$dst" target
S="redis://127.0.0.1:$src"; T="redis://127.0.0.1:$dst"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); source, target, load generator and ferry share it"
echo
echo "| target writes/s | achieved writes/s | events/s | lag p50 ms | lag p99 ms | converged after stop (s) | compare |"
echo "|---|---|---|---|---|---|---|"
for rate in $RATES; do
  $cli -p "$src" flushall >/dev/null; $cli -p "$dst" flushall >/dev/null
  "$ferry" tail --source "$S" --target "$T" --idle-timeout 2 --json "$work/tail.json" >/dev/null 2>"$work/tail.err" &
  tail_pid=$!
  for _ in $(seq 200); do grep -q "following" "$work/tail.err" && break; sleep 0.05; done
  load=$("$ferry" load --target "$S" --rate "$rate" --seconds "$DURATION" --keys 1000000)
  stopped=$(now_ms)
  until [ "$($cli -p "$dst" exists ferry:bench:done)" = "1" ]; do sleep 0.01; done
  converged=$(( $(now_ms) - stopped ))
  wait "$tail_pid" || true
  verdict=$("$ferry" replicate --mode compare --source "$S" --target "$T" | grep -o 'outcome: [a-z]*' | cut -d' ' -f2)
  python3 - "$rate" "$load" "$work/tail.json" "$converged" "$verdict" <<'PY'
import json, sys
rate, load, tail, converged, verdict = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3]))["live"], int(sys.argv[4]), sys.argv[5]
achieved = load["writes"] / load["seconds"]
print(f"| {int(rate):,} | {achieved:,.0f} | {tail['events'] / load['seconds']:,.0f} | {tail['lag_p50_ms']:.1f} | {tail['lag_p99_ms']:.1f} | {converged / 1000:.2f} | {verdict} |")
PY
done
echo
echo "replay set memory (1,000,000 remembered 24-byte keys):"
target/release/examples/replay_set_memory 1000000
