#!/usr/bin/env bash
# Cutover benchmark (issue 12): how long the fence holds writes on the 1M-key set while a
# writer keeps writing. A live run copies KEYS mixed keys and catches up; `ferry load` writes
# RATE SETs/s to random keys throughout; then SIGUSR1 asks for the cutover (full verify while
# writing, fence, drain, fenced check of the touched keys) and, the moment ferry says the target
# is ready, a second SIGUSR1 releases it. Prints the fence time and what the check covered.
#
#   bench/cutover.sh                 1,000,000 keys, 10,000 writes/s
#   KEYS=200000 RATE=20000 bench/cutover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
RATE=${RATE:-10000}
scripts/setup.sh >/dev/null
cargo build --release -p ferry-cli --no-default-features 2>&1 | tail -1
ferry=$PWD/target/release/ferry
. scripts/lib.sh

src=$(free_port); dst=$(free_port)
start_redis "$src" source --notify-keyspace-events KA
start_redis "$dst" target
S="redis://127.0.0.1:$src"; T="redis://127.0.0.1:$dst"
$ferry seed --target "$S" --keys "$KEYS" >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $KEYS keys, $RATE writes/s; source, target, writer and ferry share it"

"$ferry" replicate --mode live --source "$S" --target "$T" --fence-secs 30 --watch-secs 3 \
  --json "$work/report.json" >/dev/null 2>"$work/live.err" &
live=$!
until grep -q "target caught up" "$work/live.err"; do sleep 0.1; done
"$ferry" load --target "$S" --rate "$RATE" --seconds 600 --keys "$KEYS" >/dev/null &
load=$!
sleep 3
kill -USR1 "$live"
until grep -q "Switch the application" "$work/live.err"; do sleep 0.01; done
kill -USR1 "$live"
wait "$live" || { cat "$work/live.err" >&2; exit 1; }
kill "$load" 2>/dev/null || true
python3 - "$work/report.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cutover"]
print(f"fence ({c['fence']}): writes held {c['fence_ms']} ms; fenced check of {c['checked_keys']:,} touched keys: "
      f"ok {c['check']['ok']:,}, differences {sum(v for k, v in c['check'].items() if k not in ('ok', 'skipped'))}; "
      f"verify before the fence: ok {c['verify_before']['ok']:,}; stragglers {c['stragglers']}")
PY
grep "cutover:" "$work/live.err"
