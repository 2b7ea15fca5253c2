# Sourced by scripts/test. Sets PG_ADMIN_URL to a PostgreSQL server the tests may create
# databases on: the one on 127.0.0.1:5432 when it answers (trust auth, user postgres), otherwise
# a throw-away server started here on a free port and removed when the calling script exits.

pg_answers() {
    psql "$1" -Atqc "SELECT 1" >/dev/null 2>&1
}

# Runs a PostgreSQL binary as the server's owner (initdb refuses root, so root uses postgres).
as_pg_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_own_postgres() {
    local bin port
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ]; then
        echo "postgres: no PostgreSQL server binaries; run scripts/setup" >&2
        return 1
    fi
    port=55432
    while pg_answers "postgresql://postgres@127.0.0.1:$port/postgres" \
        || (ss -ltn 2>/dev/null | grep -q ":$port "); do
        port=$((port + 1))
    done
    PG_OWN_DIR=$(mktemp -d /tmp/callgenius-pg.XXXXXX)
    PG_OWN_BIN=$bin
    [ "$(id -u)" -ne 0 ] || chown postgres "$PG_OWN_DIR"
    trap stop_own_postgres EXIT
    as_pg_owner "$bin/initdb" -D "$PG_OWN_DIR/data" -U postgres --auth=trust >/dev/null
    as_pg_owner "$bin/pg_ctl" -D "$PG_OWN_DIR/data" -l "$PG_OWN_DIR/server.log" -w \
        -o "-p $port -k $PG_OWN_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    PG_ADMIN_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "postgres: started a server for the tests on port $port"
}

stop_own_postgres() {
    if [ -n "${PG_OWN_DIR:-}" ]; then
        as_pg_owner "$PG_OWN_BIN/pg_ctl" -D "$PG_OWN_DIR/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$PG_OWN_DIR"
    fi
}

ensure_postgres() {
    local shared="postgresql://postgres@127.0.0.1:5432/postgres"
    if pg_answers "$shared"; then
        PG_ADMIN_URL=$shared
        echo "postgres: using the server on 127.0.0.1:5432"
    else
        start_own_postgres
    fi
}

# Drops the databases test runs created (each test makes its own, named cgtest_<uuid>).
drop_test_databases() {
    local name
    for name in $(psql "$PG_ADMIN_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'cgtest\_%'"); do
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
    done
}
