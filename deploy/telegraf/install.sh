#!/usr/bin/env bash
# Build the reference Telegraf (for the collector benchmark only; not used by CI or at run time) from the Go
# module proxy and cache it outside the repository, like deploy/influxdb/install.sh does for influxd.
#
# Usage:  deploy/telegraf/install.sh            # prints the path of the cached telegraf on its last line
# Env:    TELEGRAF_VERSION (default 1.37.2)     WATTLINE_CACHE (default ~/.cache/wattline)
#         GO (default: go on PATH, else /usr/local/go/bin/go)
#
# Idempotent: when the cached binary exists and runs, the script exits at once.
# Only the plugins the benchmark uses are compiled in (Telegraf's "custom" build tag), which keeps a cold
# build to a few minutes on 2 cores instead of the full distribution's much longer one.
set -euo pipefail

VERSION="${TELEGRAF_VERSION:-1.37.2}"
CACHE_ROOT="${WATTLINE_CACHE:-$HOME/.cache/wattline}"
DEST="$CACHE_ROOT/telegraf/$VERSION"
BIN="$DEST/telegraf"
LOG="$DEST/build.log"
TAGS="custom,inputs.opcua_listener,inputs.internal,outputs.influxdb_v2,outputs.file,serializers.influx"

log() { printf '[telegraf/install] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "Telegraf $VERSION"; then
    log "cached: $BIN ($("$BIN" --version 2>/dev/null | head -1))"
    echo "$BIN"
    exit 0
fi

if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
[[ -x "$GO" ]] || { log "Go not found (set GO=/path/to/go)"; exit 1; }

mkdir -p "$DEST"
: >"$LOG"
start=$(date +%s)
log "building telegraf v$VERSION with tags $TAGS (log: $LOG)"
# GOTOOLCHAIN=local: never let go download another toolchain (a binary download); the local Go is new enough.
# GOFLAGS=-mod=mod: resolve the module graph from the proxy as go install does for a main module.
# The version stamp is what Telegraf's Makefile sets (a plain go install reports "Telegraf unknown").
GOBIN="$DEST" GOTOOLCHAIN=local GOFLAGS=-mod=mod nice -n 10 "$GO" install -tags "$TAGS" \
    -ldflags "-X github.com/influxdata/telegraf/internal.Version=$VERSION" \
    "github.com/influxdata/telegraf/cmd/telegraf@v$VERSION" >>"$LOG" 2>&1 || {
    tail -40 "$LOG" >&2; log "build failed; full log in $LOG"; exit 1; }

"$BIN" --version 2>/dev/null | grep -q "Telegraf $VERSION" || { log "built $BIN but it does not run"; exit 1; }
secs=$(( $(date +%s) - start ))
echo "$secs" >"$DEST/build-seconds"
log "built $BIN in ${secs}s"
echo "$BIN"
