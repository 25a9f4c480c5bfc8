#!/bin/sh
# Entrypoint of the Pinexa application image: the first argument selects what runs.
#
#   auth | users | data [ARGS...]   one service (python -m services.<name>), e.g. `users migrate`
#   migrations                      the SQL migrations of users, then of auth, then exit
#   healthcheck PORT [SERVICE]      exit 0 when grpc.health.v1 on 127.0.0.1:PORT says SERVING
#
# `migrations` runs each service's migrations against its own database: USERS_DATABASE_URL and
# AUTH_DATABASE_URL when set, DATABASE_URL otherwise (one database shared by both, each service
# with its own Alembic version table).
set -eu

usage() {
  echo "usage: pinexa auth|users|data [ARGS...] | migrations | healthcheck PORT [SERVICE]" >&2
  exit 64
}

[ "$#" -ge 1 ] || usage
command="$1"
shift

case "$command" in
  auth | users | data)
    exec python -m "services.$command" "$@"
    ;;
  migrations | migrate)
    [ "$#" -eq 0 ] || usage
    DATABASE_URL="${USERS_DATABASE_URL:-${DATABASE_URL:-}}" python -m services.users migrate
    DATABASE_URL="${AUTH_DATABASE_URL:-${DATABASE_URL:-}}" exec python -m services.auth migrate
    ;;
  healthcheck)
    [ "$#" -ge 1 ] && [ "$#" -le 2 ] || usage
    exec python - "$@" <<'PY'
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

port, service = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=3
        )
    except grpc.RpcError as exc:
        sys.exit(f"health check failed: {exc.code().name}")
status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else f"health: {status}")
PY
    ;;
  *)
    usage
    ;;
esac
