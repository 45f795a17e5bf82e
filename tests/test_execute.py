"""Schema changes while replicating (issue #13): `execute` runs a file on the root and queues
it in the same transaction, so every branch and leaf runs it at exactly that point of the
stream; a change made without execute stops a node with one clear line and the fix. All of
it on three real clusters, root -> branch -> leaf, owned by a non-superuser."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.config import load_job_config
from londiste_rs.devtools.processes import spawn_cli, stop_gracefully
from londiste_rs.errors import DecodeError, TableError
from londiste_rs.replication.shapes import column_shapes
from londiste_rs.replication.worker import Worker
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok, one_line_error, run_cli

# -- helpers (small copies, so this file stands alone) ----------------------------------------


def tick(db: Any) -> None:
    db.sql("select londiste_rs.force_tick('q1')")
    db.sql("select londiste_rs.ticker('q1')")


def drain(*workers: Worker) -> None:
    for _ in range(200):
        if not any([w.step() for w in workers]):
            return
    raise AssertionError("workers did not become idle")


def rows(db: Any, table: str = "t") -> list[tuple[Any, ...]]:
    return db.sql(f"select * from {table} order by 1")


def columns(db: Any, table: str = "t") -> list[tuple[str, str]]:
    return db.sql(
        "select attname::text, format_type(atttypid, atttypmod) from pg_attribute"
        f" where attrelid = '{table}'::regclass and attnum > 0 and not attisdropped"
        " order by attnum"
    )


def sql_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


SCHEMA = "create table t (id int primary key, v int not null, s text, old int);"


@dataclass
class Cascade:
    root_db: Any
    branch_db: Any
    leaf_db: Any
    root: Path
    branch: Path
    leaf: Path

    @property
    def dbs(self) -> list[Any]:
        return [self.root_db, self.branch_db, self.leaf_db]

    def workers(self) -> tuple[Worker, Worker]:
        return Worker(load_job_config(self.branch)), Worker(load_job_config(self.leaf))

    def assert_equal(self, *tables: str) -> None:
        for table in tables or ("t",):
            want = rows(self.root_db, table)
            assert rows(self.branch_db, table) == want, table
            assert rows(self.leaf_db, table) == want, table
            assert columns(self.leaf_db, table) == columns(self.root_db, table), table


def make_cascade(tmp_path: Path, make_db: Any, clusters: list[Any], **extra: Any) -> Cascade:
    dbs = [make_db(c) for c in clusters]
    for db in dbs:
        db.sql(SCHEMA)
    dbs[0].sql("insert into t select i, i, 's' || i, i from generate_series(1, 50) i")
    c = Cascade(
        *dbs,
        job_ini(tmp_path, "root", dbs[0].dsn, **extra),
        job_ini(tmp_path, "branch", dbs[1].dsn, **extra),
        job_ini(tmp_path, "leaf", dbs[2].dsn, **extra),
    )
    ok(str(c.root), "create-root", "root")
    ok(str(c.root), "add-table", "--all")
    ok(str(c.branch), "create-branch", "branch", f"--provider={dbs[0].dsn}")
    ok(str(c.branch), "add-table", "--all")
    ok(str(c.leaf), "create-leaf", "leaf", f"--provider={dbs[1].dsn}")
    ok(str(c.leaf), "add-table", "--all")
    return c


@pytest.fixture
def cascade(tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster) -> Cascade:
    return make_cascade(tmp_path, make_db, [provider_cluster, subscriber_cluster, third_cluster])


# -- execute ----------------------------------------------------------------------------------

# (file, statements, writes on the root after it in the same batch)
CHANGES = [
    ("add_c.sql", "alter table t add column c int;", "insert into t (id, v, c) values (101, 1, 7);"
     " update t set c = id where id < 5"),
    ("add_d.sql", "alter table t add column d text not null default 'dflt';",
     "insert into t (id, v, d) values (102, 2, 'own'); update t set d = 'u' where id = 3"),
    ("drop_old.sql", "alter table t drop column old;", "insert into t (id, v) values (103, 3);"
     " update t set v = v + 1 where id = 4"),
    ("rename.sql", "alter table t rename column s to label;",
     "insert into t (id, v, label) values (104, 4, 'l'); update t set label = 'x' where id = 5"),
    ("retype.sql", "alter table t alter column c type bigint;",
     "insert into t (id, v, c) values (105, 5, 9000000000); update t set c = -c where id < 3"),
    ("index.sql", "create index t_c_idx on t (c);\ncreate unique index t_label_key on t (label);",
     "update t set c = 1 where id = 6"),
    ("check.sql", "alter table t add constraint t_v_positive check (v > 0);",
     "insert into t (id, v) values (106, 6)"),
    ("uncheck.sql", "alter table t drop constraint t_v_positive;",
     "insert into t (id, v) values (107, -7)"),
    ("backfill.sql", "alter table t add column e int;\nupdate t set e = v * 2;",
     "insert into t (id, v, e) values (108, 8, 80)"),
]  # fmt: skip


def test_each_change_applies_at_its_place_in_the_stream_on_every_node(tmp_path, cascade):
    c = cascade
    bw, lw = c.workers()
    try:
        drain(bw, lw)
        c.assert_equal()
        for n, (name, statements, after) in enumerate(CHANGES):
            # rows before the change, the change, rows after it: one batch for every node
            c.root_db.sql(f"update t set v = v + 1 where id % 7 = {n % 7}")
            c.root_db.sql(f"delete from t where id = {10 + n}")
            out = ok(str(c.root), "execute", str(sql_file(tmp_path, name, statements)))
            assert f"{name}: executed" in out and "queued for every node" in out
            c.root_db.sql(after)
            tick(c.root_db)
            if n % 2:  # new sessions: plans from the provider's catalog as it is now
                bw.close()
                lw.close()
            drain(bw, lw)
            c.assert_equal()
        # the backfill's own UPDATE ran on each node, not applied again from the root's rows
        assert [r[0] for r in c.leaf_db.sql("select count(*) from t where e = v * 2")] == [
            c.root_db.sql("select count(*) from t where e = v * 2")[0][0]
        ]
        for db in c.dbs:
            assert db.sql("select count(*) from pg_indexes where indexname = 't_c_idx'") == [(1,)]
            files = db.sql("select execute_file, outcome from londiste_rs.applied_execute")
            assert sorted(files) == sorted((f, "executed") for f, _, _ in CHANGES)
        # a batch the set-based apply cannot do (unique labels swapped) around a file: it is
        # applied again in exact order, the file with it, once
        c.root_db.sql("update t set label = 'L' || id where id in (20, 21)")
        tick(c.root_db)
        drain(bw, lw)
        swap = (
            "update t set label = null where id = 20; update t set label = 'L20' where id = 21;"
            " update t set label = 'L21' where id = 20"
        )
        c.root_db.sql(f"do $$ begin {swap}; end $$")
        ok(str(c.root), "execute", str(sql_file(tmp_path, "add_f.sql", "alter table t add f int;")))
        c.root_db.sql("update t set f = 1 where id = 20")
        tick(c.root_db)
        drain(bw, lw)
        c.assert_equal()
        assert c.leaf_db.sql("select label from t where id in (20, 21) order by id") == [
            ("L21",),
            ("L20",),
        ]
        outcome = "select outcome from londiste_rs.applied_execute where execute_file = 'add_f.sql'"
        assert [db.sql(outcome) for db in c.dbs] == [[("executed",)]] * 3
        # no re-copy anywhere: the table stayed in sync throughout
        for db in c.dbs[1:]:
            assert db.sql("select merge_state from londiste_rs.table_info") == [("ok",)]
        # a new table, then add-table: it replicates like any other
        new = "create table u (id int primary key, t_id int references t, x text);"
        ok(str(c.root), "execute", str(sql_file(tmp_path, "new_table.sql", new)))
        tick(c.root_db)
        drain(bw, lw)
        c.root_db.sql("insert into u select i, i + 20, 'x' from generate_series(1, 20) i")
        for ini in (c.root, c.branch, c.leaf):
            ok(str(ini), "add-table", "public.u")
        c.root_db.sql("update u set x = 'y' where id < 5")
        tick(c.root_db)
        drain(bw, lw)
        c.assert_equal("t", "u")
    finally:
        bw.close()
        lw.close()


def test_a_stream_stopped_early_leaves_the_provider_connection_usable(provider_db):
    from londiste_rs.pg.db import connect
    from londiste_rs.pg.libpq import read_copy

    with connect(provider_db.dsn, autocommit=True, what="provider") as conn:
        for n in (10, 300_000):  # read to its end by the read-ahead already, or not
            with suppress(RuntimeError), conn.transaction():
                query = f"copy (select generate_series(1, {n})) to stdout (format binary)"
                blocks = read_copy(conn, query.encode(), 1 << 16)
                next(blocks)
                time.sleep(0.2)
                blocks.close()  # what a stop at a barrier does
                raise RuntimeError("stop")
            assert conn.execute("select 1").fetchone() == (1,)


def test_the_shape_of_column_lists_is_table_shape(provider_db):
    provider_db.sql(SCHEMA.replace("old int", '"Odd ""Name""" numeric(10,2)[], "order" text'))
    with provider_db.connect() as conn:
        from londiste_rs.store.schema import install

        install(conn)
        want = conn.execute("select londiste_rs.table_shape('t')").fetchone()[0]
        cols = conn.execute(
            "select attname::text, format_type(atttypid, atttypmod) from pg_attribute"
            " where attrelid = 't'::regclass and attnum > 0 and not attisdropped order by attnum"
        ).fetchall()
        assert column_shapes(conn, [cols, cols[:2]]) == [
            want,
            conn.execute("select md5('id integer, v integer')").fetchone()[0],
        ]


