#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the multi-worker tuning tests, on loopback only.
#   export METALOSS_TEST_POSTGRES_URL=$(bash scripts/ci_postgres.sh)
# Installs Debian's postgresql package with apt-get if no server binaries are found, creates a
# cluster in $METALOSS_PG_DIR (default /tmp/metaloss-pg) listening on 127.0.0.1:$METALOSS_PG_PORT
# (default 55432) with trust authentication (loopback only: for tests, never for real data),
# creates the database "metaloss", and prints its SQLAlchemy URL on stdout (logs go to stderr).
# Idempotent: an existing cluster is reused, a running server is left running.
# Stop it with: bash scripts/ci_postgres.sh --stop
set -euo pipefail
DATA="${METALOSS_PG_DIR:-/tmp/metaloss-pg}"
PORT="${METALOSS_PG_PORT:-55432}"
DB=metaloss
log() { echo "ci_postgres: $*" >&2; }

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}

if ! BIN=$(find_bin); then
  log "installing postgresql with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
fi

# The server refuses to run as root: run it as the postgres user the package creates.
if [ "$(id -u)" -eq 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -w stop -m fast >&2
  fi
  exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a cluster in $DATA"
  mkdir -p "$DATA"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >&2
fi

if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "starting the server on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA" >&2
fi

PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAq)
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  log "creating database $DB"
  "${PSQL[@]}" -c "CREATE DATABASE $DB"
fi
echo "postgresql://postgres@127.0.0.1:$PORT/$DB"
