"""The worker on a leaf: initial copy, exactly-once apply through the Rust decoder, the
exact-order fallback, FK-linked tables, identity and generated columns, user triggers, rows
over 1 MB, tick batching — all against two separate real clusters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from londiste_rs.config import load_job_config
from londiste_rs.devtools.processes import spawn_cli as spawn
from londiste_rs.devtools.processes import stop_gracefully
from londiste_rs.replication.worker import Worker
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok
from tests.fix_nodes import drain, nodes, tick

SCHEMA = """
create table parent (id int primary key, name text unique, big text);
create table child (id bigint generated always as identity primary key,
                    parent_id int not null references parent,
                    qty int, doubled int generated always as (qty * 2) stored);
create table "Odd Name" ("Key" text primary key, "v a l" jsonb);
"""


def rows(db: Any, table: str) -> list[tuple[Any, ...]]:
    return db.sql(f"select * from {table} order by 1")


def setup_leaf(tmp_path: Path, provider_db: Any, subscriber_db: Any) -> Worker:
    provider_db.sql(SCHEMA)
    subscriber_db.sql(SCHEMA)
    provider_db.sql("insert into parent values (1, 'one', null), (2, 'two', null)")
    provider_db.sql("insert into child (parent_id, qty) values (1, 10), (2, 20)")
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "--all")
    ok(leaf, "add-table", "--all")
    return Worker(load_job_config(leaf))


def assert_equal(provider_db: Any, subscriber_db: Any) -> None:
    for table in ("parent", "child", '"Odd Name"'):
        assert rows(subscriber_db, table) == rows(provider_db, table), table


def test_leaf_copies_then_replays_exactly(tmp_path, provider_db, subscriber_db):
    worker = setup_leaf(tmp_path, provider_db, subscriber_db)
    try:
        drain(worker)  # the initial copy
        assert_equal(provider_db, subscriber_db)
        big = "x" * (3 << 20)
        provider_db.sql(
            f"""
            insert into parent values (3, 'three', '{big}');
            insert into child (parent_id, qty) values (3, 30), (3, 31);
            update parent set name = 'uno' where id = 1;
            delete from child where parent_id = 2;
            delete from parent where id = 2;
            insert into "Odd Name" values ('k''1', '{{"a": [1, 2]}}');
            """
        )
        tick(provider_db)
        drain(worker)
        assert_equal(provider_db, subscriber_db)
        # a key change and a unique value moving between rows inside one batch
        provider_db.sql(
            """
            begin;
            update parent set name = 'tmp' where id = 1;
            update parent set name = 'uno' where id = 3;
            update parent set name = 'three' where id = 1;
            update "Odd Name" set "Key" = 'k2' where "Key" = 'k''1';
            commit;
            """
        )
        tick(provider_db)
        drain(worker)
        assert_equal(provider_db, subscriber_db)
        # truncate is replayed
        provider_db.sql('truncate "Odd Name"')
        tick(provider_db)
        drain(worker)
        assert_equal(provider_db, subscriber_db)
        assert rows(subscriber_db, "parent")[-1][2] == big
    finally:
        worker.close()


def test_restart_after_local_commit_does_not_apply_twice(tmp_path, provider_db, subscriber_db):
    worker = setup_leaf(tmp_path, provider_db, subscriber_db)
    try:
        drain(worker)
        before = provider_db.sql("select sub_last_tick from londiste_rs.subscription")[0][0]
        for _ in range(3):  # one batch spanning three ticks
            provider_db.sql("update child set qty = qty + 1")
            tick(provider_db)
        # simulate a crash after the local commit and before the provider's finish_batch:
        # apply, then put the provider's consumer back where it was
        drain(worker)
        provider_db.sql(f"select londiste_rs.register_consumer_at('q1', 'slave', {before})")
        provider_db.sql("update child set qty = qty + 1")  # and a tick not applied yet
        tick(provider_db)
        drain(worker)  # the span up to its last tick is finished, not applied again
        assert_equal(provider_db, subscriber_db)
        lost = provider_db.sql("select sub_last_tick from londiste_rs.subscription")[0][0]
        assert lost > before
    finally:
        worker.close()


def test_several_ticks_are_applied_in_one_transaction(tmp_path, provider_db, subscriber_db):
    worker = setup_leaf(tmp_path, provider_db, subscriber_db)
    try:
        drain(worker)
        for i in range(5):
            provider_db.sql(f"update child set qty = {i}")
            tick(provider_db)
        assert worker.step() is True  # one step applies all five ticks
        head = provider_db.sql("select max(tick_id) from londiste_rs.tick")[0][0]
        assert subscriber_db.sql("select last_tick_id from londiste_rs.local_state") == [(head,)]
        assert_equal(provider_db, subscriber_db)
    finally:
        worker.close()


def test_a_not_valid_check_does_not_refuse_the_copy(tmp_path, provider_db, subscriber_db):
    # Old rows on the provider break a CHECK made NOT VALID after them; the subscriber's
    # table has the same constraint (as pg_dump writes it). The copy round loads them anyway
    # and the constraint is back afterwards, NOT VALID, refusing new rows that break it.
    for db in (provider_db, subscriber_db):
        db.sql("create table nc (id int primary key, a int)")
        db.sql("alter table nc add constraint a_pos check (a > 0) not valid")
    provider_db.sql("alter table nc drop constraint a_pos")
    provider_db.sql("insert into nc values (1, -5)")
    provider_db.sql("alter table nc add constraint a_pos check (a > 0) not valid")
    provider_db.sql("insert into nc values (2, 7)")
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    ok(root, "add-table", "nc")
    ok(leaf, "add-table", "nc")
    worker = Worker(load_job_config(leaf))
    try:
        drain(worker)
        assert rows(subscriber_db, "nc") == [(1, -5), (2, 7)]
        state = "select merge_state from londiste_rs.table_info where table_name = 'public.nc'"
        assert subscriber_db.sql(state) == [("ok",)]
        con = "select convalidated from pg_constraint where conname = 'a_pos'"
        assert subscriber_db.sql(con) == [(False,)]
        provider_db.sql("update nc set a = 8 where id = 2")
        tick(provider_db)
        drain(worker)
        assert rows(subscriber_db, "nc") == [(1, -5), (2, 8)]
    finally:
        worker.close()


def test_user_trigger_on_subscriber_sees_net_change(tmp_path, provider_db, subscriber_db):
    worker = setup_leaf(tmp_path, provider_db, subscriber_db)
    # the worker applies with search_path pg_catalog, pg_temp: the trigger qualifies its names
    subscriber_db.sql(
        """
        create table audit (op text, id int);
        create function audit_fn() returns trigger language plpgsql as $$
        begin insert into public.audit values (tg_op, coalesce(new.id, old.id)); return null;
        end $$;
        create trigger audit after insert or update or delete on parent
            for each row execute function audit_fn();
        """
    )
    try:
        drain(worker)
        subscriber_db.sql("delete from audit")
        provider_db.sql("insert into parent values (7, 'seven', null)")
        provider_db.sql("update parent set big = 'a' where id = 7")
        provider_db.sql("update parent set big = 'b' where id = 7")
        tick(provider_db)
        drain(worker)
        assert_equal(provider_db, subscriber_db)
        # three events, one net change: the row arrives once
        assert subscriber_db.sql("select op, id from audit") == [("INSERT", 7)]
    finally:
        worker.close()


def test_non_key_identity_always_column(tmp_path, provider_db, subscriber_db):
    """A GENERATED ALWAYS identity column outside the key: ordinary updates apply as updates,
    and a `SET col = DEFAULT` on the provider (the only way it changes) reaches the subscriber."""
    worker = setup_leaf(tmp_path, provider_db, subscriber_db)
    ddl = (
        "create table ticket (code text primary key, n bigint generated always as identity, v int)"
    )
    provider_db.sql(ddl)
    subscriber_db.sql(ddl)
    try:
        provider_db.sql("insert into ticket (code, v) values ('a', 1), ('b', 2)")
        ok(str(tmp_path / "master.ini"), "add-table", "ticket")
        ok(str(tmp_path / "slave.ini"), "add-table", "ticket")
        drain(worker)
        provider_db.sql("update ticket set v = v + 10")
        provider_db.sql("update ticket set n = default where code = 'b'")
        provider_db.sql("insert into ticket (code, v) values ('c', 3)")
        tick(provider_db)
        drain(worker)
        assert rows(subscriber_db, "ticket") == rows(provider_db, "ticket")
        assert rows(provider_db, "ticket")[1][1] == 3  # b got a new identity value
    finally:
        worker.close()


def test_an_idle_worker_wakes_on_a_tick_not_at_its_next_poll(tmp_path, provider_db, subscriber_db):
    """Every tick is notified: a worker polling only every 600 s (loop_delay) still applies a
    change right after its tick. Each wait below is far shorter than one poll."""
    setup_leaf(tmp_path, provider_db, subscriber_db).close()
    leaf = tmp_path / "slave.ini"
    leaf.write_text(leaf.read_text().replace("loop_delay = 0.1", "loop_delay = 600"))
    worker = spawn(str(leaf), "worker")
    try:
        wait_for("the copy", lambda: rows(subscriber_db, "parent") == rows(provider_db, "parent"),
                 timeout=60)  # fmt: skip
        tick(provider_db)
        time.sleep(1)  # the worker has applied that tick and is idle, for 600 s
        provider_db.sql("update parent set name = 'woken' where id = 1")
        tick(provider_db)
        wait_for("the change", lambda: rows(subscriber_db, "parent") == rows(provider_db, "parent"),
                 timeout=60)  # fmt: skip
        assert worker.poll() is None
    finally:
        stop_gracefully(worker)


def test_a_worker_whose_node_is_made_again_goes_on_within_seconds(tmp_path, provider_db):
    """A running worker whose node is dropped waits for it, looking every second rather
    than at a permanent error's slow retry: made again, it is worked on at once."""
    root = str(job_ini(tmp_path, "master", provider_db.dsn))
    ok(root, "create-root", "master")
    worker = spawn(root, "worker")
    position = "select last_tick_id from londiste_rs.local_state where queue_name = 'q1'"
    try:
        last = tick(provider_db)
        wait_for("the root's position", lambda: provider_db.sql(position) == [(last,)])
        ok(root, "drop-node", "master")
        log = tmp_path / "log/master.log"
        wait_for("the worker to miss its node", lambda: "is not a node of queue q1" in
                 log.read_text(), timeout=30)  # fmt: skip
        ok(root, "create-root", "master")
        last = tick(provider_db)
        wait_for("the position in the new node", lambda: provider_db.sql(position) == [(last,)],
                 timeout=5)  # fmt: skip
        assert worker.poll() is None
    finally:
        stop_gracefully(worker)
