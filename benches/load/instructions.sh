#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: user-space work only, but the
# same count on every run whatever else the machine is doing, so small changes can be compared.
#   bash benches/load/instructions.sh        (REQUESTS=1000 by default)
# Rows: pingora alone (no filters), authgate on a public path, authgate with a valid token; all on
# one thread, behind the same nginx upstream, 1000 keep-alive requests after 200 of warm-up.
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${REQUESTS:-1000}
for tool in nginx valgrind curl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light valgrind curl >/dev/null; break; }
done
cargo build --release --quiet --bin authgate --example bare_pingora
work=$(mktemp -d /tmp/authgate-ir-XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "profiles kept in $work" || rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/nginx.conf" <<CONF
worker_processes 1; pid $work/nginx.pid; error_log $work/nginx-error.log; daemon on;
events {}
http { access_log off; server { listen 127.0.0.1:18180; location / { return 200 "ok\n"; } } }
CONF
cat > "$work/authgate.yaml" <<CONF
listen: 127.0.0.1:18190
admin: {listen: 127.0.0.1:18191}
demo_upstream: null
upstreams: {up: {addresses: ["127.0.0.1:18180"]}}
default_upstream: up
public_paths: [/public]
store: {data_dir: $work/data}
log: {level: warn}
threads: 1
CONF
nginx -c "$work/nginx.conf"
valgrind --tool=callgrind --callgrind-out-file="$work/bare.%p" target/release/examples/bare_pingora \
  127.0.0.1:18185 127.0.0.1:18180 1 >"$work/bare.log" 2>&1 &
pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/gate.%p" target/release/authgate run \
  --config "$work/authgate.yaml" >"$work/gate.log" 2>&1 &
pids+=($!)
wait_up() { for _ in $(seq 600); do curl -s -o /dev/null "$1" && return; sleep 0.2; done; echo "$1 never answered" >&2; exit 1; }
wait_up http://127.0.0.1:18185/
wait_up http://127.0.0.1:18190/public/
token=$(curl -s --max-time 300 -X POST http://127.0.0.1:18190/api/auth/login \
  -d "user=$(printf admin | base64)&password=$(printf admin-demo | base64)&gwos-app-name=ir")
# Instructions per request of one row: warm up, zero the counters, send, dump, read the total.
count() {
  local pid=$1 url=$2 label=$3
  curl -s -o /dev/null -H "GWOS-API-TOKEN: $token" -H "GWOS-APP-NAME: ir" "$url?[1-200]"
  callgrind_control -z "$pid" >/dev/null
  curl -s -o /dev/null -H "GWOS-API-TOKEN: $token" -H "GWOS-APP-NAME: ir" "$url?[1-$REQUESTS]"
  callgrind_control -d "$label" "$pid" >/dev/null
  sleep 1
  local file; file=$(ls -t "$work"/*."$pid".* | head -1)
  awk '/^(summary|totals):/ {print $2; exit}' "$file"
}
bare=$(count "${pids[0]}" http://127.0.0.1:18185/api/x bare)
public=$(count "${pids[1]}" http://127.0.0.1:18190/public/x public)
valid=$(count "${pids[1]}" http://127.0.0.1:18190/api/x token)
printf '\n| row | instructions/request | / pingora alone |\n|---|---|---|\n'
for row in "pingora alone, no filters:$bare" "authgate, public path:$public" "authgate, valid token:$valid"; do
  printf '| %s | %d | %.2f |\n' "${row%%:*}" $(( ${row##*:} / REQUESTS )) "$(echo "${row##*:} / $bare" | bc -l)"
done
