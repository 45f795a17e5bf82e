"""Invariant I7: a table whose columns change on the provider while its events are queued never
gets values shifted into other columns (security review E9, E10): the worker refuses those
events with the event, the table and the fix, records it for `status`, and resync recovers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from londiste_rs.config import load_job_config
from londiste_rs.errors import DecodeError
from londiste_rs.replication.worker import Worker
from tests.fix_cli import job_ini, ok
from tests.fix_nodes import drain, tick

SCHEMA = "create table t_shift (id int primary key, a int, b int);"


def _leaf(tmp_path: Path, provider_db: Any, subscriber_db: Any) -> tuple[Path, Worker]:
    provider_db.sql(SCHEMA + "insert into t_shift values (0, 1, 2)")
    subscriber_db.sql(SCHEMA)
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    ok(str(root), "add-table", "--all")
    ok(str(leaf), "add-table", "--all")
    worker = Worker(load_job_config(leaf))
    drain(worker)
    return leaf, worker


def test_drop_and_add_column_with_events_queued_never_shifts_values(
    tmp_path, provider_db, subscriber_db
):
    leaf, worker = _leaf(tmp_path, provider_db, subscriber_db)
    try:
        provider_db.sql("insert into t_shift values (1, 10, 20)")  # captured as (id, a, b)
        tick(provider_db)
        # both sides change the table the same way, the event still queued
        for db in (provider_db, subscriber_db):
            db.sql("alter table t_shift drop column a; alter table t_shift add column c int")
        provider_db.sql("insert into t_shift values (2, 200, 2)")  # captured as (id, b, c)
        tick(provider_db)
        worker.close()  # a new session: plans from the tables as they are now
        with pytest.raises(DecodeError) as e:
            worker.step()
        message = str(e.value)
        assert "table public.t_shift had other columns when this event was captured" in message
        assert "run resync public.t_shift" in message
        # nothing was applied: no (1, b=10, c=20)
        assert subscriber_db.sql("select id, b, c from t_shift order by id") == [(0, 2, None)]
        # the running worker records it where status shows it, and does not exit
        worker.close()
        worker.cfg = load_job_config(leaf)
        ok(str(leaf), "resync", "public.t_shift")
        drain(worker)
        assert subscriber_db.sql("select id, b, c from t_shift order by id") == provider_db.sql(
            "select id, b, c from t_shift order by id"
        )
    finally:
        worker.close()


def test_a_column_type_changed_with_events_queued_is_refused(tmp_path, provider_db, subscriber_db):
    _leaf_ini, worker = _leaf(tmp_path, provider_db, subscriber_db)
    try:
        provider_db.sql("insert into t_shift values (1, 10, 20)")
        tick(provider_db)
        for db in (provider_db, subscriber_db):
            db.sql("alter table t_shift alter column b type text")
        provider_db.sql("insert into t_shift values (2, 3, 'x')")
        tick(provider_db)
        worker.close()
        with pytest.raises(DecodeError, match=r"public\.t_shift"):
            worker.step()
        assert subscriber_db.sql("select count(*) from t_shift") == [(1,)]
    finally:
        worker.close()


def test_a_worker_records_the_refusal_for_status_and_keeps_running(
    tmp_path, provider_db, subscriber_db
):
    leaf, worker = _leaf(tmp_path, provider_db, subscriber_db)
    worker.close()
    provider_db.sql("insert into t_shift values (1, 10, 20)")
    tick(provider_db)
    for db in (provider_db, subscriber_db):
        db.sql("alter table t_shift drop column a; alter table t_shift add column c int")
    from londiste_rs.devtools.processes import spawn_cli, stop_gracefully
    from londiste_rs.waiting import wait_for

    proc = spawn_cli(str(leaf), "worker")
    try:

        def recorded() -> str | None:
            info = json.loads(ok(str(leaf), "node-info", "--json"))
            error: str | None = info["cur_error"]
            return error

        error = wait_for("the refusal in node-info", recorded, timeout=60)
        assert "had other columns when this event was captured" in error
        assert proc.poll() is None  # still running: it looks again later
    finally:
        stop_gracefully(proc)


@pytest.mark.parametrize(
    "change",
    [
        "alter table t_shift drop column a; alter table t_shift add column c int",
        "alter table t_shift drop column a",
        "alter table t_shift add column c int default 7",
    ],
)
def test_rows_captured_after_a_change_carry_the_new_shape(
    tmp_path, provider_db, subscriber_db, change
):
    """The capture function is not generated again by an ALTER TABLE; its rows still carry
    the table's shape of the moment, so a subscriber changed the same way goes on."""
    _leaf_ini, worker = _leaf(tmp_path, provider_db, subscriber_db)
    try:
        for db in (provider_db, subscriber_db):
            db.sql(change)
        provider_db.sql("insert into t_shift (id, b) values (1, 10); update t_shift set b = 3")
        tick(provider_db)
        worker.close()  # plans from the tables as they are now
        drain(worker)
        query = "select * from t_shift order by id"
        assert subscriber_db.sql(query) == provider_db.sql(query)
        assert len(subscriber_db.sql(query)) == 2
    finally:
        worker.close()
