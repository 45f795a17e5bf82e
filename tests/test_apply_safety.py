"""What the worker does to the subscriber's own tables (review findings 7 and 13): a replayed
TRUNCATE never cascades into a table only the subscriber has, and a constraint whose name is
an SQL keyword comes back after the initial copy. Root and leaf are made and run through the
CLI, as a user does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from londiste_rs.waiting import wait_for

Q = "aq"


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def nodes(tmp_path: Path, provider_db: Any, subscriber_db: Any) -> tuple[str, str]:
    inis = []
    for name, db in (("root", provider_db), ("leaf", subscriber_db)):
        path = tmp_path / f"{name}.ini"
        path.write_text(
            f"[londiste3]\ndb = {db.dsn}\nqueue_name = {Q}\nloop_delay = 0\n"
            f"exception_sleep = 0.2\nlogfile = {tmp_path}/{name}.log\n"
            f"pidfile = {tmp_path}/{name}.pid\n"
        )
        inis.append(str(path))
    root, leaf = inis
    cli(root, "create-root", "root")
    cli(leaf, "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    return root, leaf


def tick(db: Any) -> None:
    db.sql(f"select londiste_rs.force_tick('{Q}')")
    db.sql(f"select londiste_rs.ticker('{Q}')")


def count(db: Any, table: str) -> int:
    return int(db.sql(f"select count(*) from {table}")[0][0])


TABLES = """
create table public.orders (id int primary key, item text);
create table public.lines (id int primary key, order_id int references public.orders, qty int);
"""


def test_replayed_truncate_does_not_empty_subscriber_only_tables(
    tmp_path, provider_db, subscriber_db
):
    """E8: a leaf-only table referencing a replicated one keeps its rows; the worker stops with
    the fix named, and goes on once it is applied."""
    provider_db.sql(TABLES + "insert into orders values (1, 'pen'), (2, 'ink');"
                    "insert into lines values (1, 1, 5), (2, 2, 7)")  # fmt: skip
    subscriber_db.sql(
        TABLES + "create table public.leaf_notes"
        " (id int primary key, order_id int references public.orders, note text)"
    )
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    cli(root, "add-table", "public.orders", "public.lines")
    cli(leaf, "add-table", "public.orders", "public.lines")
    cli(leaf, "worker")  # the initial copy
    subscriber_db.sql(
        "insert into leaf_notes select g, 1 + g % 2, 'note' from generate_series(1, 5) g"
    )

    # one provider statement truncates both tables (lines references orders)
    provider_db.sql("truncate orders, lines")
    provider_db.sql("insert into orders values (3, 'cap')")
    tick(provider_db)
    worker = subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", leaf, "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "the worker to apply the batch or record its error",
            lambda: (
                count(subscriber_db, "orders") != 2
                or subscriber_db.sql("select cur_error from londiste_rs.local_state")[0][0]
            ),
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert count(subscriber_db, "leaf_notes") == 5
    error = subscriber_db.sql("select cur_error from londiste_rs.local_state")[0][0]
    assert error and "\n" not in error
    assert "public.leaf_notes references it (foreign key leaf_notes_order_id_fkey)" in error
    assert "ALTER TABLE public.leaf_notes DROP CONSTRAINT leaf_notes_order_id_fkey" in error
    assert count(subscriber_db, "orders") == 2  # the batch was not applied

    # the fix the error names; the batch then applies, both tables truncated together
    subscriber_db.sql("alter table public.leaf_notes drop constraint leaf_notes_order_id_fkey")
    cli(leaf, "worker")
    assert subscriber_db.sql("select * from orders") == [(3, "cap")]
    assert count(subscriber_db, "lines") == 0
    assert count(subscriber_db, "leaf_notes") == 5


def test_keyword_constraint_names_are_restored_after_the_copy(tmp_path, provider_db, subscriber_db):
    """E14: a key and a foreign key named like SQL keywords are dropped for the copy and come
    back, validated, under the same names."""
    provider_db.sql(
        "create table public.orders (id int primary key, item text);"
        "insert into orders select g, 'item' || g from generate_series(1, 50) g"
    )
    subscriber_db.sql(
        'create table public.orders (id int constraint "order" primary key, item text);'
        "create table public.leaf_notes (id int primary key, order_id int,"
        ' constraint "user" foreign key (order_id) references public.orders)'
    )
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    cli(root, "add-table", "public.orders")
    cli(leaf, "add-table", "public.orders")
    cli(leaf, "worker")
    states = subscriber_db.sql(
        "select merge_state, dropped_ddl from londiste_rs.table_info where local"
    )
    assert states == [("ok", None)]
    constraints = subscriber_db.sql(
        "select conname::text, contype::text, convalidated from pg_constraint"
        " where conrelid in ('public.orders'::regclass, 'public.leaf_notes'::regclass)"
        " and contype <> 'n' order by 1"  # 18's NOT NULLs are never dropped for the copy
    )
    assert constraints == [("leaf_notes_pkey", "p", True), ("order", "p", True),
                           ("user", "f", True)]  # fmt: skip
    assert count(subscriber_db, "orders") == 50
