#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a free loopback port for the work-order tests (and a quick local try).
#
# Usage:  deploy/postgres/start.sh [--fresh] [RUN_DIR]
#   RUN_DIR  defaults to $WATTLINE_PG_RUN_DIR, else ${TMPDIR:-/tmp}/wattline-postgres-<uid>.
#   --fresh  wipe RUN_DIR (an earlier cluster) first.
# Needs Debian's PostgreSQL server binaries (apt-get install postgresql); they are found with pg_config or under
# /usr/lib/postgresql/<version>/bin. initdb refuses to run as root, so as root the cluster runs as the system user
# "postgres" (created by the Debian package); otherwise as the calling user.
# Output: RUN_DIR/postgres.env (0600) with WATTLINE_PG_URL (postgresql+psycopg://wattline@127.0.0.1:PORT/wattline
# ?passfile=RUN_DIR/pgpass); the random password lives only in RUN_DIR/pgpass (0600) and is never printed. The env
# file's path is printed on the last line (WATTLINE_PG_ENV_FILE=...), so `eval "$(deploy/postgres/start.sh | tail -1)"`
# exports it. A live cluster in RUN_DIR is reused.
set -euo pipefail
umask 077

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
run_dir_args fresh 15 WATTLINE_PG_RUN_DIR wattline-postgres "$@"
FRESH=$FLAG
PY="${PYTHON:-python3}"
log() { printf '[postgres/start] %s\n' "$*" >&2; }

BIN=""
if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then BIN="$(pg_config --bindir)"; fi
if [[ -z "$BIN" ]]; then
    BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
fi
if [[ -z "$BIN" || ! -x "$BIN/initdb" ]]; then
    log "PostgreSQL server binaries not found: apt-get install postgresql"
    exit 1
fi

# As root, run the server as "postgres"; the run dir stays the caller's (0711: postgres may only pass through).
AS=()
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || { log "running as root needs the system user postgres (apt-get install postgresql)"; exit 1; }
    AS=(runuser -u postgres --)
fi
pg() { "${AS[@]}" "$@"; }

if ((FRESH)) && [[ -d "$RUN_DIR" ]]; then
    "$HERE/stop.sh" "$RUN_DIR" --purge >&2 || true
fi
mkdir -p "$RUN_DIR"
chmod 711 "$RUN_DIR"
DATA="$RUN_DIR/data"
SOCK="$RUN_DIR/sock"

if [[ -f "$DATA/postmaster.pid" ]] && pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "already running in $RUN_DIR"
    echo "WATTLINE_PG_ENV_FILE=$RUN_DIR/postgres.env"
    exit 0
fi

if [[ ! -s "$DATA/PG_VERSION" ]]; then
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$RUN_DIR/password"
    chmod 600 "$RUN_DIR/password"
    mkdir -p "$DATA" "$SOCK"
    PWFILE="$SOCK/.initdb-pw"
    cp "$RUN_DIR/password" "$PWFILE"
    if ((${#AS[@]})); then chown postgres "$DATA" "$SOCK" "$PWFILE"; fi
    chmod 700 "$DATA" "$SOCK"
    log "initdb into $DATA ($("$BIN/postgres" --version))"
    pg "$BIN/initdb" -D "$DATA" -U wattline --auth=scram-sha-256 --pwfile="$PWFILE" -E UTF8 --locale=C.UTF-8 \
        >"$RUN_DIR/initdb.log" 2>&1 || { rm -f "$PWFILE"; log "initdb failed:"; tail -20 "$RUN_DIR/initdb.log" >&2; exit 1; }
    rm -f "$PWFILE"
fi

# A free loopback port (the kernel picks it); never a fixed one, parallel runs must not collide.
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOGFILE="$RUN_DIR/postgres.log"
touch "$LOGFILE"
if ((${#AS[@]})); then chown postgres "$LOGFILE"; fi
log "starting PostgreSQL on 127.0.0.1:$PORT (data $DATA, log $LOGFILE)"
pg "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c fsync=off -c max_connections=50" start >/dev/null \
    || { log "PostgreSQL did not start; last log lines:"; tail -20 "$LOGFILE" >&2; exit 1; }
echo "$PORT" >"$RUN_DIR/port"

# libpq's passfile: host:port:db:user:password, mode 0600 (libpq ignores a file others can read).
printf '127.0.0.1:%s:*:wattline:%s\n' "$PORT" "$(cat "$RUN_DIR/password")" >"$RUN_DIR/pgpass"
chmod 600 "$RUN_DIR/pgpass"
PGPASSFILE="$RUN_DIR/pgpass" "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U wattline -d postgres -tAq \
    -c "SELECT 1 FROM pg_database WHERE datname = 'wattline'" | grep -q 1 \
    || PGPASSFILE="$RUN_DIR/pgpass" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U wattline wattline

cat >"$RUN_DIR/postgres.env" <<ENV
WATTLINE_PG_URL=postgresql+psycopg://wattline@127.0.0.1:$PORT/wattline?passfile=$RUN_DIR/pgpass
WATTLINE_PG_PASSFILE=$RUN_DIR/pgpass
WATTLINE_PG_PORT=$PORT
WATTLINE_PG_RUN_DIR=$RUN_DIR
ENV
chmod 600 "$RUN_DIR/postgres.env"
log "ready: $RUN_DIR/postgres.env"
echo "WATTLINE_PG_ENV_FILE=$RUN_DIR/postgres.env"
