"""Faults: the worker SIGKILLed at random instants during a steady write load and restarted,
many times; both PostgreSQL servers restarted mid-batch. Afterwards the subscriber equals the
provider row for row (exactly once)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.devtools.pgcluster import TempCluster
from londiste_rs.devtools.processes import spawn_cli as spawn
from londiste_rs.devtools.processes import stop_gracefully as stop
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok

# test_servers_restart_mid_batch starts servers of its own: marked here, not through fix_pg.
pytestmark = pytest.mark.pg

SCHEMA = """
create table acct (id int primary key, bal int not null, note text unique);
create table movement (id bigint generated always as identity primary key,
                       acct_id int not null references acct, amount int not null);
"""


def ticker_ini(tmp_path: Path, dsn: str, dbname: str) -> Path:
    params = conninfo_to_dict(dsn)
    params.pop("dbname")
    path = tmp_path / "ticker.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\ndatabase_list = {dbname}\n"
        f"ticker_period = 0.1\nlogfile = {tmp_path}/ticker.log\npidfile = {tmp_path}/ticker.pid\n"
    )
    return path


class Writer(threading.Thread):
    """A steady write load: inserts, updates, deletes, unique values moving between rows."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.done = threading.Event()
        self.commits = 0

    def run(self) -> None:
        rnd = random.Random(7)
        while not self.done.is_set():
            with contextlib.suppress(psycopg.OperationalError), psycopg.connect(self.dsn) as conn:
                while not self.done.is_set():
                    a, b = rnd.randint(1, 200), rnd.randint(1, 200)
                    with conn.transaction():
                        conn.execute("update acct set bal = bal - 1 where id = %s", [a])
                        conn.execute("update acct set bal = bal + 1 where id = %s", [b])
                        conn.execute("insert into movement (acct_id, amount) values (%s, 1)", [a])
                        if a != b and rnd.random() < 0.2:  # swap two unique notes
                            na, nb = (
                                conn.execute("select note from acct where id = %s", [x]).fetchone()[
                                    0
                                ]  # type: ignore[index]
                                for x in (a, b)
                            )
                            conn.execute("update acct set note = null where id = %s", [a])
                            conn.execute("update acct set note = %s where id = %s", [na, b])
                            conn.execute("update acct set note = %s where id = %s", [nb, a])
                        if rnd.random() < 0.1:
                            conn.execute(
                                "delete from movement where id = (select min(id) from movement)"
                            )
                    self.commits += 1
                    time.sleep(0.002)
            time.sleep(0.2)


@contextlib.contextmanager
def replication(tmp_path: Path, src: str, src_name: str, dst: str) -> Iterator[Path]:
    """Schema on both sides, root + leaf, tables added, ticker running; yields the leaf ini."""
    for dsn in (src, dst):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("insert into acct select i, 1000, 'n' || i from generate_series(1, 200) i")
    root = job_ini(tmp_path, "master", src)
    leaf = job_ini(tmp_path, "slave", dst, exception_sleep="1")
    ok(str(root), "create-root", "master")
    ok(str(leaf), "create-leaf", "slave", f"--provider={src}")
    ok(str(root), "add-table", "--all")
    ok(str(leaf), "add-table", "--all")
    ticker = spawn("ticker", str(ticker_ini(tmp_path, src, src_name)))
    try:
        yield leaf
    finally:
        stop(ticker)


def snapshot(dsn: str) -> list[Any]:
    with psycopg.connect(dsn) as conn:
        return [
            conn.execute("select * from acct order by id").fetchall(),
            conn.execute("select * from movement order by id").fetchall(),
        ]


def converge(leaf: Path, src: str, dst: str) -> None:
    worker = spawn(str(leaf), "worker")
    try:
        wait_for("subscriber == provider", lambda: snapshot(src) == snapshot(dst), timeout=90)
    finally:
        stop(worker)


def test_sigkill_worker_many_times_under_load(tmp_path, provider_db, subscriber_db):
    with replication(tmp_path, provider_db.dsn, provider_db.name, subscriber_db.dsn) as leaf:
        writer = Writer(provider_db.dsn)
        writer.start()
        rnd = random.Random(11)
        kills = 0
        deadline = time.monotonic() + 35
        try:
            while time.monotonic() < deadline:
                worker = spawn(str(leaf), "worker")
                time.sleep(rnd.uniform(0.3, 2.0))
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
                kills += 1
        finally:
            writer.done.set()
            writer.join(30)
        assert kills >= 10 and writer.commits > 100
        converge(leaf, provider_db.dsn, subscriber_db.dsn)


def test_servers_restart_mid_batch(tmp_path):
    with TempCluster("fault-src") as src_cluster, TempCluster("fault-dst") as dst_cluster:
        src = src_cluster.create_database("src", owner="lrs_owner")
        dst = dst_cluster.create_database("dst", owner="lrs_owner")
        with replication(tmp_path, src, "src", dst) as leaf:
            writer = Writer(src)
            writer.start()
            worker = spawn(str(leaf), "worker")
            try:
                time.sleep(3)
                dst_cluster.restart("immediate")
                time.sleep(3)
                src_cluster.restart("immediate")
                time.sleep(3)
                writer.done.set()
                writer.join(30)
                assert worker.poll() is None, "the worker must survive server restarts"
                wait_for("subscriber == provider", lambda: snapshot(src) == snapshot(dst), 90)
            finally:
                writer.done.set()
                stop(worker)
