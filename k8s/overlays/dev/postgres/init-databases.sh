# DEV ONLY: run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d),
# in the dev overlay and in docker-compose.yml. One role and one database per service, so users
# and auth cannot read each other's tables. Sourced by the entrypoint: no `set` or `exit` here.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v users_password="$USERS_DB_PASSWORD" -v auth_password="$AUTH_DB_PASSWORD" <<'SQL'
CREATE ROLE pinexa_users LOGIN PASSWORD :'users_password';
CREATE DATABASE pinexa_users OWNER pinexa_users;
REVOKE ALL ON DATABASE pinexa_users FROM PUBLIC;
CREATE ROLE pinexa_auth LOGIN PASSWORD :'auth_password';
CREATE DATABASE pinexa_auth OWNER pinexa_auth;
REVOKE ALL ON DATABASE pinexa_auth FROM PUBLIC;
SQL
