#!/bin/bash
# First start of the primary only (docker-entrypoint-initdb.d): the application role and
# databases, the replication role, a physical slot for the replica (so the primary keeps
# the WAL the replica still needs), and a pg_hba rule letting the replica stream.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_password="$APP_PASSWORD" -v repl_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE shopmesh LOGIN PASSWORD :'app_password';
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'repl_password';
SELECT pg_create_physical_replication_slot('replica_1');
CREATE DATABASE product OWNER shopmesh;
CREATE DATABASE "user" OWNER shopmesh;
CREATE DATABASE notification OWNER shopmesh;
CREATE DATABASE registry OWNER shopmesh;
CREATE DATABASE auth OWNER shopmesh;
SQL

echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
