// DEV ONLY: run once by the mongo image on an empty data directory (docker-entrypoint-initdb.d),
// in the dev overlay and in docker-compose.yml. The data service gets its own user, limited to
// its own database.
db.getSiblingDB("pinexa").createUser({
  user: "pinexa_data",
  pwd: process.env.DATA_DB_PASSWORD,
  roles: [{ role: "readWrite", db: "pinexa" }],
});
