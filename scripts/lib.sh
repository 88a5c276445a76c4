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

# start_redis PORT NAME [redis-server args...]: starts Debian's Redis 7.0 and waits until it answers.
start_redis() {
  local port=$1 name=$2
  shift 2
  /usr/bin/redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$work" \
    --dbfilename "$name.rdb" --logfile "$work/$name.log" "$@" &
  pids+=($!)
  for _ in $(seq 200); do /usr/bin/redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server $name on port $port did not start" >&2
  exit 1
}
