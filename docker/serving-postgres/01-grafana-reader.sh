#!/bin/sh
# Serving Postgres init (runs once, on an empty data volume): a read-only role for
# Grafana on the schema the gold marts are published to. The marts are created by
# the lakehouse role ($POSTGRES_USER), so its default privileges grant SELECT on
# every mart table it creates later, including the ones swapped in on each publish.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v reader="$GRAFANA_PG_USER" -v reader_password="$GRAFANA_PG_PASSWORD" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password';
CREATE SCHEMA IF NOT EXISTS gold AUTHORIZATION CURRENT_USER;
GRANT USAGE ON SCHEMA gold TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA gold TO :"reader";
ALTER DEFAULT PRIVILEGES IN SCHEMA gold GRANT SELECT ON TABLES TO :"reader";
SQL