def test_header_attributes_decide_per_node_and_name_the_local_table(tmp_path, cascade):
    c = cascade
    c.root_db.sql("create table t2 (id int primary key, x text)")
    c.branch_db.sql("create table t2_local (id int primary key, x text)")  # another name there
    c.root_db.sql("insert into t2 values (1, 'a'), (2, 'b')")
    ok(str(c.root), "add-table", "public.t2")
    ok(str(c.branch), "add-table", "public.t2", "--dest-table=public.t2_local")
    # the leaf replicates only t and has no t2 at all
    bw, lw = c.workers()
    try:
        drain(bw, lw)
        add_z = sql_file(tmp_path, "add_z.sql", (
            "-- adds z where t2 is replicated\n--*-- Local-Table: t2\n"
            "alter table @t2@ add column z int;\nupdate @t2@ set z = id * 10;\n"
        ))  # fmt: skip
        c.root_db.sql("create table root_only (id int)")
        comment = sql_file(tmp_path, "comment.sql", (
            "--*-- Need-Table: public.t2,\n--*--   public.root_only\n"
            "comment on table t2 is 'has z';\n"
        ))  # fmt: skip
        c.root_db.sql("update t2 set x = 'before' where id = 1")
        out = ok(str(c.root), "execute", str(add_z), str(comment))
        assert "add_z.sql: executed 2 statements" in out
        assert "comment.sql: executed 1 statements" in out
        c.root_db.sql("insert into t2 values (3, 'after', 33)")
        c.root_db.sql("update t set v = -v where id = 1")
        tick(c.root_db)
        drain(bw, lw)
        # the branch ran add_z on its own table; the leaf did not need either file
        assert rows(c.branch_db, "t2_local") == rows(c.root_db, "t2")
        assert rows(c.root_db, "t2") == [(1, "before", 10), (2, "b", 20), (3, "after", 33)]
        c.assert_equal()
        outcome = "select execute_file, outcome from londiste_rs.applied_execute order by 1"
        assert c.branch_db.sql(outcome) == [
            ("add_z.sql", "executed"),
            ("comment.sql", "not needed"),
        ]
        assert c.leaf_db.sql(outcome) == [
            ("add_z.sql", "not needed"),
            ("comment.sql", "not needed"),
        ]
        # attributes that match a node only in part are refused there, before anything runs
        partial = sql_file(tmp_path, "partial.sql", "--*-- Local-Table: t, t3\nselect 1;\n")
        msg = one_line_error(run_cli(str(c.root), "execute", str(partial)))
        assert "partial.sql: its attributes match this node only in part" in msg
        assert c.root_db.sql("select count(*) from londiste_rs.applied_execute") == [(2,)]
    finally:
        bw.close()
        lw.close()


