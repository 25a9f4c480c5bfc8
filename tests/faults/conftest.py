"""Fixtures of the store-outage suite: users and auth on a PostgreSQL cluster of the suite's
own (tests/pgcluster.py), which the tests stop and start while the services keep running.

The shared PostgreSQL at 127.0.0.1:5432 is never stopped: every outage here is of the scratch
cluster. The services, their gRPC servers, the SQL drivers and the sockets are all real.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.auth.conftest import Stack, StartStack, start_stack
from tests.pgcluster import PgCluster


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """One scratch cluster per module; each test starts it if a previous one left it stopped."""
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    if not pg_cluster.is_running():
        pg_cluster.start()
    return pg_cluster


@pytest.fixture
def sql_url(pg: PgCluster) -> str:
    """Overrides the shared `sql_url`: a fresh database on the scratch cluster."""
    return pg.create_database(f"pinexa_faults_{uuid.uuid4().hex[:10]}")


__all__ = ["Stack", "StartStack", "start_stack"]
