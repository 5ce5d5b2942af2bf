#!/bin/bash
# Replica entrypoint: on first start (empty data directory) clone the primary with
# pg_basebackup -R, which writes standby.signal and primary_conninfo using the physical
# slot REPLICATION_SLOT (default replica_1, created by primary-init.sh), then run postgres
# as a hot standby streaming from the primary. Compose and the replica StatefulSet run it.
set -euo pipefail

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p "${PRIMARY_PORT:-5432}" -q; do
    echo "replica: waiting for $PRIMARY_HOST"; sleep 1
  done
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" -p "${PRIMARY_PORT:-5432}" \
    -U replicator -D "$PGDATA" -R -X stream -S "${REPLICATION_SLOT:-replica_1}" \
    --checkpoint=fast --progress
  chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on