def test_execute_is_refused_clearly_and_runs_once_per_file(tmp_path, cascade):
    c = cascade
    bw, lw = c.workers()
    try:
        drain(bw, lw)
        bump = sql_file(tmp_path, "bump.sql", "update t set v = v + 1000 where id <= 3;")
        # not the root: one line naming the fix
        msg = one_line_error(run_cli(str(c.leaf), "execute", str(bump)))
        assert "'execute' runs files on the root" in msg and "execute --skip" in msg
        # transaction control, unterminated quoting, a missing file: refused before running
        for name, text, want in [
            ("tx.sql", "alter table t add x int;\ncommit;", "statement 2 (line 2: commit) ends"),
            ("quote.sql", "select 'abc;", "a string literal starting on line 1 never ends"),
        ]:
            msg = one_line_error(
                run_cli(str(c.root), "execute", str(sql_file(tmp_path, name, text)))
            )
            assert want in msg, msg
        msg = one_line_error(run_cli(str(c.root), "execute", str(tmp_path / "nope.sql")))
        assert "nope.sql: no such file" in msg
        # a failing statement: nothing of any file is applied, recorded or queued
        bad = sql_file(
            tmp_path, "bad.sql", "alter table t add column y int;\nalter table t drop column nope;"
        )
        before = c.root_db.sql("select count(*) from londiste_rs.event_1")
        msg = one_line_error(run_cli(str(c.root), "execute", str(bump), str(bad)))
        assert "bad.sql: statement 2 (line 2: alter table t drop column nope) failed" in msg
        assert "nothing was applied or queued" in msg
        assert [col for col, _ in columns(c.root_db)] == ["id", "v", "s", "old"]
        assert c.root_db.sql("select count(*) from londiste_rs.event_1") == before
        assert c.root_db.sql("select v from t where id = 1") == [(1,)]
        # once by name: a second run is skipped, --force runs it again on every node
        ok(str(c.root), "execute", str(bump))
        again = ok(str(c.root), "execute", str(bump))
        assert "bump.sql: already applied on this node (executed" in again and "--force" in again
        ok(str(c.root), "execute", "--force", str(bump))
        tick(c.root_db)
        drain(bw, lw)
        assert c.root_db.sql("select v from t where id <= 3 order by id") == [
            (2001,),
            (2002,),
            (2003,),
        ]
        c.assert_equal()
        msg = one_line_error(run_cli(str(c.root), "execute", "--force", "--skip", str(bump)))
        assert "--force and --skip exclude each other" in msg
    finally:
        bw.close()
        lw.close()


