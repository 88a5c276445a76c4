#!/usr/bin/env bash
# Snapshot benchmark: ferry against a REPLICAOF full sync and a pipelined SCAN+DUMP+RESTORE
# copier (bench/baseline_copy.py, 4 processes), measured in the same run on the same machine,
# medians of RUNS runs. Also ferry's CPU time per key and peak RSS (GNU time).
#
#   bench/snapshot.sh            1,000,000 mixed keys (70% strings ~100 B, 10% hashes, 10% lists,
#                                5% sets, 5% zsets of 10 elements; 20% with a TTL)
#   bench/snapshot.sh big        1,000 hashes of 10,000 fields
#   RUNS=5 KEYS=200000 bench/snapshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-mixed}
RUNS=${RUNS:-3}
KEYS=${KEYS:-1000000}
scripts/setup.sh >/dev/null
python3 -c "import redis" 2>/dev/null || python3 -m pip install -q redis
[ -x /usr/bin/time ] || { apt-get install -y -qq time >/dev/null 2>&1 || sudo apt-get install -y -qq time; }
cargo build --release -p ferry-cli --no-default-features 2>&1 | tail -1
ferry=$PWD/target/release/ferry
cli=/usr/bin/redis-cli
. scripts/lib.sh

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

src=$(free_port); dst=$(free_port)
start_redis "$src" source --repl-diskless-sync yes --repl-diskless-sync-delay 0
start_redis "$dst" target
case "$variant" in
  mixed) $ferry seed --target "redis://127.0.0.1:$src" --keys "$KEYS" >/dev/null ;;
  big) $ferry seed --target "redis://127.0.0.1:$src" --keys 0 --ttl-percent 0 --big-hashes 1000 --big-hash-fields 10000 >/dev/null ;;
  *) echo "usage: $0 [mixed|big]" >&2; exit 2 ;;
esac
total=$($cli -p "$src" dbsize)
mem=$($cli -p "$src" info memory | tr -d '\r' | awk -F: '/^used_memory_human/ {print $2}')
echo "dataset: $variant, $total keys, $mem on the source; machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

reset_target() { $cli -p "$dst" replicaof no one >/dev/null; $cli -p "$dst" flushall >/dev/null; }
check_copied() { local n; n=$($cli -p "$dst" dbsize); [ "$n" = "$total" ] || { echo "copy incomplete: $n of $total keys" >&2; exit 1; }; }

replicaof_run() {
  reset_target
  local t0; t0=$(now)
  $cli -p "$dst" replicaof 127.0.0.1 "$src" >/dev/null
  until $cli -p "$dst" info replication | tr -d '\r' | grep -q '^master_link_status:up'; do sleep 0.01; done
  until $cli -p "$dst" info replication | tr -d '\r' | grep -q '^master_sync_in_progress:0'; do sleep 0.01; done
  echo "$(now) - $t0" | bc
  check_copied
}
python_run() {
  reset_target
  local t0; t0=$(now)
  python3 bench/baseline_copy.py "$src" "$dst" 4
  echo "$(now) - $t0" | bc
  check_copied
}
ferry_run() {
  reset_target
  local t0; t0=$(now)
  /usr/bin/time -f "%U %S %M" -o "$work/time.txt" "$ferry" replicate --source "redis://127.0.0.1:$src" \
    --target "redis://127.0.0.1:$dst" --verify none >/dev/null
  echo "$(now) - $t0" | bc
  cat "$work/time.txt" >> "$work/ferry_usage.txt"
  check_copied
}

: > "$work/ferry_usage.txt"
for name in replicaof python ferry; do
  for _ in $(seq "$RUNS"); do "${name}_run"; done > "$work/$name.txt"
done
r=$(median < "$work/replicaof.txt"); p=$(median < "$work/python.txt"); f=$(median < "$work/ferry.txt")
cpu=$(awk '{print $1+$2}' "$work/ferry_usage.txt" | median)
rss=$(awk '{print $3}' "$work/ferry_usage.txt" | sort -g | tail -1)
row() { printf "| %-44s | %8.2f | %9.0f |\n" "$1" "$2" "$(echo "$total / $2" | bc -l)"; }
echo
echo "| method ($RUNS runs, median)                       |  seconds |    keys/s |"
echo "|----------------------------------------------|----------|-----------|"
row "REPLICAOF full sync (diskless, delay 0)" "$r"
row "pipelined Python SCAN+DUMP+RESTORE, 4 procs" "$p"
row "ferry replicate --verify none" "$f"
echo
printf "ferry / REPLICAOF: %.2fx   Python baseline / ferry: %.2fx\n" "$(echo "$f / $r" | bc -l)" "$(echo "$p / $f" | bc -l)"
printf "ferry CPU: %.2f s (%.2f us per key), peak RSS %.1f MB\n" "$cpu" "$(echo "$cpu * 1000000 / $total" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
echo
echo "== verify of the last ferry copy"
"$ferry" replicate --mode compare --source "redis://127.0.0.1:$src" --target "redis://127.0.0.1:$dst" | tail -2
