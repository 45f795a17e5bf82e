"""Across major versions, on every run: a root on one PostgreSQL major, a branch on the other and
a leaf on the first again (15 -> 18 -> 15 and 18 -> 15 -> 18), with real ticker and worker
processes. Covered end to end: `--create-full` (branch and leaf), `--create` (leaf), the initial
copy, the replay of every type family (enums, domains, composites, arrays, ranges,
multiranges, hstore), a primary-key update, TRUNCATE, sequences, `compare` at both links, and
`takeover` by the branch: the new major becomes the root and the old one follows it, the way
back. On 18, a table with a VIRTUAL generated column and a uuidv7() default goes through the
15 node (created STORED there, the default left out, each said in one line)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.devtools.processes import spawn_cli, stop_gracefully
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok, run_cli

pytestmark = pytest.mark.usefixtures("kill_leftover_daemons")

# What every node needs before --create-full: the types (created by hand, as the docs say).
TYPES = """
create extension hstore;
create type mood as enum ('sad', 'ok', 'happy');
create domain dmood as mood check (value <> 'sad');
create type pt as (x int, m mood, tags mood[]);
"""
TABLES = """
create table t (id int primary key, m mood, ms mood[], p pt, d dmood, r int4range,
                rs tstzrange[], mr int4multirange, h hstore, hs hstore[],
                note text not null default 'none',
                twice int generated always as (id * 2) stored);
create table counters (id bigserial primary key, v int not null);
"""
# PostgreSQL 18's own: a VIRTUAL generated column (18's default kind) and a uuidv7() default.
TABLES_18 = """
create table v18 (id int primary key, a int not null, tripled int generated always as (a * 3),
                  u uuid not null default uuidv7());
"""
ROWS = """
insert into t (id, m, ms, p, d, r, rs, mr, h, hs) select g, 'ok', '{sad,happy}',
  row(g, 'happy', '{ok}')::pt, 'happy', int4range(g, g + 10), array[tstzrange('2025-01-01', null)],
  int4multirange(int4range(1, 3), int4range(g + 5, g + 9)), hstore('k', g::text),
  array[hstore('a', null), ''] from generate_series(1, 300) g;
insert into counters (v) select g from generate_series(1, 50) g;
"""
CHANGES = """
update t set m = 'sad', ms = ms || 'ok'::mood, p = row(-1, null, '{}')::pt, r = '[,5)',
             mr = '{}', h = h || hstore('k2', 'x y'), note = 'changed' where id % 7 = 0;