# -- real processes: a ticker and the workers as daemons would run them -----------------------


def ticker_ini(tmp_path: Path, c: Cascade) -> Path:
    params = conninfo_to_dict(c.root_db.dsn)
    params.pop("dbname")
    path = tmp_path / "ticker.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\n"
        f"database_list = {c.root_db.name}\nticker_period = 0.1\n"
        f"logfile = {tmp_path}/ticker.log\npidfile = {tmp_path}/ticker.pid\n"
    )
    return path


class Writer(threading.Thread):
    """Inserts and updates on the root (only the columns every step keeps) until stopped."""

    def __init__(self, dsn: str, first_id: int = 1000):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.next_id = first_id
        self.done = threading.Event()
        self.commits = 0

    def run(self) -> None:
        while not self.done.is_set():
            with suppress(psycopg.Error), psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.done.is_set():
                    with conn.transaction():
                        conn.execute("insert into t (id, v) values (%s, 1)", [self.next_id])
                        conn.execute("update t set v = v + 1 where id = %s", [self.next_id % 40])
                    self.next_id += 1
                    self.commits += 1
                    time.sleep(0.005)
            time.sleep(0.1)


@contextmanager
def running(c: Cascade, tmp_path: Path, *inis: Path) -> Iterator[dict[Path, Any]]:
    """A ticker on the root and a worker per ini; stopped (gracefully) at the end."""
    procs = {ini: spawn_cli(str(ini), "worker") for ini in inis}
    ticker = spawn_cli("ticker", str(ticker_ini(tmp_path, c)))
    try:
        yield procs
    finally:
        for p in [*procs.values(), ticker]:
            if p.poll() is None:
                stop_gracefully(p)


