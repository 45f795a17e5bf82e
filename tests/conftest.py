"""Real PostgreSQL for every test.

Session-scoped throwaway clusters (initdb on free loopback ports, removed at the end even when
tests fail): `provider_cluster`, `subscriber_cluster` and `third_cluster` are separate clusters,
so their transaction-id spaces differ, which is where snapshot bugs hide. Each test gets fresh
databases owned by a non-superuser role (`lrs_owner`), so everything is tested without superuser.

`--pg-dsn=DSN` points the suite at an existing server instead (a superuser DSN); the three
"clusters" are then one server, with a fresh database per use.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.devtools.pgcluster import TempCluster

OWNER = "lrs_owner"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-dsn",
        default=os.environ.get("LONDISTE_RS_TEST_DSN"),
        help="superuser DSN of an existing server to use instead of throwaway clusters",
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


def _cluster(request: pytest.FixtureRequest, name: str) -> Iterator[Cluster]:
    dsn = request.config.getoption("--pg-dsn")
    if dsn:
        yield ExistingServer(dsn, name)
        return
    cluster = TempCluster(name).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def provider_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from _cluster(request, "provider")


@pytest.fixture(scope="session")
def subscriber_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from _cluster(request, "subscriber")


@pytest.fixture(scope="session")
def third_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from _cluster(request, "third")


@dataclass
class Database:
    """A fresh database: `dsn` connects as its non-superuser owner, `admin_dsn` as superuser."""

    cluster: Cluster
    name: str
    dsn: str
    admin_dsn: str

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

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
