#!/usr/bin/env bash
# Stop the throwaway PostgreSQL cluster started by deploy/postgres/start.sh.
#
# Usage:  deploy/postgres/stop.sh [RUN_DIR] [--purge]
#   --purge  also delete RUN_DIR (data, passfile, env file).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
run_dir_args purge 5 WATTLINE_PG_RUN_DIR wattline-postgres "$@"
PURGE=$FLAG
BIN=""
if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/pg_ctl" ]]; then BIN="$(pg_config --bindir)"; fi
[[ -n "$BIN" ]] || BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
AS=()
if [[ "$(id -u)" == 0 ]] && id postgres >/dev/null 2>&1; then AS=(runuser -u postgres --); fi
if [[ -f "$RUN_DIR/data/postmaster.pid" ]]; then
    "${AS[@]}" "$BIN/pg_ctl" -D "$RUN_DIR/data" -m fast -w -t 60 stop >/dev/null && echo "[postgres/stop] stopped ($RUN_DIR)" >&2
fi
if ((PURGE)); then
    rm -rf "$RUN_DIR"
fi
