"""The two clusters every scenario runs on, started fresh with identical settings, and the
databases made in them (provider databases are clones of filled templates)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from londiste_rs.devtools.pgcluster import TempCluster
from support import workload

# The parallel copy jobs every tool gets where many tables are copied at once (londiste's
# parallel_copies, pgcopydb's --table-jobs and --index-jobs). Native LR's counterpart is a
# server setting, max_sync_workers_per_subscription (default 2), hence its place here.
COPY_JOBS = 4

# Identical on both clusters. The provider needs wal_level=logical for the native-LR peer; the
# subscriber gets the same so the two differ in nothing.
SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_logical_replication_workers": "8",  # an apply worker and COPY_JOBS table syncs fit
    "max_sync_workers_per_subscription": str(COPY_JOBS),
    "shared_buffers": "256MB",
    "checkpoint_timeout": "30min",
    # PostgreSQL waits this long before starting an apply worker again after one stopped (5 s by
    # default); the drain re-enables a subscription it disabled, and should not wait for that.
    "wal_retrieve_retry_interval": "1s",
}


@dataclass
class Db:
    cluster: TempCluster
    name: str

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.name)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def execute(self, query: str, params: Any = None) -> None:
        with self.connect() as conn:
            conn.execute(query, params)

    def one(self, query: str, params: Any = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]


class BenchEnv:
    """Provider and subscriber clusters plus a work directory for configs and logs."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.provider = TempCluster("bench-provider", settings=SETTINGS)
        self.subscriber = TempCluster("bench-subscriber", settings=SETTINGS)
        self._ids = itertools.count(1)
        self._templates: set[str] = set()
        self._sub_templates: set[str] = set()

    def __enter__(self) -> BenchEnv:
        self.provider.start()
        self.subscriber.start()
        with self.subscriber.connect() as conn:
            conn.execute("create database bench_empty template template0")
        with psycopg.connect(self.subscriber.dsn("bench_empty"), autocommit=True) as conn:
            workload.create_schema(conn, provider=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.subscriber.destroy()
        self.provider.destroy()

    def template(self, scale: int) -> str:
        """A filled pgbench provider template at `scale`, made once."""

        def fill(conn: psycopg.Connection[Any]) -> None:
            workload.create_schema(conn, provider=True)
            workload.fill(conn, scale)

        return self.filled_template(f"bench_tpl_{scale}", fill)

    def filled_template(self, name: str, fill: Callable[[psycopg.Connection[Any]], None]) -> str:
        """A provider template database filled by `fill`, made once."""
        if name not in self._templates:
            with self.provider.connect() as conn:
                conn.execute(f"create database {name} template template0")
            with psycopg.connect(self.provider.dsn(name), autocommit=True) as conn:
                fill(conn)
            self._templates.add(name)
        return name

    def provider_db(self, scale: int, tag: str) -> Db:
        """A fresh provider database: a clone of the filled pgbench template at `scale`."""
        return self.provider_clone(self.template(scale), tag)

    def provider_clone(self, template: str, tag: str) -> Db:
        """A fresh provider database cloned from `template`."""
        name = f"src_{tag}_{next(self._ids)}"
        with self.provider.connect() as conn:
            conn.execute(f"create database {name} template {template}")
        return Db(self.provider, name)

    def subscriber_db(self, tag: str, filled_scale: int | None = None, schema: bool = True) -> Db:
        """A fresh subscriber database with the pgbench schema and no rows, or (filled_scale)
        with the same rows as a fresh provider database at that scale, for runs that skip the
        copy, or (not schema) with no tables at all, for tools that create them."""
        template = "bench_empty" if schema else "template0"
        if filled_scale is not None:
            template = f"bench_tpl_{filled_scale}"
            if template not in self._sub_templates:
                with self.subscriber.connect() as conn:
                    conn.execute(f"create database {template} template bench_empty")
                with psycopg.connect(self.subscriber.dsn(template), autocommit=True) as conn:
                    workload.fill(conn, filled_scale)
                self._sub_templates.add(template)
        name = f"dst_{tag}_{next(self._ids)}"
        with self.subscriber.connect() as conn:
            conn.execute(f"create database {name} template {template}")
        return Db(self.subscriber, name)

    def drop(self, *dbs: Db) -> None:
        for db in dbs:
            with db.cluster.connect() as conn:
                conn.execute(f"drop database if exists {db.name} with (force)")

    def logdir(self, tag: str) -> Path:
        path = self.workdir / tag
        path.mkdir(parents=True, exist_ok=True)
        return path
