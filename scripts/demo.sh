#!/usr/bin/env bash
# The demo: sets everything up, builds ferry, starts two local Redis servers, loads the
# embedded sample dataset into the first, migrates it to the second with a full verify,
# and prints the report. DEMO_KEYS sets the dataset size (default 100000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
cargo build --release -p ferry-cli --no-default-features  # the local engine only: no AWS SDKs to compile
ferry=target/release/ferry
. scripts/lib.sh

src=$(free_port); start_redis "$src" source
dst=$(free_port); start_redis "$dst" target
echo "== source redis://127.0.0.1:$src, target redis://127.0.0.1:$dst"
echo "== loading the sample dataset (${DEMO_KEYS:-100000} mixed keys, streams with consumer groups)"
$ferry seed --target "redis://127.0.0.1:$src" --keys "${DEMO_KEYS:-100000}" --streams 10
echo "== ferry replicate --mode snapshot"
$ferry replicate --source "redis://127.0.0.1:$src" --target "redis://127.0.0.1:$dst" --json "$work/report.json"
echo "== JSON report (excerpt)"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({k:r[k] for k in ('outcome','exit_code','copy') if k in r} | {'verify_total': r['verify']['total']}, indent=2))" "$work/report.json"
