#!/usr/bin/env bash
# Before and after a change, in one sitting: builds ferry at REV (default HEAD~1) and at the
# working tree, then runs both alternately on the same servers, so the machine's load swings
# hit both alike.
#   - snapshot: `replicate --verify none` of KEYS mixed keys (default 1,000,000), RUNS times each
#     (default 5): median seconds, CPU per key (user + system) and peak RSS;
#   - live: `ferry tail` following `ferry load` at RATE writes/s (default 100,000) for DURATION
#     (default 8), RUNS times each: lag p50/p99 and the tail's CPU per event;
#   - with valgrind installed: the instructions each build executes for a 200,000-key copy
#     (callgrind), which do not swing with the machine's load as times do.
#
#   bench/before_after.sh 34ddcf4
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
RUNS=${RUNS:-5}
KEYS=${KEYS:-1000000}
RATE=${RATE:-100000}
SECONDS_PER_RUN=${DURATION:-8}
scripts/setup.sh >/dev/null
[ -x /usr/bin/time ] || { apt-get install -y -qq time >/dev/null 2>&1 || sudo apt-get install -y -qq time; }
. scripts/lib.sh

# Both builds: the same profile and features as bench/snapshot.sh.
before_tree="$work/before"
git worktree add --detach -q "$before_tree" "$rev"
trap 'git worktree remove --force "$before_tree" 2>/dev/null || true; cleanup' EXIT
# The old build keeps its own target directory (under target/, reused by later runs).
(cd "$before_tree" && CARGO_TARGET_DIR="$OLDPWD/target/before" \
  cargo build -q --release -p ferry-cli --no-default-features)
cargo build -q --release -p ferry-cli --no-default-features
cp target/before/release/ferry "$work/ferry-before"
cp target/release/ferry "$work/ferry-after"
echo "before: $(git rev-parse --short "$rev"); after: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + working tree')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); servers, load and ferry share it"

cli=/usr/bin/redis-cli
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

src=$(free_port); dst=$(free_port)
start_redis "$src" source --notify-keyspace-events KA
start_redis "$dst" target
S="redis://127.0.0.1:$src"; T="redis://127.0.0.1:$dst"
"$work/ferry-after" seed --target "$S" --keys "$KEYS" >/dev/null
total=$($cli -p "$src" dbsize)

snapshot_run() { # BINARY NAME
  $cli -p "$dst" flushall >/dev/null
  local t0; t0=$(now)
  /usr/bin/time -f "%U %S %M" -o "$work/t.txt" "$1" replicate --source "$S" --target "$T" --verify none >/dev/null
  echo "$(now) - $t0" | bc >> "$work/$2.secs"
  cat "$work/t.txt" >> "$work/$2.usage"
  [ "$($cli -p "$dst" dbsize)" = "$total" ] || { echo "$2: copy incomplete" >&2; exit 1; }
}
for _ in $(seq "$RUNS"); do
  snapshot_run "$work/ferry-before" before
  snapshot_run "$work/ferry-after" after
done
echo
echo "snapshot, $total keys, $RUNS runs each (medians):"
echo "| build | seconds | CPU µs per key | peak RSS MB |"
echo "|---|---|---|---|"
for b in before after; do
  s=$(median < "$work/$b.secs")
  cpu=$(awk '{print $1+$2}' "$work/$b.usage" | median)
  rss=$(awk '{print $3}' "$work/$b.usage" | sort -g | tail -1)
  printf "| %s | %.2f | %.2f | %.1f |\n" "$b" "$s" "$(echo "$cpu * 1000000 / $total" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
done

live_run() { # BINARY NAME
  $cli -p "$src" flushall >/dev/null; $cli -p "$dst" flushall >/dev/null
  /usr/bin/time -f "%U %S %M" -o "$work/lt.txt" "$1" tail --source "$S" --target "$T" --idle-timeout 2 \
    --json "$work/tail.json" >/dev/null 2>"$work/tail.err" &
  local pid=$!
  for _ in $(seq 200); do grep -q "following" "$work/tail.err" && break; sleep 0.05; done
  "$work/ferry-after" load --target "$S" --rate "$RATE" --seconds "$SECONDS_PER_RUN" --keys 1000000 >/dev/null
  wait "$pid" || true
  python3 - "$work/tail.json" "$work/lt.txt" >> "$work/$2.live" <<'PY'
import json, sys
live = json.load(open(sys.argv[1]))["live"]
user, system, _ = open(sys.argv[2]).read().split()
print(live["lag_p50_ms"], live["lag_p99_ms"], (float(user) + float(system)) * 1e6 / max(live["events"], 1))
PY
}
for _ in $(seq "$RUNS"); do
  live_run "$work/ferry-before" before
  live_run "$work/ferry-after" after
done
echo
echo "live tail at $RATE writes/s for ${SECONDS_PER_RUN}s, $RUNS runs each (medians):"
echo "| build | lag p50 ms | lag p99 ms | CPU µs per event |"
echo "|---|---|---|---|"
for b in before after; do
  printf "| %s | %.1f | %.1f | %.2f |\n" "$b" "$(awk '{print $1}' "$work/$b.live" | median)" \
    "$(awk '{print $2}' "$work/$b.live" | median)" "$(awk '{print $3}' "$work/$b.live" | median)"
done

if command -v valgrind >/dev/null; then
  $cli -p "$src" flushall >/dev/null
  "$work/ferry-after" seed --target "$S" --keys 200000 >/dev/null
  echo
  echo "instructions for a 200,000-key copy (callgrind, user space):"
  for b in before after; do
    $cli -p "$dst" flushall >/dev/null
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$work/ferry-$b" replicate \
      --source "$S" --target "$T" --verify none >/dev/null 2>"$work/cg.txt"
    printf "%s: %'d\n" "$b" "$(grep -o 'Collected : [0-9]*' "$work/cg.txt" | awk '{print $3}')"
  done
fi
