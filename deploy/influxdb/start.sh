#!/usr/bin/env bash
# Start a throwaway InfluxDB server on a free loopback port, set it up, and write an env file for tests.
#
# Usage:  deploy/influxdb/start.sh [--fresh] [RUN_DIR]
#   RUN_DIR  defaults to $WATTLINE_INFLUX_RUN_DIR, else ${TMPDIR:-/tmp}/wattline-influxdb-<uid>.
#   --fresh  wipe RUN_DIR (data of an earlier server) first.
# Behaviour:
#   * a live server in RUN_DIR is reused (exit 0, env file unchanged);
#   * a stopped server's data in RUN_DIR is restarted with the same data (and the same port when still free);
#     this is what the fault test uses to stop influxd for 30 s and bring it back;
#   * otherwise a new server is started on an empty data dir and set up with org, bucket and a random token.
# Output: RUN_DIR/influx.env (0600) with WATTLINE_INFLUX_URL, _ORG, _BUCKET, _TOKEN_FILE, ...; the token itself
# lives only in RUN_DIR/token (0600) and is never printed. The env file's path is printed on the last line
# (as WATTLINE_INFLUX_ENV_FILE=...), so `eval "$(deploy/influxdb/start.sh | tail -1)"` exports it.
set -euo pipefail
umask 077

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
run_dir_args fresh 16 WATTLINE_INFLUX_RUN_DIR wattline-influxdb "$@"
FRESH=$FLAG
ORG="${WATTLINE_INFLUX_ORG:-wattline}"
BUCKET="${WATTLINE_INFLUX_BUCKET:-wattline}"
PY="${PYTHON:-python3}"

log() { printf '[influxdb/start] %s\n' "$*" >&2; }
alive() { [[ -f "$RUN_DIR/influxd.pid" ]] && kill -0 "$(cat "$RUN_DIR/influxd.pid")" 2>/dev/null; }

if ((FRESH)) && [[ -d "$RUN_DIR" ]]; then
    "$HERE/stop.sh" "$RUN_DIR" --purge >&2 || true
fi
mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"

if alive; then
    log "already running (pid $(cat "$RUN_DIR/influxd.pid")) in $RUN_DIR"
    echo "WATTLINE_INFLUX_ENV_FILE=$RUN_DIR/influx.env"
    exit 0
fi

BIN="$("$HERE/install.sh" | tail -1)"
VERSION="$("$BIN" version 2>/dev/null | sed -n 's/^InfluxDB v\{0,1\}\([^ ]*\).*/\1/p' | head -1)"

# Port: reuse the previous one on restart so clients configured with the URL reconnect; otherwise ask the
# kernel for a free one (bind to port 0) -- never a fixed port, parallel runs must not collide.
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# SO_REUSEADDR like Go's listener: right after stop.sh the old port has TIME_WAIT connections, which influxd can bind
# through but a plain bind() cannot -- without it a restart would wrongly move to a new port and clients lose it.
port_free() { "$PY" -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
PORT=""
if [[ -f "$RUN_DIR/port" ]] && port_free "$(cat "$RUN_DIR/port")"; then PORT="$(cat "$RUN_DIR/port")"; fi
[[ -n "$PORT" ]] || PORT="$(free_port)"
echo "$PORT" >"$RUN_DIR/port"
URL="http://127.0.0.1:$PORT"

# influxd 2.x opens one listener (HTTP API). Every path it writes (bolt metadata, sqlite metadata, TSM engine)
# is pinned into RUN_DIR so nothing lands in ~/.influxdbv2 and parallel servers don't share files.
DATA="$RUN_DIR/data"
mkdir -p "$DATA"
log "starting influxd $VERSION on $URL (data $DATA, log $RUN_DIR/influxd.log)"
setsid nohup "$BIN" \
    --http-bind-address "127.0.0.1:$PORT" \
    --bolt-path "$DATA/influxd.bolt" \
    --sqlite-path "$DATA/influxd.sqlite" \
    --engine-path "$DATA/engine" \
    --reporting-disabled \
    --ui-disabled \
    --log-level info \
    >>"$RUN_DIR/influxd.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$RUN_DIR/influxd.pid"

# Wait for /health (first start of an empty data dir takes a few seconds for migrations).
"$PY" - "$URL" "$PID" <<'EOF' || { log "influxd did not become healthy; last log lines:"; tail -20 "$RUN_DIR/influxd.log" >&2; "$HERE/stop.sh" "$RUN_DIR" >&2 || true; exit 1; }
import json, os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("influxd exited during start-up")
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            if json.load(r).get("status") == "pass":
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.25)
sys.exit("timeout waiting for /health")
EOF

# Setup once per data dir (a restart of the same data keeps org, bucket and token).
if [[ ! -s "$RUN_DIR/token" ]]; then
    # Random operator token and admin password, created with umask 077 (files 0600), never printed.
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$RUN_DIR/token"
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$RUN_DIR/password"
fi
chmod 600 "$RUN_DIR/token" "$RUN_DIR/password"
"$PY" - "$URL" "$ORG" "$BUCKET" "$RUN_DIR/token" "$RUN_DIR/password" <<'EOF'
import json, sys, urllib.request
url, org, bucket, token_file, password_file = sys.argv[1:]
with urllib.request.urlopen(url + "/api/v2/setup", timeout=10) as r:
    allowed = json.load(r).get("allowed")
if allowed:
    body = {
        "username": "wattline-admin",
        "password": open(password_file).read().strip(),
        "org": org,
        "bucket": bucket,
        "token": open(token_file).read().strip(),
        "retentionPeriodSeconds": 0,
    }
    req = urllib.request.Request(url + "/api/v2/setup", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except urllib.error.HTTPError as e:  # the body names the problem, never the token
        sys.exit(f"setup failed: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}")
EOF

cat >"$RUN_DIR/influx.env" <<EOF
WATTLINE_INFLUX_URL=$URL
WATTLINE_INFLUX_ORG=$ORG
WATTLINE_INFLUX_BUCKET=$BUCKET
WATTLINE_INFLUX_TOKEN_FILE=$RUN_DIR/token
WATTLINE_INFLUX_VERSION=$VERSION
WATTLINE_INFLUX_PID_FILE=$RUN_DIR/influxd.pid
WATTLINE_INFLUX_RUN_DIR=$RUN_DIR
WATTLINE_INFLUX_LOG=$RUN_DIR/influxd.log
EOF
chmod 600 "$RUN_DIR/influx.env"
log "ready: $URL org=$ORG bucket=$BUCKET token_file=$RUN_DIR/token (pid $PID)"
echo "WATTLINE_INFLUX_ENV_FILE=$RUN_DIR/influx.env"
