"""Tables through the CLI on two separate clusters: add-table with globs, quoted mixed-case names
and --create-full, the worker's initial copy while the provider keeps writing (ranges read in
parallel), a failing copy next to a good one and resync, remove-table, missing, wait-sync."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from londiste_rs import daemon
from londiste_rs.config import load_job_config
from londiste_rs.replication.worker import Worker
from londiste_rs.tables import copy_round, initial_copy
from tests.fix_cli import job_ini, needs_attention, ok, one_line_error, run_cli
from tests.fix_nodes import drain, nodes, tick


def table_states(ini: str) -> dict[str, dict[str, Any]]:
    return {t["table_name"]: t for t in json.loads(ok(ini, "tables", "--json"))}


def content(db: Any, table: str) -> list[tuple[Any, ...]]:
    return db.sql(f"select * from {table} order by 1")


MIXED = """
create table a (id int primary key, v text);
create table "Mixed Case" ("Id" int primary key, "Some Value" text);
create schema other;
create table other.x (id int primary key);
"""


def test_add_table_globs_quoted_names_missing_and_remove(tmp_path, provider_db, subscriber_db):
    provider_db.sql(
        MIXED + "insert into a values (1, 'one'); insert into \"Mixed Case\" values (7, 's')"
    )
    subscriber_db.sql(MIXED)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)

    out = ok(root, "add-table", "public.*")
    assert "Table added: public.a" in out and 'Table added: public."Mixed Case"' in out
    # a name that does not exist, anywhere: one line naming it
    msg = one_line_error(run_cli(root, "add-table", "public.nope"))
    assert "'public.nope' does not exist" in msg
    assert "mixed-case" in one_line_error(run_cli(root, "add-table", "Mixed Case"))
    # the leaf cannot take a table its root does not replicate
    msg = one_line_error(run_cli(leaf, "add-table", "other.x"))
    assert "not replicated by provider master" in msg and "add it there first" in msg
    # options that make no sense on a root are refused
    assert "--create" in one_line_error(run_cli(root, "add-table", "other.x", "--create"))

    assert ok(root, "missing").split() == ["table", "other.x"]
    assert sorted(ok(leaf, "missing").splitlines()) == [
        'table public."Mixed Case"',
        "table public.a",
    ]
    out = ok(leaf, "add-table", 'public."Mixed Case"')
    assert out.strip() == 'Table added: public."Mixed Case"'
    ok(root, "add-table", "other.*")
    assert ok(leaf, "add-table", "--all").split("\n")[:2] == [
        "Table added: other.x",
        "Table added: public.a",
    ]
    assert ok(leaf, "add-table", "--all").strip() == "nothing to do"
    assert ok(leaf, "missing") == "" and ok(root, "missing") == ""
    states = table_states(leaf)
    assert {t: s["state"] for t, s in states.items()} == dict.fromkeys(
        ["other.x", 'public."Mixed Case"', "public.a"], "needs-copy"
    )

    # wait-sync with no worker: bounded, one line
    assert "not in sync" in one_line_error(run_cli(leaf, "wait-sync", "--timeout", "0.5"))
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        assert "all 3 tables in sync" in ok(leaf, "wait-sync", "--timeout", "5")
        provider_db.sql(
            "update \"Mixed Case\" set \"Some Value\" = 'changed'; insert into a values (2, 'two')"
        )
        tick(provider_db)
        drain(worker)
        for table in ("a", '"Mixed Case"', "other.x"):
            assert content(subscriber_db, table) == content(provider_db, table), table

        # remove-table: the leaf stops applying it, the root stops capturing it
        assert ok(leaf, "remove-table", 'public."Mixed Case"').strip() == (
            'Table removed: public."Mixed Case"'
        )
        assert ok(leaf, "missing").strip() == 'table public."Mixed Case"'
        assert "Table removed: public.a" in ok(root, "remove-table", "public.a")
        assert provider_db.sql("select count(*) from pg_trigger where tgrelid = 'a'::regclass") == [
            (0,)
        ]
        provider_db.sql(
            "insert into a values (3, 'three'); insert into \"Mixed Case\" values (8, 'n')"
        )
        tick(provider_db)
        drain(worker)
        assert content(subscriber_db, '"Mixed Case"') == [(7, "changed")]
        assert len(content(subscriber_db, "a")) == 2
        msg = one_line_error(run_cli(leaf, "remove-table", "public.nope"))
        assert "'public.nope' is not one of node slave's tables" in msg
    finally:
        worker.close()


FULL = """
create table items (
    id bigint generated always as identity (start with 100 increment by 5) primary key,
    code serial,
    name text not null default 'x' check (name <> ''),
    price numeric(10, 2),
    total numeric generated always as (price * 2) stored,
    unique (name, price)
);
create index items_price on items (price);
"""


def test_create_full_on_empty_subscriber(tmp_path, provider_db, subscriber_db):
    provider_db.sql(
        FULL + "insert into items (name, price) select 'n' || g, g from generate_series(1, 50) g"
    )
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "--all")
    msg = one_line_error(run_cli(leaf, "add-table", "items"))
    assert "does not exist" in msg and "--create" in msg
    ok(leaf, "add-table", "--all", "--create-full")
    # the sequences behind the serial and the identity column exist, at the provider's values
    assert subscriber_db.sql("select nextval('items_code_seq')") == [(51,)]
    assert subscriber_db.sql("select nextval(pg_get_serial_sequence('items', 'id'))") == [(350,)]
    assert subscriber_db.sql("select count(*) from pg_indexes where tablename = 'items'") == [(3,)]
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        provider_db.sql("insert into items (name, price) values ('new', 1.5)")
        tick(provider_db)
        drain(worker)
        assert content(subscriber_db, "items") == content(provider_db, "items")
        # the indexes dropped for the load are back
        assert subscriber_db.sql("select count(*) from pg_indexes where tablename = 'items'") == [
            (3,)
        ]
    finally:
        worker.close()


SHOP = """
create table customers (id int primary key, name text);
create table orders (id int primary key, cust int not null references customers, total int);
create table lines (id int primary key, ord int not null references orders,
                    parent int references lines on delete cascade);
