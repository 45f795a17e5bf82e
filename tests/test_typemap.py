"""User-defined types between clusters whose OIDs differ: enums, arrays of enums, composites
(with enum fields), arrays of composites and domains over enums replicate root -> leaf through
the worker, whose decoder rewrites the OIDs embedded in array and composite values with the
type map (`layout.type_map`)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from londiste_rs._native import StepKind
from londiste_rs.config import load_job_config
from londiste_rs.replication import apply
from londiste_rs.replication.worker import Worker
from tests.fix_cli import job_ini, ok
from tests.fix_nodes import drain, tick

TABLE = """
create table t (id int primary key, m mood, ms mood[], p pt, ps pt[], d dmood, ds dmood[],
                nested pt_box[]);
"""
# The same types, created in a different order (and with fillers) on each side.
PROVIDER_TYPES = """
create type mood as enum ('sad', 'ok', 'happy');
create domain dmood as mood check (value <> 'sad');
create type pt as (x int, m mood, tags mood[]);
create type pt_box as (inner_pt pt, n int);
"""
SUBSCRIBER_TYPES = """
create type filler1 as enum ('a');
create type filler2 as (a int, b text);
create type mood as enum ('sad', 'ok', 'happy');
create type filler3 as enum ('b');
create type pt as (x int, m mood, tags mood[]);
create type pt_box as (inner_pt pt, n int);
create domain dmood as mood check (value <> 'sad');
"""

ROWS = """
insert into t values
  (1, 'ok', '{sad,happy}', row(1, 'happy', '{ok,ok}'), array[row(2, 'sad', '{}')::pt,
   row(3, null, null)::pt, null], 'ok', '{happy,ok}',
   array[row(row(4, 'ok', '{happy}')::pt, 5)::pt_box]),
  (2, null, '{}', null, '{}', null, null, null),
  (3, 'sad', array[null, 'ok']::mood[], row(null, null, '{sad}'), null, 'happy', '{}',
   '{}')
"""


def rows(db: Any) -> list[str]:
    return [r[0] for r in db.sql("select t::text from t order by id")]


OIDS = "select 'mood'::regtype::int8, 'pt'::regtype::int8, 'pt_box'::regtype::int8"


def test_user_types_replicate_across_clusters_with_different_oids(
    tmp_path: Path, provider_db: Any, subscriber_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider_db.sql(PROVIDER_TYPES + TABLE)
    subscriber_db.sql(SUBSCRIBER_TYPES + TABLE)
    src_oids, dst_oids = provider_db.sql(OIDS)[0], subscriber_db.sql(OIDS)[0]
    assert src_oids != dst_oids
    # PostgreSQL 15's array_recv/record_recv accept a foreign user-type OID inside a value, so
    # equal rows alone would not show the rewriting: look at what the apply COPYs.
    payloads: list[bytes] = []
    real_step = apply._apply_step

    def spy(conn: Any, by_name: Any, step: Any, stats: Any, staged: Any) -> None:
        if step.kind in (StepKind.UPSERT, StepKind.UPDATE, StepKind.INSERT):
            payloads.append(step.payload)
        real_step(conn, by_name, step, stats, staged)

    monkeypatch.setattr(apply, "_apply_step", spy)
    provider_db.sql(ROWS)
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    ok(str(root), "add-table", "--all")
    ok(str(leaf), "add-table", "--all")
    worker = Worker(load_job_config(leaf))
    try:
        drain(worker)  # the initial copy (binary COPY, then the events)
        assert rows(subscriber_db) == rows(provider_db)
        provider_db.sql(
            """
            insert into t values (4, 'happy', '{happy}', row(9, 'ok', '{sad}'),
                                  array[row(8, 'happy', '{ok}')::pt], 'ok', '{ok}',
                                  array[row(row(7, 'sad', '{sad,ok}')::pt, 1)::pt_box, null]);
            update t set ms = ms || 'ok'::mood, ps = ps || row(0, 'ok', '{}')::pt where id = 1;
            update t set id = 20, nested = array[row(null, 2)::pt_box] where id = 2;
            delete from t where id = 3;
            """
        )
        tick(provider_db)
        drain(worker)
        assert rows(subscriber_db) == rows(provider_db)
        # the values the subscriber received carry its own OIDs, not the provider's
        assert payloads
        data = b"".join(payloads)
        # every user type's OID on the subscriber (arrays' too): a source OID equal to one of
        # them may rightly be in the data
        theirs = {
            int(r[0]) for r in subscriber_db.sql("select oid::int8 from pg_type where oid >= 16384")
        }
        for src, dst in zip(src_oids, dst_oids, strict=True):
            assert struct.pack("!I", dst) in data
            if src not in theirs:
                assert struct.pack("!I", src) not in data
    finally:
        worker.close()
