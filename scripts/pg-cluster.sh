#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and prints its
# connection string (a private Unix socket in a new temp folder; no TCP).
# PostgreSQL refuses to run as root, so as root it runs as `postgres`.
#   export SOTTO_TEST_POSTGRES="$(scripts/pg-cluster.sh)"
# Stop it with: scripts/pg-cluster.sh stop "$SOTTO_TEST_POSTGRES"
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "no PostgreSQL here: install Debian's postgresql package" >&2
  exit 1
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "${1:-}" = stop ]; then
  dir=$(printf '%s' "${2:?connection string}" | sed -n 's/.*host=\([^ ]*\).*/\1/p')
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  rm -rf "$dir"
  exit 0
fi
dir=$(mktemp -d /tmp/sotto-pg.XXXXXX)
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
# fsync stays on: the tests check durability the way a deployment has it.
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-k $dir -c listen_addresses='' -c max_connections=300 -c shared_buffers=64MB" start >/dev/null
echo "host=$dir user=postgres dbname=postgres"