"""
SHOP_ROWS = """
insert into customers select g, 'c' || g from generate_series(1, 50) g;
insert into orders select g, g % 50 + 1, g from generate_series(1, 500) g;
insert into lines select g, g % 500 + 1, nullif(g / 2, 0) from generate_series(1, 2000) g;
"""


def _fkeys(db: Any) -> list[tuple[str, str, bool]]:
    return db.sql(
        "select conname::text, pg_get_constraintdef(oid), convalidated from pg_constraint"
        " where contype = 'f' and connamespace = 'public'::regnamespace order by 1"
    )


def test_create_full_creates_foreign_keys(tmp_path, provider_db, subscriber_db):
    """--create-full creates the foreign keys too, after every table (lines references
    orders, created after it); the copy drops and restores them, the apply keeps them."""
    provider_db.sql(SHOP + SHOP_ROWS)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, parallel_copies=2)
    ok(root, "add-table", "--all")
    out = run_cli(leaf, "add-table", "--all", "--create-full")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert _fkeys(subscriber_db) == _fkeys(provider_db) and len(_fkeys(provider_db)) == 3
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        assert {s["state"] for s in table_states(leaf).values()} == {"ok"}
        assert _fkeys(subscriber_db) == _fkeys(provider_db)  # restored and validated
        provider_db.sql(
            "insert into customers values (51, 'new'); insert into orders values (501, 51, 1);"
            "insert into lines values (2001, 501, 2000); delete from lines where id = 1"
        )
        tick(provider_db)
        drain(worker)
        for table in ("customers", "orders", "lines"):
            assert content(subscriber_db, table) == content(provider_db, table)
    finally:
        worker.close()


def test_create_full_skips_a_foreign_key_to_a_missing_table(tmp_path, provider_db, subscriber_db):
    provider_db.sql(SHOP)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "--all")
    out = run_cli(leaf, "add-table", "orders", "lines", "--create-full")
    assert out.returncode == 0, out.stderr
    warning = [line for line in out.stderr.splitlines() if line.strip()]
    assert warning == [
        "public.orders: foreign key orders_cust_fkey not created: public.customers is not on the "
        "subscriber; add that table too (add-table --create-full), then create the key by hand: "
        'ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_cust_fkey" FOREIGN KEY (cust) '
        "REFERENCES public.customers(id)"
    ]
    assert [k[0] for k in _fkeys(subscriber_db)] == ["lines_ord_fkey", "lines_parent_fkey"]
    assert "Table added: public.orders" in out.stdout


def test_copy_in_ranges_while_the_provider_writes(
    tmp_path, provider_db, subscriber_db, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="londiste_rs.tables.initial_copy")
    schema = "create table big (id int primary key, v int, pad text);"
    provider_db.sql(
        schema + "insert into big select g, 0, repeat('p', 200) from generate_series(1, 60000) g"
    )
    provider_db.sql("analyze big")
    subscriber_db.sql(schema)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "big")
    ok(leaf, "add-table", "big")
    monkeypatch.setattr(initial_copy, "MIN_RANGE_BYTES", 1 << 20)  # ~16 MB table: 4 ranges

    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        rnd = random.Random(5)
        with provider_db.connect() as conn:
            n = 60000
            while not stop.is_set():
                with conn.transaction():
                    n += 1
                    conn.execute("insert into big values (%s, 1, 'new')", [n])
                    conn.execute("update big set v = v + 1 where id = %s", [rnd.randint(1, n)])
                    conn.execute("delete from big where id = %s", [rnd.randint(1, n)])
                writes[0] += 1
                if writes[0] % 20 == 0:
                    conn.execute("select londiste_rs.force_tick('q1')")
                    conn.execute("select londiste_rs.ticker('q1')")

    thread = threading.Thread(target=writer)
    thread.start()
    worker = Worker(load_job_config(Path(leaf)))
    try:
        before = writes[0]
        assert worker.step()  # the copy, while the writer goes on
        during = writes[0] - before
        state = table_states(leaf)["public.big"]
        assert state["state"] == "ok" and state["copy_rows"] >= 60000 - during
        assert state["copy_bytes"] > 10 << 20
        for _ in range(5):
            worker.step()
    finally:
        stop.set()
        thread.join()
    try:
        assert during > 0, "the writer did not write during the copy"
        tick(provider_db)
        drain(worker)
        assert content(subscriber_db, "big") == content(provider_db, "big")
    finally:
        worker.close()
    # read in four ctid ranges under one snapshot
    assert "4 range(s)" in caplog.text


TWO = """
create table good (id int primary key, v text);
create table bad (id int primary key, v text);
"""


def test_one_failing_copy_does_not_stop_the_other_and_resync(tmp_path, provider_db, subscriber_db):
    provider_db.sql(TWO + "insert into good select g, 'g' from generate_series(1, 1000) g;"
                    "insert into bad select g, 'b' || g from generate_series(1, 10) g")  # fmt: skip
    subscriber_db.sql(
        TWO.replace("bad (id int primary key, v text)", "bad (id int primary key, v int)")
    )
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, parallel_copies=2)
    ok(root, "add-table", "--all")
    ok(leaf, "add-table", "--all")
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        states = table_states(leaf)
        assert states["public.good"]["state"] == "ok"
        assert states["public.bad"]["state"] == "failed"
        assert (
            "column 'v' of public.bad is text on the provider but integer"
            in (states["public.bad"]["copy_error"])
        )
        text = ok(leaf, "tables")
        assert "public.bad failed" in text and "ERR: " in text
        assert "public.good ok  copy 1,000 rows" in text
        status = needs_attention(leaf, "status")
        assert "Tables: 1/1/0" in status and "ERR: 1 table copies failed" in status
        msg = one_line_error(run_cli(leaf, "wait-sync", "--timeout", "5"))
        assert "copy of public.bad failed" in msg and "resync public.bad" in msg
        # the good table replicates meanwhile
        provider_db.sql("update good set v = 'h' where id < 10; update bad set v = 'c'")
        tick(provider_db)
        drain(worker)
        assert content(subscriber_db, "good") == content(provider_db, "good")

        subscriber_db.sql("alter table bad alter column v type text")
        assert ok(leaf, "resync", "bad").strip() == "Table to copy again: public.bad"
        assert table_states(leaf)["public.bad"]["state"] == "needs-copy"
        drain(worker)
        assert ok(leaf, "wait-sync", "--timeout", "5").splitlines()[-1] == "all 2 tables in sync"
        provider_db.sql("delete from bad where id = 1")
        tick(provider_db)
        drain(worker)
        for table in ("good", "bad"):
            assert content(subscriber_db, table) == content(provider_db, table)
        # resync of a table the node does not have; and on a root
        assert "not one of" in one_line_error(run_cli(leaf, "resync", "nope"))
        assert "branch or leaf" in one_line_error(run_cli(root, "resync", "--all"))
    finally:
        worker.close()


@pytest.mark.parametrize("verb", ["add-table", "remove-table", "resync", "add-seq"])
def test_verbs_need_names(tmp_path, provider_db, verb):
    root = str(job_ini(tmp_path, "master", provider_db.dsn))
    ok(root, "create-root", "master")
    assert "--all" in one_line_error(run_cli(root, verb))


def test_dest_table_skip_truncate_and_expect_sync(tmp_path, provider_db, subscriber_db):
    provider_db.sql(
        TWO + "insert into good values (1, 'a'), (2, 'b'); insert into bad values (5, 'e')"
    )
    subscriber_db.sql(
        "create table renamed (id int primary key, v text); insert into renamed values (9, 'old');"
        "create table bad (id int primary key, v text); insert into bad values (5, 'e');"
    )
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "--all")
    msg = one_line_error(run_cli(leaf, "add-table", "--all", "--dest-table", "renamed"))
    assert "--dest-table needs exactly one new table, not 2" in msg
    ok(leaf, "add-table", "good", "--dest-table", "renamed", "--skip-truncate")
    ok(leaf, "add-table", "bad", "--expect-sync")
    states = table_states(leaf)
    assert states["public.good"]["dest_table"] == "public.renamed"
    assert states["public.good"]["skip_truncate"] and states["public.bad"]["state"] == "ok"
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        provider_db.sql("insert into good values (3, 'c'); update bad set v = 'f'")
        tick(provider_db)
        drain(worker)
        # the local row stays (no truncate), the provider's rows arrive in the renamed table
        assert content(subscriber_db, "renamed") == [(1, "a"), (2, "b"), (3, "c"), (9, "old")]
        assert content(subscriber_db, "bad") == [(5, "f")]
        assert table_states(leaf)["public.good"]["copy_rows"] == 2
    finally:
        worker.close()


def test_key_dropped_for_the_copy_and_broken_by_the_rows_fails_the_table(
    tmp_path, provider_db, subscriber_db
):
    """The worker builds a table's keys after the data; a key the copied rows break fails the
    table (never 'ok' without its key), stays recorded, and comes back with a resync."""
    provider_db.sql(
        "create table k (id int, v text, primary key (id, v));"
        "insert into k select g % 500, 'v' || g from generate_series(1, 1000) g"
    )
    subscriber_db.sql(
        "create table k (id int primary key, v text); create index k_v on k (v);"
        "create table r (kid int references k)"
    )
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "k")
    ok(leaf, "add-table", "k")
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        state = table_states(leaf)["public.k"]
        assert state["state"] == "failed"
        assert "k_pkey" in state["copy_error"] and "resync public.k" in state["copy_error"]
        # the plain index came back; the key and the foreign key on it wait in dropped_ddl
        assert subscriber_db.sql("select count(*) from pg_indexes where indexname = 'k_v'")[0][0]
        kept = subscriber_db.sql("select dropped_ddl from londiste_rs.table_info")[0][0]
        assert sorted(i["kind"] for i in kept) == ["fkey", "key"]

        # the provider's rows made to fit the subscriber's key (1000 rows on 500 ids)
        provider_db.sql("delete from k where (id, v) in (select id, max(v) from k group by id)")
        ok(leaf, "resync", "k")
        drain(worker)
        assert table_states(leaf)["public.k"]["state"] == "ok"
        assert content(subscriber_db, "k") == content(provider_db, "k")
        assert (
            subscriber_db.sql(
                "select count(*) from pg_constraint where conname in ('k_pkey', 'r_kid_fkey')"
            )[0][0]
            == 2
        )
        assert subscriber_db.sql("select dropped_ddl from londiste_rs.table_info")[0][0] is None
    finally:
        worker.close()


CHAIN = """
create table heads (id int primary key, boss int references heads);
create table lines (id int primary key, head int not null references heads, v text);
create index lines_head on lines (head);
create table notes (id int primary key, line int references lines);
"""


def _constraints(db: Any) -> list[tuple[str, bool]]:
    return db.sql(
        "select conname::text, convalidated from pg_constraint"
        " where connamespace = 'public'::regnamespace and contype <> 'n' order by 1"
    )  # 18's NOT NULLs (contype 'n') are never dropped for a load


def test_foreign_keys_between_copied_tables_come_back_validated(
    tmp_path, provider_db, subscriber_db
):
    """Each table is rebuilt in its own copy thread; a foreign key between two of them is
    restored (and validated) by the later one, also one from a table the round does not copy."""
    provider_db.sql(
        CHAIN + "insert into heads select g, nullif(g % 10, 0) from generate_series(1, 300) g;"
        "insert into lines select g, g % 300 + 1, 'l' || g from generate_series(1, 5000) g;"
        "insert into notes select g, g from generate_series(1, 2000) g"
    )
    subscriber_db.sql(CHAIN + "create table local_refs (head int references heads)")
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, parallel_copies=3)
    ok(root, "add-table", "--all")
    ok(leaf, "add-table", "--all")
    before = _constraints(subscriber_db)
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        assert {s["state"] for s in table_states(leaf).values()} == {"ok"}
        assert _constraints(subscriber_db) == before and all(v for _, v in before)
        assert subscriber_db.sql(
            "select count(*) from pg_indexes where indexname = 'lines_head'"
        ) == [(1,)]
        assert subscriber_db.sql(
            "select count(*) from londiste_rs.table_info where dropped_ddl is not null"
        ) == [(0,)]
        for table in ("heads", "lines", "notes"):
            assert content(subscriber_db, table) == content(provider_db, table)
    finally:
        worker.close()


class _Crash(BaseException):
    """A crash of the worker: nothing after it runs (no `finally` work either)."""


KINDS = """
create table kinds (id int primary key, parent int references kinds);
create table items (id int primary key, kind int not null references kinds, v text);
create index items_kind on items (kind);
"""


def test_a_copy_round_cut_by_a_crash_is_repaired_by_the_next(
    tmp_path, provider_db, subscriber_db, monkeypatch
):
    """The larger table is copied first and is 'ok' at once; its foreign key to the table still
    copying is handed to that one's record. A crash during that copy leaves it 'in-copy' with
    what was dropped recorded; the next round copies it again and restores everything."""
    provider_db.sql(
        KINDS + "insert into kinds select g, null from generate_series(1, 100) g;"
        "insert into items select g, g % 100 + 1, 'i' || g from generate_series(1, 5000) g"
    )
    subscriber_db.sql(KINDS)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "--all")
    ok(leaf, "add-table", "--all")
    before = _constraints(subscriber_db)
    real = initial_copy.copy_table

    def crash_on_kinds(src_dsn: str, dst_dsn: str, table: Any, **kw: Any) -> Any:
        if str(table) == "public.kinds":
            raise _Crash
        return real(src_dsn, dst_dsn, table, **kw)

    crashed: list[Any] = []

    def crash(self: Any) -> None:
        crashed.append(self)
        raise _Crash

    monkeypatch.setattr(initial_copy, "copy_table", crash_on_kinds)
    monkeypatch.setattr(copy_round._Round, "close", crash)  # the end of the round never runs
    worker = Worker(load_job_config(Path(leaf)))
    with pytest.raises(_Crash):
        worker.step()
    worker.close()
    for round_ in crashed:  # what the server does when a crashed worker's sessions end
        round_.conns.close()
    monkeypatch.undo()
    states = table_states(leaf)
    assert states["public.items"]["state"] == "ok"
    assert states["public.kinds"]["state"] == "in-copy"
    dropped = dict(subscriber_db.sql("select table_name, dropped_ddl from londiste_rs.table_info"))
    assert dropped["public.items"] is None
    assert sorted((i["kind"], i["name"]) for i in dropped["public.kinds"]) == [
        ("fkey", "items_kind_fkey"), ("fkey", "kinds_parent_fkey"), ("key", "kinds_pkey"),
    ]  # fmt: skip
    assert [c for c, _ in _constraints(subscriber_db)] == ["items_pkey"]
    assert subscriber_db.sql("select count(*) from pg_indexes where indexname = 'items_kind'") == [
        (1,)
    ]

    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        assert table_states(leaf)["public.kinds"]["state"] == "ok"
        assert _constraints(subscriber_db) == before and all(v for _, v in before)
        assert subscriber_db.sql(
            "select count(*) from londiste_rs.table_info where dropped_ddl is not null"
        ) == [(0,)]
        assert content(subscriber_db, "kinds") == content(provider_db, "kinds")
    finally:
        worker.close()


def test_add_table_and_resync_wake_the_idle_worker(tmp_path, provider_db, subscriber_db):
    """The worker's idle sleep ends when add-table or resync commits (NOTIFY), not after
    loop_delay."""
    provider_db.sql("create table w (id int primary key); insert into w values (1), (2)")
    subscriber_db.sql("create table w (id int primary key)")
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "w")
    worker = Worker(load_job_config(Path(leaf)))
    try:
        drain(worker)
        local = worker._local()
        for verb in ("add-table", "resync"):
            ok(leaf, verb, "w")
            started = time.monotonic()
            assert daemon.sleep(30, also=local.fileno())
            assert time.monotonic() - started < 5
            assert worker.step()  # the copy
            assert table_states(leaf)["public.w"]["state"] == "ok"
            drain(worker)
        # consumed: an idle sleep lasts its time again
        started = time.monotonic()
        daemon.sleep(0.3, also=local.fileno())
        assert time.monotonic() - started >= 0.25
        assert content(subscriber_db, "w") == [(1,), (2,)]
    finally:
        worker.close()
