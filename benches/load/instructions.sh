#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: user-space work only (all
# threads, the log writer's included), but the same count on every run whatever else the machine
# is doing, so small changes can be compared.
#   bash benches/load/instructions.sh            every row (REQUESTS=1000 by default)
#   bash benches/load/instructions.sh --check    the guarded row only (CI): a valid token at warn,
#                                                as a ratio to pingora alone with the same peer
#                                                timeouts; fails more than 5 % above the ratio in
#                                                benches/load/instructions.baseline
# Rows: pingora alone (no filters; then with authgate's peer timeouts), authgate on a public path
# and with a valid token at log level warn, and with a valid token at the default info with the
# access log, JSON and pretty. Each on one thread, behind the same nginx upstream, REQUESTS
# keep-alive requests after 200 of warm-up.
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${REQUESTS:-1000}
check=${1:-}
bin=${CARGO_TARGET_DIR:-target}/release
baseline_file=benches/load/instructions.baseline
for tool in nginx valgrind curl bc; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light valgrind curl bc >/dev/null; break; }
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
nginx -c "$work/nginx.conf"
wait_up() { for _ in $(seq 3000); do curl -s -o /dev/null "$1" && return; sleep 0.2; done; echo "$1 never answered" >&2; exit 1; }
# A program under callgrind, its pid in pids[].
profile() { local name=$1; shift; valgrind --tool=callgrind --callgrind-out-file="$work/$name.%p" "$@" >"$work/$name.log" 2>&1 & pids+=($!); }
# authgate at a port and log settings; its pid in pids[].
gate() {
  local name=$1 port=$2 level=$3 format=$4
  cat > "$work/$name.yaml" <<CONF
listen: 127.0.0.1:$port
admin: {listen: 127.0.0.1:$((port + 1))}
demo_upstream: null
upstreams: {up: {addresses: ["127.0.0.1:18180"]}}
default_upstream: up
public_paths: [/public]
store: {data_dir: $work/$name-data}
log: {level: $level, format: $format}
threads: 1
CONF
  profile "$name" "$bin"/authgate run --config "$work/$name.yaml"
}
login() {
  curl -s --max-time 300 -X POST "http://127.0.0.1:$1/api/auth/login" \
    -d "user=$(printf admin | base64)&password=$(printf admin-demo | base64)&gwos-app-name=ir"
}
# Instructions per request of one row: warm up, zero the counters, send, dump, read the total.
count() {
  local pid=$1 url=$2 label=$3 token=${4:-none}
  curl -s -o /dev/null -H "GWOS-API-TOKEN: $token" -H "GWOS-APP-NAME: ir" "$url?[1-200]"
  callgrind_control -z "$pid" >/dev/null
  curl -s -o /dev/null -H "GWOS-API-TOKEN: $token" -H "GWOS-APP-NAME: ir" "$url?[1-$REQUESTS]"
  callgrind_control -d "$label" "$pid" >/dev/null
  sleep 1
  local file; file=$(ls -t "$work"/*."$pid".* | head -1)
  echo $(( $(awk '/^(summary|totals):/ {print $2; exit}' "$file") / REQUESTS ))
}

if [ "$check" = --check ]; then
  # The ratio to pingora alone on the same machine: a CPU with other instructions (SHA
  # extensions, another memcpy) moves both counts, not their ratio.
  profile bare-timeouts "$bin"/examples/bare_pingora 127.0.0.1:18186 127.0.0.1:18180 1 timeouts
  gate warn 18190 warn json
  wait_up http://127.0.0.1:18186/
  wait_up http://127.0.0.1:18190/public/
  floor=$(count "${pids[0]}" http://127.0.0.1:18186/api/x timeouts)
  valid=$(count "${pids[1]}" http://127.0.0.1:18190/api/x token "$(login 18190)")
  ratio=$(( valid * 1000 / floor ))
  baseline=$(grep -v '^#' "$baseline_file" | head -1)
  limit=$(( baseline * 105 / 100 ))
  echo "authgate, valid token, warn: $valid instructions/request, $ratio/1000 of pingora alone with its timeouts ($floor); baseline $baseline/1000, limit $limit/1000"
  if [ "$ratio" -gt "$limit" ]; then
    echo "more than 5 % above the baseline: find the cause, or raise $baseline_file on purpose" >&2
    exit 1
  fi
  exit 0
fi

profile bare "$bin"/examples/bare_pingora 127.0.0.1:18185 127.0.0.1:18180 1
profile bare-timeouts "$bin"/examples/bare_pingora 127.0.0.1:18186 127.0.0.1:18180 1 timeouts
gate warn 18190 warn json
gate json 18192 info json
gate pretty 18194 info pretty
for url in 18185/ 18186/ 18190/public/ 18192/public/ 18194/public/; do wait_up "http://127.0.0.1:$url"; done
bare=$(count "${pids[0]}" http://127.0.0.1:18185/api/x bare)
timeouts=$(count "${pids[1]}" http://127.0.0.1:18186/api/x timeouts)
public=$(count "${pids[2]}" http://127.0.0.1:18190/public/x public)
valid=$(count "${pids[2]}" http://127.0.0.1:18190/api/x token "$(login 18190)")
json=$(count "${pids[3]}" http://127.0.0.1:18192/api/x json "$(login 18192)")
pretty=$(count "${pids[4]}" http://127.0.0.1:18194/api/x pretty "$(login 18194)")
printf '\n| row | instructions/request | × pingora alone | × with its timeouts |\n|---|---:|---:|---:|\n'
for row in "pingora alone, no filters:$bare" "pingora alone with authgate's peer timeouts:$timeouts" \
    "authgate, public path, warn:$public" "authgate, valid token, warn:$valid" \
    "authgate, valid token, info with the access log, JSON:$json" \
    "authgate, valid token, info with the access log, pretty:$pretty"; do
  n=${row##*:}
  printf '| %s | %d | %.2f | %.2f |\n' "${row%:*}" "$n" "$(echo "$n / $bare" | bc -l)" "$(echo "$n / $timeouts" | bc -l)"
done
