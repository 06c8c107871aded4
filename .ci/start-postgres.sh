#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the monitor store tests and print the line to eval:
#
#     eval "$(bash .ci/start-postgres.sh)"     # sets MEDFLEET_TEST_POSTGRES_URL (and _STOP)
#     pytest tests/monitor -q                  # the postgres cases now run instead of skipping
#     eval "$MEDFLEET_TEST_POSTGRES_STOP"      # stop the server (optional; it holds no data)
#
# Installs Debian's `postgresql` package when initdb/pg_ctl are missing, initialises a cluster
# in a temporary folder (as the `postgres` user when run as root: PostgreSQL refuses to run as
# root), starts it on a free loopback port with password authentication, creates a database
# and prints `export` lines on stdout. Everything else goes to stderr. Exits non-zero, with the
# server log on stderr, when any step fails.
set -euo pipefail

log() { echo "start-postgres: $*" >&2; }

find_pg_bin() {
  local tool=$1 dir
  if command -v "$tool" >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v "$tool")")"
    return 0
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/$tool" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if ! find_pg_bin initdb >/dev/null || ! find_pg_bin pg_ctl >/dev/null; then
  log "initdb/pg_ctl not found; installing Debian's postgresql package"
  if [ "$(id -u)" -ne 0 ]; then
    log "not root: cannot apt-get install postgresql; install it and run again"
    exit 1
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
    >/tmp/medfleet-pg-apt.log 2>&1 || {
    log "apt-get install postgresql failed; see /tmp/medfleet-pg-apt.log"
    exit 1
  }
fi
PGBIN=$(find_pg_bin pg_ctl)
log "using $PGBIN"

# A free loopback port, a random password, a fresh folder.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
DB_USER=medfleet
DB_NAME=medfleet_test
WORK=$(mktemp -d "${TMPDIR:-/tmp}/medfleet-pg.XXXXXX")
printf '%s\n' "$PASSWORD" >"$WORK/pwfile"

# PostgreSQL does not run as root: use the postgres user (made by Debian's package) or make one.
as_server_user=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --home-dir "$WORK" --shell /usr/sbin/nologin postgres
  fi
  chown -R postgres: "$WORK"
  chmod 700 "$WORK"
  if command -v runuser >/dev/null 2>&1; then
    as_server_user=(runuser -u postgres --)
  else
    as_server_user=(su postgres -s /bin/sh -c '"$0" "$@"' --)
  fi
fi

"${as_server_user[@]}" "$PGBIN/initdb" -D "$WORK/data" -U "$DB_USER" --pwfile="$WORK/pwfile" \
  --auth=scram-sha-256 --encoding=UTF8 --locale=C --no-sync >"$WORK/initdb.log" 2>&1 || {
  cat "$WORK/initdb.log" >&2
  log "initdb failed"
  exit 1
}
rm -f "$WORK/pwfile"

# Throwaway cluster: no fsync (the tests kill service processes, never the database server).
opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$WORK"
opts="$opts -c fsync=off -c full_page_writes=off -c max_connections=100"
"${as_server_user[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -o "$opts" -l "$WORK/server.log" \
  -w -t 60 start >&2 || {
  cat "$WORK/server.log" >&2 || true
  log "pg_ctl start failed"
  exit 1
}

PGPASSWORD="$PASSWORD" "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" "$DB_NAME" >&2 || {
  cat "$WORK/server.log" >&2 || true
  log "createdb failed"
  exit 1
}
log "PostgreSQL running on 127.0.0.1:$PORT, database $DB_NAME, folder $WORK"

stop="${as_server_user[*]} $PGBIN/pg_ctl -D $WORK/data -m fast stop"
echo "export MEDFLEET_TEST_POSTGRES_URL='postgresql+psycopg://$DB_USER:$PASSWORD@127.0.0.1:$PORT/$DB_NAME'"
echo "export MEDFLEET_TEST_POSTGRES_STOP='$stop && rm -rf $WORK'"
