#!/bin/sh
# Run by the official postgres image once, when it initialises an empty data directory, as
# POSTGRES_USER: the schema owner, which `migrate` connects as. Creates the role the worker, beat
# and Flower connect as (APP_DB_USER, default articles_app): it may read and write rows of the
# tables the owner creates, now and in later migrations, and nothing else (no DDL, no TRUNCATE).
# For a data directory that already exists, run it by hand:
#   docker-compose exec postgres sh /docker-entrypoint-initdb.d/10-app-role.sh
set -eu
: "${APP_DB_PASSWORD:?set APP_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app="${APP_DB_USER:-articles_app}" -v password="$APP_DB_PASSWORD" \
  -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"app" LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"db" TO :"app";
GRANT USAGE ON SCHEMA public TO :"app";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"app";
SQL
