#!/usr/bin/env bash
# Stop the InfluxDB server started by start.sh, by the pid it recorded.
#
# Usage:  deploy/influxdb/stop.sh [RUN_DIR] [--purge]
#   RUN_DIR  as for start.sh (default $WATTLINE_INFLUX_RUN_DIR, else ${TMPDIR:-/tmp}/wattline-influxdb-<uid>)
#   --purge  also delete RUN_DIR (data, token, env file). Without it the data stays, so start.sh restarts the
#            same server (used by the fault test).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
run_dir_args purge 8 WATTLINE_INFLUX_RUN_DIR wattline-influxdb "$@"
PURGE=$FLAG
log() { printf '[influxdb/stop] %s\n' "$*" >&2; }

if [[ -f "$RUN_DIR/influxd.pid" ]]; then
    PID="$(cat "$RUN_DIR/influxd.pid")"
    # Only signal the pid if it is really an influxd (a stale pid file may name a recycled pid).
    if kill -0 "$PID" 2>/dev/null && grep -q influxd "/proc/$PID/cmdline" 2>/dev/null; then
        kill -TERM "$PID"
        # influxd flushes its WAL/cache on SIGTERM; give it time before escalating.
        for _ in $(seq 1 120); do
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$PID" 2>/dev/null; then
            log "pid $PID did not stop after 30 s; sending SIGKILL"
            kill -KILL "$PID" 2>/dev/null || true
        fi
        log "stopped pid $PID"
    else
        log "pid $PID is not running"
    fi
    rm -f "$RUN_DIR/influxd.pid"
else
    log "no pid file in $RUN_DIR: nothing to stop"
fi

if ((PURGE)) && [[ -d "$RUN_DIR" ]]; then
    rm -rf "$RUN_DIR"
    log "removed $RUN_DIR"
fi
