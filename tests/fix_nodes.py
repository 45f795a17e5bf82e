"""Nodes and their queues, driven by the test itself rather than by daemons (a pytest plugin,
see conftest.py): `nodes` makes a root and a leaf, `tick` makes a tick as the ticker would,
`drain` steps workers until they are idle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from londiste_rs.replication.worker import Worker
from londiste_rs.store import queue as pgq
from tests.fix_cli import job_ini, ok
from tests.fix_pg import Database

# Rounds of steps a drain allows before it decides the workers would never become idle.
DRAIN_LIMIT = 200


def nodes(
    tmp_path: Path, provider_db: Database, subscriber_db: Database, **extra: Any
) -> tuple[str, str]:
    """Root `master` on the provider and leaf `slave` on the subscriber (queue q1), created
    through the CLI; returns their job files. `extra` goes into the leaf's job file."""
    root = str(job_ini(tmp_path, "master", provider_db.dsn))
    leaf = str(job_ini(tmp_path, "slave", subscriber_db.dsn, **extra))
    ok(root, "create-root", "master")
    ok(leaf, "create-leaf", "slave", f"--provider={provider_db.dsn}")
    return root, leaf


def tick(db: Database | psycopg.Connection[Any], queue: str = "q1") -> int:
    """A tick of `queue` now, whatever its ticker settings (force_tick, then ticker): what
    the ticker daemon would make. Returns the new tick's id. `db` is a test database or an
    autocommit connection to it."""
    if isinstance(db, psycopg.Connection):
        return _tick(db, queue)
    with db.connect() as conn:
        return _tick(conn, queue)


def _tick(conn: psycopg.Connection[Any], queue: str) -> int:
    pgq.force_tick(conn, queue)
    made = pgq.ticker(conn, queue)
    assert made is not None, f"no tick made on queue {queue}"
    return made


def drain(*workers: Worker, limit: int = DRAIN_LIMIT) -> None:
    """Steps every worker, round after round, until a round in which none had work."""
    for _ in range(limit):
        if not any([w.step() for w in workers]):  # a list: every worker steps each round
            return
    raise AssertionError("workers did not become idle")
