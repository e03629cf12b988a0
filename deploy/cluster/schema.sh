#!/bin/sh
# Creates Temporal's two databases and installs or upgrades their schema with
# temporal-sql-tool, from the schemas embedded in the tool (the same release
# as the server). Safe on every start: existing databases are kept and
# update-schema only applies missing versions. Run by `make cluster`
# (internal/cluster) and by docker-compose.yml's temporal-schema service.
# Connection from the environment: SQL_PLUGIN, SQL_HOST, SQL_PORT, SQL_USER,
# SQL_PASSWORD (never on the command line).
set -eu
for db in temporal:temporal temporal_visibility:visibility; do
	name=${db%%:*}
	schema=postgresql/v12/${db#*:}
	temporal-sql-tool --db "$name" create-database 2>/dev/null || echo "database $name exists"
	temporal-sql-tool --db "$name" setup-schema -v 0.0
	temporal-sql-tool --db "$name" update-schema --schema-name "$schema"
done
