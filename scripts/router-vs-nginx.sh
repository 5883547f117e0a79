#!/usr/bin/env bash
# gosd-router against nginx with the same two static upstreams, on
# loopback, in one run: requests/s and latency percentiles from wrk, and a
# direct call to one upstream as the floor.
#   scripts/router-vs-nginx.sh [SECONDS=10] [CONNECTIONS="32 256"]
#   ROUTER_BASELINE="/path/to/older/gosd-router …" scripts/router-vs-nginx.sh
# With ROUTER_BASELINE, those binaries run beside the fresh build, on the
# same upstreams in the same run: a before/after of a change.
# Needs redis-server, nginx, wrk, curl and python3
# (apt-get install -y redis-server nginx-light wrk curl python3).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32 256}
for tool in redis-server nginx wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y redis-server nginx-light wrk curl python3" >&2; exit 1; }
done
cargo build -q --release --example provider -p gosd
release=${CARGO_TARGET_DIR:-target}/release # where cargo put them
cargo build -q --release -p gosd-router
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -p "$dir" -c "$dir/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "nothing answers at $1" >&2; exit 1; }

redis=$(free_port); p1=$(free_port); p2=$(free_port); router=$(free_port); ngx=$(free_port)
redis-server --port "$redis" --save '' --appendonly no --dir "$dir" >/dev/null 2>&1 & pids+=($!)
export gosdRedisAddr=127.0.0.1:$redis RUST_LOG=warn
"$release"/examples/provider "127.0.0.1:$p1" 1 >/dev/null & pids+=($!)
"$release"/examples/provider "127.0.0.1:$p2" 2 >/dev/null & pids+=($!)
GOSD_ROUTER_ADDR=127.0.0.1:$router "$release"/gosd-router >/dev/null & pids+=($!)
baselines=()
for b in ${ROUTER_BASELINE:-}; do
  port=$(free_port); baselines+=("$b=$port")
  GOSD_ROUTER_ADDR=127.0.0.1:$port "$b" >/dev/null & pids+=($!)
done
mkdir -p "$dir/logs"
cat > "$dir/nginx.conf" <<NGINX
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream providers { server 127.0.0.1:$p1; server 127.0.0.1:$p2; keepalive 64; }
  server {
    listen 127.0.0.1:$ngx;
    location / {
      proxy_pass http://providers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
nginx -p "$dir" -c "$dir/nginx.conf"
wait_http "http://127.0.0.1:$p1/ping"; wait_http "http://127.0.0.1:$p2/ping"; wait_http "http://127.0.0.1:$ngx/ping"
# Otherwise wrk would measure the router's "no route" answers.
routes=0
for _ in $(seq 100); do
  routes=$(curl -s "http://127.0.0.1:$router/-/services" | grep -o '"url"' | wc -l || true)
  [ "$routes" -ge 2 ] && break
  sleep 0.1
done
[ "$routes" -ge 2 ] || { echo "gosd-router knows $routes of the 2 providers after 10 s" >&2; exit 1; }
for b in "${baselines[@]}"; do
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:${b##*=}/-/services" | grep -o '"url"' | wc -l | grep -qx 2 && break
    sleep 0.1
  done
done

run() { # name url threads connections
  local out
  out=$(wrk -t"$3" -c"$4" -d"${secs}s" --latency "$2")
  printf '| %-22s | %10s | %8s | %8s |\n' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")"
}
table() { # threads connections
  printf '| %-22s | %10s | %8s | %8s |\n' "target" "requests/s" "p50" "p99"
  printf '|%s|%s|%s|%s|\n' "------------------------" "------------" "----------" "----------"
  run "direct (one upstream)" "http://127.0.0.1:$p1/ping" "$1" "$2"
  run "nginx (2 upstreams)" "http://127.0.0.1:$ngx/ping" "$1" "$2"
  run "gosd-router" "http://127.0.0.1:$router/provider/ping" "$1" "$2"
  for b in "${baselines[@]}"; do
    local name=${b%=*}
    run "${name##*/}" "http://127.0.0.1:${b##*=}/provider/ping" "$1" "$2"
  done
}
for c in $conns; do
  echo "throughput: wrk -t2 -c$c -d${secs}s on loopback, $(nproc) cores shared by everything"
  table 2 "$c"
  echo
done
echo "added latency, unsaturated (one connection): wrk -t1 -c1 -d${secs}s"
table 1 1