def node_info(ini: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(ok(str(ini), "node-info", "--json"))
    return info


def stopped_with(ini: Path, text: str, timeout: float = 60) -> str:
    def error() -> str | None:
        e = node_info(ini)["cur_error"]
        return e if e and text in e else None

    found: str = wait_for(f"{ini.stem} to stop with {text!r}", error, timeout=timeout)
    return found


def caught_up(c: Cascade, timeout: float = 90, *tables: str) -> None:
    def equal() -> bool:
        try:
            c.assert_equal(*tables)
        except AssertionError:
            return False
        return True

    try:
        wait_for("root, branch and leaf equal", equal, timeout=timeout)
    except TimeoutError:
        for table in tables or ("t",):
            want = set(rows(c.root_db, table))
            for name, db in (("branch", c.branch_db), ("leaf", c.leaf_db)):
                have = set(rows(db, table))
                missing, extra = sorted(want - have)[:5], sorted(have - want)[:5]
                print(f"{table} {name}: missing {missing} extra {extra}")
        raise


def test_every_change_through_execute_while_writes_run(tmp_path, cascade):
    c = cascade
    with running(c, tmp_path, c.branch, c.leaf) as procs:
        caught_up(c)
        writer = Writer(c.root_db.dsn)
        writer.start()
        try:
            for name, statements, after in CHANGES:
                time.sleep(0.3)
                ok(str(c.root), "execute", str(sql_file(tmp_path, name, statements)))
                c.root_db.sql(after)
        finally:
            writer.done.set()
            writer.join(30)
        assert writer.commits > 100
        caught_up(c)
        assert all(p.poll() is None for p in procs.values())
        for db in c.dbs[1:]:
            assert db.sql("select count(*) from londiste_rs.applied_execute") == [(len(CHANGES),)]
    for name in ("branch", "leaf"):
        assert "Traceback" not in (tmp_path / "log" / f"{name}.log").read_text()


def test_an_add_column_without_execute_stops_with_the_fix_and_goes_on_when_added(tmp_path, cascade):
    c = cascade
    with running(c, tmp_path, c.branch, c.leaf) as procs:
        caught_up(c)
        writer = Writer(c.root_db.dsn)
        writer.start()
        try:
            time.sleep(1)
            c.root_db.sql("alter table t add column c int default 0")  # not through execute
            c.root_db.sql("update t set c = id where id <= 20")
            error = stopped_with(c.branch, "column c (integer) is on the provider but not here")
            assert 'ALTER TABLE public.t ADD COLUMN "c" integer' in error
            assert "the worker goes on by itself" in error and "\n" not in error
            out = run_cli(str(c.leaf), "status", "--json")
            assert out.returncode == 1, out.stderr  # a stopped node needs attention
            status = json.loads(out.stdout)
            branch = [s for s in status if s["name"] == "branch"]
            assert [s["error"] for s in branch] == [error] and branch[0]["needs_attention"]
            time.sleep(1)
            assert all(p.poll() is None for p in procs.values())  # stopped, not dead
            # the fix on the branch: it goes on by itself, and the leaf meets the same stop
            c.branch_db.sql("alter table t add column c int default 0")
            stopped_with(c.leaf, "column c (integer) is on the provider but not here")
            c.leaf_db.sql("alter table t add column c int default 0")
            time.sleep(1)
        finally:
            writer.done.set()
            writer.join(30)
        assert writer.commits > 50
        caught_up(c)  # nothing lost: every row, c included
        assert node_info(c.branch)["cur_error"] is None
    log = (tmp_path / "log" / "branch.log").read_text()
    assert "Traceback" not in log
    stops = [ln for ln in log.splitlines() if "is on the provider but not here" in ln]
    assert stops and all("ERROR" in ln for ln in stops)


def test_a_statement_failing_on_a_leaf_pauses_it_until_fixed_or_skipped(tmp_path, cascade):
    c = cascade
    c.leaf_db.sql("create index t_v_idx on t (v)")  # in the way of the file's index
    with running(c, tmp_path, c.branch, c.leaf):
        caught_up(c)
        c.root_db.sql("update t set v = v * 10 where id < 10")
        index = sql_file(tmp_path, "index.sql", "-- the index\ncreate index t_v_idx on t (v);\n")
        ok(str(c.root), "execute", str(index))
        c.root_db.sql("insert into t (id, v) values (200, 2)")
        error = stopped_with(c.leaf, "execute index.sql: statement 1")
        assert error.startswith(
            "execute index.sql: statement 1 (line 2: create index t_v_idx on t (v)) failed: "
            'relation "t_v_idx" already exists'
        )
        assert "leaf.ini resume" in error and "leaf.ini execute --skip index.sql" in error
        assert node_info(c.leaf)["paused"] is True
        # the branch went on; the leaf applied nothing after the file
        wait_for("the branch", lambda: rows(c.branch_db) == rows(c.root_db), timeout=60)
        assert c.leaf_db.sql("select count(*) from t where id = 200") == [(0,)]
        # fixed by hand, then resume: the file runs there once, and the rows around it
        c.leaf_db.sql("drop index t_v_idx")
        ok(str(c.leaf), "resume")
        caught_up(c)
        assert c.leaf_db.sql("select outcome from londiste_rs.applied_execute") == [("executed",)]
        assert c.leaf_db.sql("select count(*) from pg_indexes where indexname = 't_v_idx'") == [
            (1,)
        ]

        # a column added here by hand already: the file fails; skipped here, the rest goes on
        c.leaf_db.sql("alter table t add column w int")
        add_w = sql_file(tmp_path, "add_w.sql", "alter table t add column w int;")
        ok(str(c.root), "execute", str(add_w))
        c.root_db.sql("update t set w = id where id < 30")
        stopped_with(c.leaf, "execute add_w.sql: statement 1 (line 1: alter table t add column w")
        out = ok(str(c.leaf), "execute", "--skip", str(add_w))
        assert "add_w.sql: recorded as applied on this node" in out and "resumed" in out
        caught_up(c)
        outcomes = c.leaf_db.sql("select execute_file, outcome from londiste_rs.applied_execute")
        assert sorted(outcomes) == [("add_w.sql", "skipped"), ("index.sql", "executed")]
        assert node_info(c.leaf)["paused"] is False


def _backend_running(db: Any, text: str) -> bool:
    found = db.sql(
        "select count(*) from pg_stat_activity where state = 'active' and query like %s"
        " and pid <> pg_backend_pid()",
        [f"%{text}%"],
    )
    return bool(found[0][0])


def test_a_worker_killed_between_the_ddl_and_the_rows_after_it_applies_both_once(tmp_path, cascade):
    c = cascade
    file = sql_file(tmp_path, "slow.sql", (
        "alter table t add column k int default 5;\n"
        "select pg_sleep(2) as lrs_sleeping_after_ddl;\n"
    ))  # fmt: skip
    procs = {ini: spawn_cli(str(ini), "worker") for ini in (c.branch, c.leaf)}
    ticker = spawn_cli("ticker", str(ticker_ini(tmp_path, c)))
    try:
        caught_up(c)
        c.root_db.sql("update t set v = v + 100 where id < 20")
        ok(str(c.root), "execute", str(file))
        c.root_db.sql(
            "insert into t (id, v, k) values (300, 3, 33); update t set k = id where id < 5"
        )
        for ini, db in ((c.branch, c.branch_db), (c.leaf, c.leaf_db)):
            # the worker is past the ALTER TABLE, in the file, before the rows after it
            wait_for("the file running", lambda db=db: _backend_running(db, "lrs_sleeping"),
                     timeout=60)  # fmt: skip
            os.kill(procs[ini].pid, signal.SIGKILL)
            procs[ini].wait()
            procs[ini] = spawn_cli(str(ini), "worker")
        caught_up(c)
        for db in c.dbs:
            assert db.sql("select execute_file, outcome from londiste_rs.applied_execute") == [
                ("slow.sql", "executed")
            ]
        assert c.leaf_db.sql("select k from t where id in (1, 300) order by id") == [(1,), (33,)]
    finally:
        for p in [*procs.values(), ticker]:
            if p.poll() is None:
                stop_gracefully(p)


# -- changes made without execute ---------------------------------------------------------------


def test_a_dropped_or_retyped_column_stops_clearly_and_extra_columns_keep_working(cascade):
    c = cascade
    for db in c.dbs[1:]:  # a column only the subscribers have: nullable, with a default
        db.sql("alter table t add column note text default 'sub'")
    bw, lw = c.workers()
    try:
        drain(bw, lw)
        c.root_db.sql("insert into t (id, v) values (400, 4); update t set s = 'x' where id = 2")
        tick(c.root_db)
        drain(bw, lw)
        assert c.leaf_db.sql("select note from t where id = 400") == [("sub",)]
        common = "select id, v, s, old from t order by id"
        assert c.leaf_db.sql(common) == c.branch_db.sql(common) == c.root_db.sql(common)

        # a column dropped on the root without execute: the branch stops, naming it and the fix
        c.root_db.sql("update t set v = 0 where id = 3")
        c.root_db.sql("alter table t drop column old")
        c.root_db.sql("insert into t (id, v) values (401, 4)")
        tick(c.root_db)
        with pytest.raises(TableError) as e:
            drain(bw)
        msg = str(e.value)
        assert msg.startswith(
            "table public.t: column old was dropped on the provider without execute"
        )
        assert 'ALTER TABLE public.t DROP COLUMN "old"' in msg and "resync public.t" in msg
        assert c.branch_db.sql("select v from t where id = 3") == [(3,)]  # nothing applied
        # the fix it names: then the branch and the leaf go on
        c.branch_db.sql("alter table t drop column old")
        ok(str(c.branch), "resync", "public.t")
        root_worker = Worker(load_job_config(c.root))
        try:
            root_worker.step()  # the root's worker makes capture follow
        finally:
            root_worker.close()
        drain(bw)
        with pytest.raises(TableError, match="column old was dropped on the provider"):
            drain(lw)
        c.leaf_db.sql("alter table t drop column old")
        ok(str(c.leaf), "resync", "public.t")
        drain(bw, lw)
        assert rows(c.leaf_db) == rows(c.branch_db)
        assert c.leaf_db.sql("select id, v, s from t order by 1") == c.root_db.sql(
            "select * from t order by 1"
        )

        # a column retyped on the root without execute: a clear stop and the fix
        c.root_db.sql("alter table t alter column v type bigint")
        c.root_db.sql("insert into t (id, v) values (402, 9000000000)")
        tick(c.root_db)
        with pytest.raises((TableError, DecodeError)) as e:
            drain(bw)
        msg = str(e.value)
        assert "public.t" in msg and "retyped" in msg and "resync public.t" in msg, msg
        assert "\n" not in msg
    finally:
        bw.close()
        lw.close()


def test_each_attribute_kind_is_checked_against_the_node(provider_db):
    from londiste_rs.errors import UsageError
    from londiste_rs.pg.execattrs import need, parse_attrs, substitute
    from londiste_rs.pg.names import name_of

    provider_db.sql(
        'create schema "S"; create table "S"."T" (id int primary key); create sequence sq;'
        " create view vw as select 1 as x; create function f2(int, int) returns int"
        " language sql as 'select 1'"
    )
    tables = {name_of('"S"."T"'): name_of("public.t_here")}
    seqs = {name_of("public.sq")}

    def run(header: str) -> tuple[bool, list[str]]:
        with provider_db.connect() as conn:
            n = need(conn, parse_attrs(header + "\nselect 1;"), tables, seqs, "f.sql")
            return n.run, n.missed

    assert run('--*-- Local-Table: "S"."T"\n--*-- Local-Sequence: sq') == (True, [])
    assert run('--*-- Need-Table: "S"."T"\n--*-- Need-View: vw') == (True, [])
    assert run('--*-- Need-Function: f2(2)\n--*-- Need-Schema: "S", public') == (True, [])
    assert run("--*-- Need-Sequence: public.sq") == (True, [])
    # Local-Destination: replicated here and the local table exists (t_here does not)
    assert run('--*-- Local-Destination: "S"."T"') == (False, ['Local-Destination "S"."T"'])
    missed = ["Need-Function f2(1)", "Need-Function nope(0)"]
    assert run("--*-- Need-Function: f2(1), nope(0)") == (False, missed)
    with pytest.raises(UsageError, match="match this node only in part"):
        run("--*-- Need-View: vw, nope")
    with provider_db.connect() as conn:
        attrs = parse_attrs('--*-- Local-Table: "S"."T"\nalter table @"S"."T"@ add x int;')
        got = substitute(conn, 'alter table @"S"."T"@ add x int;', attrs, tables, seqs)
        assert got == 'alter table "public"."t_here" add x int;'
