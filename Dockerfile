# syntax=docker/dockerfile:1.7
# One image for every Pinexa service. The first argument selects what runs:
#
#   docker run IMAGE users            # or auth, data
#   docker run IMAGE users migrate    # one service's SQL migrations
#   docker run IMAGE migrations       # users', then auth's migrations (USERS_/AUTH_DATABASE_URL)
#
# Build:  docker build -t pinexa:0.1.0 .
#
# Stage 1 builds the project wheel (with the generated `pinexa` stubs and each service's Alembic
# migrations as package data) and installs it with its dependencies into a virtualenv. It is built
# from services/ and generated/ only: the dev tools (devstack/ behind `make run`, the Envoy renderer
# in envoy/, scripts/) are neither copied nor in the wheel.
# Stage 2 copies only that virtualenv (without pip) onto a clean slim Python: no compilers, no sources,
# a non-root user, and nothing that needs a writable root filesystem (DATA_DIR is under /tmp).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency ships manylinux wheels for CPython 3.11; should one ever need compiling, it is
# compiled here, and nothing of this stage but the virtualenv reaches the final image.
COPY pyproject.toml README.md ./
COPY generated ./generated
COPY services ./services
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/pinexa \
 && /opt/pinexa/bin/pip install /wheels/pinexa-*.whl \
 && /opt/pinexa/bin/pip uninstall --yes pip \
 && for f in pinexa/users/v1/users_pb2.py services/users/migrations/env.py \
        services/auth/migrations/env.py; do \
      test -f /opt/pinexa/lib/python3*/site-packages/$f || { echo "the wheel lacks $f" >&2; exit 1; }; \
    done

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pinexa" \
      org.opencontainers.image.description="Pinexa gRPC services: auth, users, data" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 pinexa \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pinexa
COPY --from=build /opt/pinexa /opt/pinexa
COPY --chmod=0555 docker/entrypoint.sh /usr/local/bin/pinexa
ENV PATH=/opt/pinexa/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PINEXA_ENV=production \
    LISTEN_HOST=0.0.0.0 \
    DATA_DIR=/tmp/pinexa \
    LOG_FORMAT=json
WORKDIR /tmp
USER 10001:10001
EXPOSE 50051 50052 50053
ENTRYPOINT ["/usr/local/bin/pinexa"]
CMD ["users"]
