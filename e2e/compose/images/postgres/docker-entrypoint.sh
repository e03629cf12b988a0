#!/bin/sh
# The official image's start-up, reduced to what docker-compose.yml uses: as
# root, own the data directory and drop to the postgres user; on the first
# start, initdb with POSTGRES_USER and POSTGRES_PASSWORD, that user's
# database, listening on every address with password logins.
set -eu
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown -R postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
	echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
	echo "CREATE DATABASE \"$user\";" | postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec "$@"
