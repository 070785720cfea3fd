#!/usr/bin/env bash
# No Docker engine runs in CI, so the image is checked this way: build the release binary
# exactly as the Dockerfile's build stage does, then run it as the image runs it, with
# deploy/container/authgate.yaml (AUTHGATE_CONFIG), its ports (0.0.0.0:8080 and :9091, in a
# network namespace of its own so nothing else on the machine can hold them), a users file
# mounted where the config says, a secret from a file, and environment overrides.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked
bin=$PWD/target/release/authgate
config=$PWD/deploy/container/authgate.yaml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'admin-smoke-pw' | "$bin" hash-password > "$work/hash"
cat > "$work/users.yaml" <<USERS
users:
  smoke:
    password_hash: "$(cat "$work/hash")"
    role: admin
USERS
printf '%s\n' "$work/users.yaml" > "$work/users-path"

export BIN=$bin AUTHGATE_CONFIG=$config WORK=$work
# The mounts the config names, moved to the work directory by the environment; the users file's
# path itself from a file (`__FILE`), as a Kubernetes secret would give it.
export AUTHGATE_USERS_FILE__FILE=$work/users-path
export AUTHGATE_STORE__DATA_DIR=$work/data

unshare --user --map-root-user --net bash -euo pipefail -c '
ip link set lo up
python3 -m http.server --bind 127.0.0.1 8081 --directory "$WORK" >/dev/null 2>&1 &
upstream=$!
gateway=
# Nothing outlives the check, whatever fails.
trap '\''kill $upstream $gateway 2>/dev/null || true'\'' EXIT

"$BIN" check-config
"$BIN" run > "$WORK/log" 2>&1 &
gateway=$!
for _ in $(seq 100); do "$BIN" healthcheck >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN" healthcheck

# Reachable on every interface, as `docker run -p` needs: the namespace has only loopback, so
# the address 0.0.0.0 is checked in the socket table.
grep -q "00000000:1F90 00000000:0000 0A" /proc/net/tcp || { echo "not on 0.0.0.0:8080"; exit 1; }

user=$(printf smoke | base64); pass=$(printf admin-smoke-pw | base64)
token=$(python3 - "$user" "$pass" <<PY
import sys, urllib.request, urllib.parse
body = urllib.parse.urlencode({"user": sys.argv[1], "password": sys.argv[2], "gwos-app-name": "smoke"}).encode()
print(urllib.request.urlopen("http://127.0.0.1:8080/api/auth/login", body).read().decode())
PY
)
python3 - "$token" <<PY
import sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:8080/users.yaml",
    headers={"GWOS-API-TOKEN": sys.argv[1], "GWOS-APP-NAME": "smoke"})
assert urllib.request.urlopen(req).status == 200
PY

kill -TERM "$gateway"
sleep 0.5
if "$BIN" healthcheck 2>/dev/null; then echo "still ready after SIGTERM"; exit 1; fi
wait "$gateway"
kill "$upstream"

# Machine-readable logs: every line is a JSON object, and none holds the password or token.
python3 - "$WORK/log" "$token" <<PY
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no log"
for line in lines:
    json.loads(line)
    assert sys.argv[2] not in line and "admin-smoke-pw" not in line, line
PY

# No demo users in the image: without its users file, no start.
if env -u AUTHGATE_USERS_FILE__FILE AUTHGATE_USERS_FILE="$WORK/absent.yaml" "$BIN" run > "$WORK/log2" 2>&1; then
  echo "started without a users file"; exit 1
fi
grep -q "users_file" "$WORK/log2" || { cat "$WORK/log2"; exit 1; }
'
echo "container smoke: OK"
