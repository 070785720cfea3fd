#!/usr/bin/env bash
# The connection and login attacks of issue 13 against a release build, on 127.0.0.0/8 only, each
# bounded in time (about 4 minutes in all). One command:
#   bash benches/load/attacks.sh                 all attacks
#   bash benches/load/attacks.sh idle login      some of them
# Attacks: idle (20,000 idle keep-alive connections from 100 addresses, at the default limits),
# idle-admitted (17,000 with max_connections raised so that all are admitted: memory per
# connection; 17,000 because this machine's hard limit is 20,000 descriptors a process), idle-one (20,000 from one address), slowloris (2,000 connections trickling headers
# at 1 byte/s), login (100 connections of wrong-password logins from one address while another
# logs in once a second; login-memory: the same with tokens in memory). Each starts a fresh gateway with the built-in demo users and upstream,
# and prints one JSON object of figures (benches/load/attacks.py says what each one means).
set -euo pipefail
cd "$(dirname "$0")/../.."
attacks=("$@")
[ ${#attacks[@]} -gt 0 ] || attacks=(idle idle-admitted idle-one slowloris login login-memory)

# Both the gateway and the attackers hold tens of thousands of sockets.
(ulimit -Hn 1048576 2>/dev/null) && ulimit -Hn 1048576
ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin authgate
work=$(mktemp -d /tmp/authgate-attacks-XXXX)
gateway=
cleanup() { [ -n "$gateway" ] && kill "$gateway" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=18390 admin=18391 demo=18392
start_gateway() { # extra YAML for limits:
  rm -rf "$work/data"
  cat > "$work/authgate.yaml" <<CONF
listen: 127.0.0.1:$port
admin: {listen: 127.0.0.1:$admin}
demo_upstream: 127.0.0.1:$demo
upstreams: {demo: {addresses: ["127.0.0.1:$demo"]}}
default_upstream: demo
public_paths: [/public]
store: {${STORE:-kind: redb}, data_dir: $work/data}
log: {format: json, level: "warn,authgate::access=off"}
$1
CONF
  ./target/release/authgate run --config "$work/authgate.yaml" >"$work/gateway.log" 2>&1 &
  gateway=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "gateway did not start:"; cat "$work/gateway.log"; exit 1
}
stop_gateway() { kill "$gateway"; wait "$gateway" 2>/dev/null || true; gateway=; }
run() { python3 benches/load/attacks.py "$@" --port $port --admin-port $admin --pid "$gateway"; }

for attack in "${attacks[@]}"; do
  echo "== $attack"
  case "$attack" in
    idle) start_gateway ""; run idle --connections 20000 --addresses 100 ;;
    # As many as one process may hold here: the machine's hard limit is 20,000 descriptors.
    idle-admitted) start_gateway "limits: {max_connections: 17000}"
      run idle --connections 17000 --addresses 100 ;;
    idle-one) start_gateway ""; run idle --connections 20000 --addresses 1 ;;
    slowloris) start_gateway ""; run slowloris --connections 2000 --addresses 10 ;;
    login) start_gateway ""; run login --seconds 30 ;;
    # The same with tokens in memory: no fsync per login, whose latency on a shared disk is
    # most of a login's variance, so that what remains is what the flood costs.
    login-memory) STORE="kind: memory" start_gateway ""; run login --seconds 30 ;;
    *) echo "unknown attack $attack"; exit 2 ;;
  esac
  grep -c '"authgate::flood"' "$work/gateway.log" | sed 's/^/flood summary lines: /'
  grep -v -e '"authgate::flood"' -e '"level":"INFO"' "$work/gateway.log" | head -5 || true
  stop_gateway
done
