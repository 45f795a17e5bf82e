"""Several roots into one subscriber: two source clusters, each the root of its own queue, feed
ONE subscriber database at the same time, each through its own worker process (its own job
ini). Writes go on at both roots while the workers run (the second leaf is even created while
the first worker is applying); afterwards the subscriber holds the union, row for row."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.devtools.processes import spawn_cli as spawn
from londiste_rs.devtools.processes import stop_gracefully as stop
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok

SCHEMA_A = """
create table a_cust (id int primary key, name text not null unique);
create table a_order (id bigint generated always as identity primary key,
                      cust_id int not null references a_cust, amount numeric(12,2));
"""
SCHEMA_B = "create table b_event (id uuid primary key, at timestamptz, payload jsonb);"


def ticker(tmp_path: Path, name: str, db: Any) -> Path:
    params = conninfo_to_dict(db.dsn)
    params.pop("dbname")
    path = tmp_path / f"ticker_{name}.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\ndatabase_list = {db.name}\n"
        f"ticker_period = 0.1\nlogfile = {tmp_path}/ticker_{name}.log\n"
        f"pidfile = {tmp_path}/ticker_{name}.pid\n"
    )
    return path


class Load(threading.Thread):
    """Writes one root's tables until told to stop: inserts, updates, deletes."""

    def __init__(self, dsn: str, statements: list[str]):
        super().__init__(daemon=True)
        self.dsn, self.statements = dsn, statements
        self.done = threading.Event()
        self.commits = 0

    def run(self) -> None:
        rnd = random.Random(self.dsn)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set():
                with conn.transaction():
                    for stmt in rnd.sample(self.statements, 2):
                        conn.execute(stmt)
                self.commits += 1
                time.sleep(0.005)


LOAD_A = [
    "insert into a_order (cust_id, amount) select id, random() * 100 from a_cust"
    " order by random() limit 3",
    "update a_order set amount = amount + 1 where id % 7 = (random() * 6)::int",
    "delete from a_order where id = (select min(id) from a_order)",
    "update a_cust set name = name || '.' where id = (random() * 49)::int + 1",
]
LOAD_B = [
    "insert into b_event select gen_random_uuid(), now(), jsonb_build_object('n', i)"
    " from generate_series(1, 5) i",
    "update b_event set payload = payload || '{\"seen\": true}'"
    " where id = (select id from b_event order by random() limit 1)",
    "delete from b_event where id = (select id from b_event order by at limit 1)",
]


A_TABLES, B_TABLES = ("a_cust", "a_order"), ("b_event",)


def content(db: Any, tables: tuple[str, ...]) -> list[Any]:
    return [db.sql(f"select * from {t} order by id") for t in tables]


def test_two_roots_feed_one_subscriber(
    tmp_path, make_db, provider_cluster, third_cluster, subscriber_cluster
):
    src_a, src_b = make_db(provider_cluster, "ra"), make_db(third_cluster, "rb")
    dst = make_db(subscriber_cluster, "merged")
    src_a.sql(SCHEMA_A)
    src_b.sql(SCHEMA_B)
    dst.sql(SCHEMA_A + SCHEMA_B)
    src_a.sql("insert into a_cust select i, 'c' || i from generate_series(1, 50) i")
    src_a.sql(
        "insert into a_order (cust_id, amount) select i % 50 + 1, i from generate_series(1, 500) i"
    )
    src_b.sql(
        "insert into b_event select gen_random_uuid(), now(), '{}' from generate_series(1, 300)"
    )
    root_a = job_ini(tmp_path, "root_a", src_a.dsn, queue="qa")
    root_b = job_ini(tmp_path, "root_b", src_b.dsn, queue="qb")
    leaf_a = job_ini(tmp_path, "leaf_a", dst.dsn, queue="qa")
    leaf_b = job_ini(tmp_path, "leaf_b", dst.dsn, queue="qb")
    for ini, name in ((root_a, "ra"), (root_b, "rb")):
        ok(str(ini), "create-root", name)
        ok(str(ini), "add-table", "--all")
    ok(str(leaf_a), "create-leaf", "merged_a", f"--provider={src_a.dsn}")
    ok(str(leaf_a), "add-table", "--all")

    procs = [spawn("ticker", str(ticker(tmp_path, "a", src_a))),
             spawn("ticker", str(ticker(tmp_path, "b", src_b))),
             spawn(str(leaf_a), "worker")]  # fmt: skip
    loads = [Load(src_a.dsn, LOAD_A), Load(src_b.dsn, LOAD_B)]
    try:
        for load in loads:
            load.start()
        time.sleep(1)
        # the second queue's leaf joins the same database while the first worker applies
        ok(str(leaf_b), "create-leaf", "merged_b", f"--provider={src_b.dsn}")
        ok(str(leaf_b), "add-table", "--all")
        procs.append(spawn(str(leaf_b), "worker"))
        time.sleep(5)
        for load in loads:
            load.done.set()
            load.join(30)
        assert all(load.commits > 20 for load in loads)

        def merged() -> bool:
            want = content(src_a, A_TABLES) + content(src_b, B_TABLES)
            return content(dst, A_TABLES + B_TABLES) == want

        wait_for("subscriber == union of both roots", merged, timeout=60)
        # each queue is its own node in the same database
        infos = [json.loads(ok(str(ini), "node-info", "--json")) for ini in (leaf_a, leaf_b)]
        assert [(i["queue_name"], i["node_name"], i["provider_node"]) for i in infos] == [
            ("qa", "merged_a", "ra"),
            ("qb", "merged_b", "rb"),
        ]
        assert all(i["cur_error"] is None for i in infos)
    finally:
        for load in loads:
            load.done.set()
        for proc in procs:
            with contextlib.suppress(Exception):
                stop(proc)
