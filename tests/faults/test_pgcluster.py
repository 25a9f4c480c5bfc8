"""The scratch PostgreSQL cluster the outage and chaos tests stop and start."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from tests.pgcluster import PgCluster, reap_orphans


def test_a_cluster_stops_and_starts_again_on_its_port_with_its_data() -> None:
    with PgCluster() as pg:
        url = pg.create_database("kept")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE t (v int)")
            connection.execute("INSERT INTO t VALUES (42)")

        pg.stop()
        assert not pg.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)

        pg.start()
        assert pg.is_running()
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT v FROM t").fetchone() == (42,)
    assert not pg.root.exists()


def test_a_cluster_left_running_by_a_killed_test_process_is_reaped() -> None:
    orphan = PgCluster()
    orphan.start()
    try:
        child = subprocess.Popen(["true"])
        child.wait()
        (orphan.root / "owner.pid").write_text(str(child.pid))  # as if its maker had been killed
        assert orphan.root in reap_orphans()
        assert not orphan.root.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(orphan.url, connect_timeout=2)
    finally:
        orphan.destroy()
