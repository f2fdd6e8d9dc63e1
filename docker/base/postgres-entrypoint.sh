#!/bin/bash
# Entry point of the local PostgreSQL image (see postgres.Dockerfile).
set -euo pipefail

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (compose passes it from .env)}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
PGDATA=${PGDATA:-/var/lib/postgresql/data}

# Started as a non-root user with capabilities (Podman hands a container's
# cap_add to a non-root user as ambient capabilities; Docker does not):
# drop them once, before anything else runs, so the server holds none.
if [ "$(id -u)" != 0 ] && awk '/^CapAmb:/ { exit ($2 ~ /^0+$/) }' /proc/self/status; then
    exec setpriv --inh-caps=-all --ambient-caps=-all "$0" "$@"
fi

# Run as a uid the image's /etc/passwd does not know (Kubernetes' runAsUser),
# initdb cannot name its user: nss_wrapper gives that uid an entry, in files
# under /tmp (the root stays read-only), as the official image does.
if ! id -un > /dev/null 2>&1; then
    wrapper=$(find /usr/lib -name libnss_wrapper.so -print -quit)
    passwd=$(mktemp) group=$(mktemp)
    cat /etc/passwd > "$passwd"
    echo "postgres-$(id -u):x:$(id -u):$(id -g):PostgreSQL:$PGDATA:/bin/false" >> "$passwd"
    cat /etc/group > "$group"
    getent group "$(id -g)" > /dev/null || echo "postgres-$(id -g):x:$(id -g):" >> "$group"
    export LD_PRELOAD="$wrapper" NSS_WRAPPER_PASSWD="$passwd" NSS_WRAPPER_GROUP="$group"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "initialising database in $PGDATA"
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 > /dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # Socket only while initialising: healthchecks over TCP stay red until done.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start > /dev/null
    if [ "$POSTGRES_DB" != "postgres" ]; then
        psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
            *.sh) echo "running $f"; . "$f" ;;
            *) [ -e "$f" ] && echo "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop > /dev/null
    echo "database initialised"
fi

if [ "${1:-postgres}" = "postgres" ]; then
    shift || true
    exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
