"""compare and repair: a leaf against its root at one consistent point, through the real CLI,
with the leaf's worker running as a real process and writes going on at the root."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from londiste_rs.devtools.processes import spawn_cli, stop_gracefully
from tests.fix_cli import job_ini, ok, one_line_error, run_cli

SCHEMA = """
create table items (id int primary key, name text, price numeric(10,2),
                    doubled int generated always as (id * 2) stored);
create table pairs (a int, b text, note text, primary key (a, b));
"""
ROWS = 12_000  # more than compare's row level: the bisection runs


def _fill(db) -> None:
    db.sql(
        SCHEMA + f"insert into items (id, name, price) select g, 'item ' || g, g / 10.0"
        f" from generate_series(1, {ROWS}) g;"
        "insert into pairs select g % 50, 'b' || g, null from generate_series(1, 3000) g;"
    )


@contextlib.contextmanager
def _cascade(tmp_path: Path, provider_db, subscriber_db) -> Iterator[tuple[Path, Path]]:
    _fill(provider_db)
    subscriber_db.sql(SCHEMA)
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn, lock_timeout=20)
    ok(str(root), "create-root", "root", provider_db.dsn)
    ok(str(leaf), "create-leaf", "leaf", subscriber_db.dsn, f"--provider={provider_db.dsn}")
    ok(str(root), "add-table", "--all")
    ok(str(leaf), "add-table", "--all")
    worker = spawn_cli(str(leaf), "worker")
    try:
        ok(str(leaf), "wait-sync", "--timeout", "60")
        yield root, leaf
    finally:
        stop_gracefully(worker)


def _compare(leaf: Path) -> tuple[int, list[dict]]:
    out = run_cli(str(leaf), "compare", "--json")
    assert "Traceback" not in out.stderr and out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


class Writer(threading.Thread):
    """Updates and inserts on the root while compare runs: none may show as a difference."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.done, self.commits = dsn, threading.Event(), 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            n = 0
            while not self.done.is_set():
                n += 1
                conn.execute("update items set price = price + 1 where id = %s", [n % ROWS + 1])
                conn.execute("insert into pairs values (%s, 'w' || %s::text, 'x')", [n, n])
                self.commits += 1


def test_compare_names_the_differing_rows_and_repair_fixes_them(
    tmp_path, provider_db, subscriber_db
):
    with _cascade(tmp_path, provider_db, subscriber_db) as (_root, leaf):
        code, tables = _compare(leaf)
        assert code == 0, tables
        assert {t["table"]: (t["equal"], t["provider_rows"]) for t in tables} == {
            "public.items": (True, ROWS),
            "public.pairs": (True, 3000),
        }
        # the leaf drifts: one row gone, one extra, one changed (a generated column's input)
        subscriber_db.sql(
            "delete from items where id = 7000; insert into items (id, name) values (-5, 'x');"
            "update items set name = 'changed' where id = 11;"
            "update pairs set note = 'here' where a = 3 and b = 'b53'"
        )
        code, tables = _compare(leaf)
        assert code == 1
        items = next(t for t in tables if t["table"] == "public.items")
        pairs = next(t for t in tables if t["table"] == "public.pairs")
        assert (items["missing_here"], items["extra_here"]) == ([["7000"]], [["-5"]])
        assert items["different"] == [["11"]]
        assert (items["provider_rows"], items["local_rows"]) == (ROWS, ROWS)
        assert pairs["different"] == [["3", "b53"]] and not pairs["missing_here"]
        text = run_cli(str(leaf), "compare", "public.items")
        assert text.returncode == 1
        assert "missing here: (7000)" in text.stdout and "extra here: (-5)" in text.stdout
        assert "different: (11)" in text.stdout

        dry = ok(str(leaf), "repair", "--dry-run")
        assert "DELETE FROM ONLY" in dry and "INSERT INTO" in dry
        assert _compare(leaf)[0] == 1  # a dry run changes nothing
        out = ok(str(leaf), "repair")
        assert "public.items: repaired 1 missing, 1 extra, 1 different rows" in out
        code, tables = _compare(leaf)
        assert code == 0, tables
        # and the repaired rows go on replicating
        provider_db.sql("update items set name = 'after' where id in (7000, 11)")
        assert _compare(leaf)[0] == 0
        assert subscriber_db.sql("select name from items where id = 7000") == [("after",)]


def test_writes_racing_the_consistent_point_are_not_differences(
    tmp_path, provider_db, subscriber_db
):
    with _cascade(tmp_path, provider_db, subscriber_db) as (_root, leaf):
        writer = Writer(provider_db.dsn)
        writer.start()
        try:
            time.sleep(0.3)
            for _ in range(2):
                code, tables = _compare(leaf)
                assert code == 0, tables
        finally:
            writer.done.set()
            writer.join()
        assert writer.commits > 0


def test_a_node_whose_worker_does_not_run_gives_one_line_and_leaves_nothing_locked(
    tmp_path, provider_db, subscriber_db
):
    with _cascade(tmp_path, provider_db, subscriber_db) as (_root, _leaf):
        pass  # the worker is stopped now
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn, lock_timeout=1)
    started = time.monotonic()
    out = run_cli(str(leaf), "compare")
    assert out.returncode == 2
    assert "within lock_timeout" in one_line_error(out)
    assert time.monotonic() - started < 30
    # nothing stays locked or paused: the root takes writes at once, the leaf is not paused
    with psycopg.connect(provider_db.dsn, autocommit=True) as conn:
        conn.execute("set lock_timeout = '1s'")
        conn.execute("update items set name = 'free' where id = 1")
    assert json.loads(ok(str(leaf), "node-info", "--json"))["paused"] is False
