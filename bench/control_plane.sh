#!/usr/bin/env bash
# Control-plane benchmark: what hearing keyspace events costs the subscribing thread on ferry's
# own pub/sub connection and on the redis crate's (redis::aio::PubSub), the one control-plane
# path that runs per write on the source. Prints CPU ns per event (median of ROUNDS) and the
# rate each heard. The README's "Why ferry speaks RESP itself" quotes it.
#
#   bench/control_plane.sh                 1,000,000 events, 3 rounds
#   EVENTS=200000 ROUNDS=5 bench/control_plane.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
ROUNDS=${ROUNDS:-3}
scripts/setup.sh >/dev/null
cargo build --release -p ferry-engine --example pubsub_cost 2>&1 | tail -1
. scripts/lib.sh

src=$(free_port)
start_redis "$src" source --notify-keyspace-events KA
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); Redis 7.0, the writer and the subscriber share it"
echo
target/release/examples/pubsub_cost "redis://127.0.0.1:$src" "$EVENTS" "$ROUNDS"