update t set id = id + 1000 where id between 10 and 15;
delete from t where id between 20 and 24;
insert into t (id, rs, hs) values (5000, '{}', null);
truncate counters;
insert into counters (v) select g from generate_series(1, 20) g;
"""
CHANGES_18 = """
insert into v18 (id, a) select g, g from generate_series(1, 40) g;
update v18 set a = a + 1 where id % 3 = 0;
update v18 set id = id + 100 where id = 1;
"""


def content(db: Any, *, with_18: bool) -> list[list[Any]]:
    tables = ["t", "counters", *(["v18"] if with_18 else [])]
    return [db.sql(f"select x::text from {t} x order by id") for t in tables]


def ticker_ini(tmp_path: Path, name: str, db: Any) -> Path:
    params = conninfo_to_dict(db.dsn)
    params.pop("dbname")
    path = tmp_path / f"ticker_{name}.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\ndatabase_list = {db.name}\n"
        f"ticker_period = 0.1\nlogfile = {tmp_path}/log/ticker_{name}.log\n"
        f"pidfile = {tmp_path}/pid/ticker_{name}.pid\n"
    )
    return path


@contextlib.contextmanager
def processes() -> Iterator[list[Any]]:
    procs: list[Any] = []
    try:
        yield procs
    finally:
        for proc in procs:
            stop_gracefully(proc)


def create(ini: Path, full: list[str], minimal: list[str]) -> str:
    """add-table --create-full of `full`, --create of `minimal`, add-seq --create of counters'
    sequence; returns the warnings --create-full printed."""
    out = run_cli(str(ini), "add-table", *full, "--create-full")
    assert out.returncode == 0, out.stderr
    if minimal:
        ok(str(ini), "add-table", *minimal, "--create")
    ok(str(ini), "add-seq", "public.counters_id_seq", "--create")
    return out.stderr


def node_info(ini: Path) -> dict[str, Any]:
    return dict(json.loads(ok(str(ini), "node-info", "--json")))


def compare_is_clean(ini: Path) -> None:
    out = run_cli(str(ini), "compare", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert {t["table"] for t in json.loads(out.stdout)} >= {"public.t", "public.counters"}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(15, 18, marks=pytest.mark.pg_versions(provider=15, subscriber=18, third=15)),
        pytest.param(18, 15, marks=pytest.mark.pg_versions(provider=18, subscriber=15, third=18)),
    ],
    ids=["15-18-15", "18-15-18"],
)
def test_root_branch_leaf_across_majors_then_takeover(
    old, new, tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster
):
    root_db, branch_db, leaf_db = (make_db(provider_cluster, "root"),
                                   make_db(subscriber_cluster, "branch"),
                                   make_db(third_cluster, "leaf"))  # fmt: skip
    assert [db.sql("show server_version_num")[0][0][:2] for db in (root_db, branch_db, leaf_db)] \
        == [str(old), str(new), str(old)]  # fmt: skip
    with_18 = old == 18
    root_db.sql(TYPES + TABLES + (TABLES_18 if with_18 else "") + ROWS)
    branch_db.sql(TYPES)
    leaf_db.sql(TYPES)
    root, branch, leaf = (job_ini(tmp_path, "root", root_db.dsn),
                          job_ini(tmp_path, "branch", branch_db.dsn, takeover_max_lag=10),
                          job_ini(tmp_path, "leaf", leaf_db.dsn))  # fmt: skip
    ok(str(root), "create-root", "root", root_db.dsn)
    ok(str(root), "add-table", "--all")
    ok(str(root), "add-seq", "public.counters_id_seq")
    ok(str(branch), "create-branch", "branch", branch_db.dsn, f"--provider={root_db.dsn}")
    full = ["t", "v18"] if with_18 else ["t"]
    # the branch, the root to be, gets everything; the leaf gets counters' columns and key only
    warned = create(branch, [*full, "counters"], [])
    ok(str(leaf), "create-leaf", "leaf", leaf_db.dsn, f"--provider={branch_db.dsn}")
    create(leaf, full, ["counters"])

    if with_18:  # 18 -> 15: what 15 lacks, said in one line each; 15 -> 18: what 15 has
        assert (
            "public.v18: generated column tripled is VIRTUAL on the provider; PostgreSQL 15 has "
            "only STORED ones, so it is created STORED here" in warned
        ), warned
        assert "public.v18: default uuidv7() of column u left out: PostgreSQL 15" in warned
        assert branch_db.sql(
            "select attgenerated::text from pg_attribute where attrelid = 'v18'::regclass"
            " and attname = 'tripled'"
        ) == [("s",)]
    assert leaf_db.sql(
        "select attname::text, attgenerated::text from pg_attribute where attrelid = 't'::regclass"
        " and attgenerated <> '' order by 1"
    ) == [("twice", "s")]

    with processes() as procs:
        for name, ini, db in (("root", root, root_db), ("branch", branch, branch_db)):
            procs.append(spawn_cli("ticker", str(ticker_ini(tmp_path, name, db))))
            procs.append(spawn_cli(str(ini), "worker"))
        procs.append(spawn_cli(str(leaf), "worker"))
        ok(str(branch), "wait-sync", "--timeout", "60")
        ok(str(leaf), "wait-sync", "--timeout", "60")

        root_db.sql(CHANGES + (CHANGES_18 if with_18 else ""))
        want = content(root_db, with_18=with_18)
        for db in (branch_db, leaf_db):
            wait_for(f"{db.name} to equal the root",
                     lambda db=db: content(db, with_18=with_18) == want, timeout=60)  # fmt: skip
        assert len(want[0]) == 296 and len(want[1]) == 20
        # the sequence went along: the leaf's is where the root's is (synced at a tick)
        seq = "select last_value from counters_id_seq"
        wait_for("the sequence on the leaf", lambda: leaf_db.sql(seq) == root_db.sql(seq),
                 timeout=60)  # fmt: skip
        compare_is_clean(branch)
        compare_is_clean(leaf)

        # the branch (the other major) takes over: it is the root now, the old root follows it
        out = ok(str(branch), "takeover", "root")
        assert "takeover of root by branch (queue q1): done" in out, out
        assert node_info(branch)["node_type"] == "root"
        assert node_info(root)["provider_node"] == "branch"
        branch_db.sql("insert into t (id, note) values (7000, 'written on the new root')")
        branch_db.sql("insert into counters (v) values (-1)")
        want = content(branch_db, with_18=with_18)
        for db in (root_db, leaf_db):
            wait_for(f"{db.name} to follow the new root",
                     lambda db=db: content(db, with_18=with_18) == want, timeout=60)  # fmt: skip
        compare_is_clean(root)
