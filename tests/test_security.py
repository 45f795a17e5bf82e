"""Attacks on what londiste-rs installs and runs (review findings 1 and 5), each written as the
attacker would run it against a real cluster: a role that may only write a captured table
hijacks the SECURITY DEFINER capture trigger through types it makes in its pg_temp; a role
that may create objects in `public` plants a `public.format(text, text)` for the tool's
sessions and functions to call. Then the catalog rules that keep both out, and an upgrade from
a trigger function generated the old way."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from londiste_rs.pg.db import connect
from londiste_rs.store import queue, schema

Q = "sq"
PINNED = "search_path=pg_catalog, pg_temp"

# Run by the writer in its own session: types named like the ones a PL/pgSQL function declares
# (PL/pgSQL looks them up through the session's search_path, pg_temp first), whose CHECK calls
# a function that, once it runs as another role, grants the writer the secrets and says so.
ESCALATE = """
create function pg_temp.pwn(v pg_catalog.text) returns pg_catalog.bool
language plpgsql as $$
begin
    if current_user operator(pg_catalog.<>) session_user then
        perform pg_catalog.set_config('pwn.ran_as', current_user, false);
        execute 'grant select on public.secrets to ' operator(pg_catalog.||)
            pg_catalog.quote_ident(session_user);
    end if;
    return true;
end $$;
create domain pg_temp.text as pg_catalog.text check (pg_temp.pwn(value));
create domain pg_temp.bytea as pg_catalog.bytea
    check (pg_temp.pwn(pg_catalog.encode(value, 'hex')));
create domain pg_temp.int8 as pg_catalog.int8 check (pg_temp.pwn(value::pg_catalog.text));
"""


@pytest.fixture
def writer(provider_db: Any) -> Iterator[tuple[str, str]]:
    """A login role with no rights at all (what a table's writers have): (name, dsn)."""
    name = f"lrs_writer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    try:
        yield name, provider_db.dsn.replace("user=lrs_owner", f"user={name}")
    finally:
        with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                [name],
            )
            admin.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def captured_table(conn: psycopg.Connection[Any], writer_role: str) -> None:
    """Our schema and queue, a captured table the writer may write, a table it may not read."""
    schema.install(conn)
    queue.create_queue(conn, Q)
    queue.register_consumer(conn, Q, "c")
    conn.execute(
        "create table public.src (id int primary key, t text, b bytea, n int8);"
        "create table public.secrets (id int primary key, card text);"
        "insert into public.secrets values (1, '4111-1111-1111-1111')"
    )
    queue.capture_attach(conn, Q, "public.src")
    conn.execute(
        sql.SQL("grant select, insert, update, delete on public.src to {}").format(
            sql.Identifier(writer_role)
        )
    )


def attack(dsn: str) -> str | None:
    """The writer's session: plants its types, writes the table (every write must succeed),
    then returns the role its function ran as (None: it never ran as another role)."""
    with psycopg.connect(dsn, autocommit=True) as app:
        app.execute(ESCALATE)
        app.execute("insert into public.src values (1, 'a', '\\x01', 10)")
        app.execute("update public.src set t = 'b', b = '\\x02', n = 11 where id = 1")
        app.execute("update public.src set id = 2 where id = 1")  # a key change: old key sent
        app.execute("delete from public.src where id = 2")
        row = app.execute("select pg_catalog.current_setting('pwn.ran_as', true)").fetchone()
        return row[0] if row and row[0] else None


def can_read_secrets(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as app:
        try:
            app.execute("select * from public.secrets")
        except psycopg.errors.InsufficientPrivilege:
            return False
    return True


def test_writer_pg_temp_types_run_nothing_as_the_owner(provider_db, writer):
    role, dsn = writer
    with provider_db.connect() as conn:
        captured_table(conn, role)
        ran_as = attack(dsn)
        assert ran_as is None, f"the writer's function ran as {ran_as}"
        assert not can_read_secrets(dsn)
        # every write was captured, as if nothing had been planted
        events = conn.execute(
            "select ev_type, ev_extra1 from londiste_rs.event_1 order by ev_id"
        ).fetchall()
        assert events == [("I", "public.src"), ("U", "public.src"), ("U", "public.src"),
                          ("D", "public.src")]  # fmt: skip


# -- a writable public -------------------------------------------------------------------------

# Run by a role that may create objects in public (PostgreSQL 14 and older let everyone): a
# format(text, text) beats pg_catalog.format(text, VARIADIC "any") for two text arguments.
PLANT_FORMAT = """
create table public.calls (who text, what text);
grant select, insert on public.calls to public;
create function public.format(f text, a text) returns text language plpgsql as $$
begin
    insert into public.calls values (current_user, 'format(' || f || ', ' || a || ')');
    return pg_catalog.format(f, variadic array[a]);
end $$;
create function public.format(f text, a text, b text) returns text language plpgsql as $$
begin
    insert into public.calls values (current_user, 'format(' || f || ', ' || a || ', ' || b || ')');
    return pg_catalog.format(f, variadic array[a, b]);
end $$;
"""


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def job_ini(tmp_path: Path, name: str, dsn: str, queue_name: str) -> str:
    path = tmp_path / f"{name}.ini"
    path.write_text(
        f"[londiste3]\ndb = {dsn}\nqueue_name = {queue_name}\nloop_delay = 0\n"
        f"logfile = {tmp_path}/{name}.log\npidfile = {tmp_path}/{name}.pid\n"
    )
    return str(path)


def exercise_queue(conn: psycopg.Connection[Any]) -> None:
    """Every kind of call the ticker, the worker and the CLI make on a queue."""
    queue.force_tick(conn, Q)
    queue.ticker(conn, Q)
    conn.execute("select londiste_rs.ticker()")
    batch = queue.next_batch(conn, Q, "c")
    assert batch is not None
    conn.execute(queue.batch_event_sql(conn, batch.batch_id)).fetchall()
    queue.finish_batch(conn, batch.batch_id)
    queue.set_queue_config(conn, Q, "rotation_period", "0")
    for func, arg in conn.execute("select * from londiste_rs.maint_operations()").fetchall():
        if func != "vacuum":
            conn.execute(sql.SQL("select {}(%s)").format(sql.Identifier(*func.split("."))), [arg])
    conn.execute("select londiste_rs.maint_retry_events()")
    conn.execute("select * from londiste_rs.get_queue_info()").fetchall()
    conn.execute("select * from londiste_rs.get_consumer_info()").fetchall()
    if conn.execute("select to_regprocedure('londiste_rs.rotation_blockers(text)')").fetchone()[0]:
        conn.execute("select * from londiste_rs.rotation_blockers()").fetchall()


def test_public_format_is_never_called(tmp_path, provider_db, subscriber_db, writer):
    role, dsn = writer
    for db in (provider_db, subscriber_db):
        with psycopg.connect(db.admin_dsn, autocommit=True) as admin:
            admin.execute("grant create on schema public to public")
    with psycopg.connect(dsn, autocommit=True) as app:
        app.execute(PLANT_FORMAT)
    with subscriber_db.connect() as planter:
        planter.execute(PLANT_FORMAT)
        planter.execute("create table public.src (id int primary key, t text, b bytea, n int8)")

    # the tool's own sessions (db.connect), and a user's session with the default search_path
    # calling our functions: neither may reach public.format
    with connect(provider_db.dsn, autocommit=True) as tool:
        captured_table(tool, role)
        tool.execute("insert into public.src values (5, 'x', null, 1)")
        exercise_queue(tool)
    with provider_db.connect() as user_session:
        user_session.execute("update public.src set t = 'y'")
        exercise_queue(user_session)
    assert provider_db.sql("select * from public.calls") == []
    assert attack(dsn) is None

    # a root and a leaf through the CLI, and the worker's copy and replay
    root = job_ini(tmp_path, "root", provider_db.dsn, "cq")
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn, "cq")
    cli(root, "create-root", "root")
    cli(root, "add-table", "public.src")
    cli(leaf, "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    cli(leaf, "add-table", "public.src")
    cli(leaf, "worker")
    provider_db.sql("insert into public.src values (6, 'z', '\\x00', 2)")
    provider_db.sql("select londiste_rs.force_tick('cq')")
    provider_db.sql("select londiste_rs.ticker('cq')")
    cli(leaf, "worker")
    assert subscriber_db.sql("select id from public.src order by 1") == [(5,), (6,)]

    for db in (provider_db, subscriber_db):
        assert db.sql("select * from public.calls") == []


# -- what the catalog must say -----------------------------------------------------------------


def functions(conn: psycopg.Connection[Any]) -> list[tuple[str, bool, list[str] | None, bool]]:
    """(signature, SECURITY DEFINER, proconfig, PUBLIC may execute) of every function of ours."""
    rows = conn.execute(
        "select p.oid::regprocedure::text, p.prosecdef, p.proconfig,"
        " has_function_privilege('public', p.oid, 'EXECUTE')"
        " from pg_proc p where p.pronamespace = 'londiste_rs'::regnamespace order by 1"
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def unqualified(body: str) -> list[str]:
    """What in a generated capture function's body would be looked up through the writer's
    search_path: a declared type, a cast, a function or an operator not in pg_catalog."""
    code = re.sub(r"--[^\n]*", "", body)  # comments
    code = re.sub(r"E?'(?:[^']|'')*'", "''", code)  # string literals
    code = re.sub(r'"(?:[^"]|"")*"', '""', code)  # quoted names (of columns)
    code = code.replace("using errcode =", "")  # PL/pgSQL's syntax, not an operator
    found = []
    declare = code.split("declare", 1)[1].split("begin", 1)[0]
    for line in filter(None, (ln.strip() for ln in declare.split(";"))):
        _, type_name = line.split()[:2]
        if not type_name.startswith("pg_catalog."):
            found.append(f"type {type_name}")
    found += [f"cast to {t}" for t in re.findall(r"::\s*([\w.]+)", code)
              if not t.startswith("pg_catalog.")]  # fmt: skip
    for m in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", code):
        if m.group(1).lower() not in ("row", "values", "operator"):
            found.append(f"function {m.group(1)}")
    rest = re.sub(r"OPERATOR\(pg_catalog\.[^)]+\)", " ", code).replace(":=", " ")
    found += [f"operator {op}" for op in re.findall(r"[-=<>|+*/~!^&#@%?]+", rest)]
    return found


def capture_bodies(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute(
        "select p.oid::regprocedure::text, prosrc from pg_proc p"
        " where p.pronamespace = 'londiste_rs'::regnamespace"
        " and p.proname ~ '^_capture_[0-9]+_[0-9]+$'"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_every_function_pins_its_search_path_and_definers_are_not_public(provider_db, writer):
    """Every function runs with search_path pg_catalog, pg_temp; the SECURITY DEFINER capture
    functions are pinned through qualifying every name instead (a SET clause costs every
    captured row), which the check below holds them to; PUBLIC may execute no definer."""
    role, _ = writer
    with provider_db.connect() as conn:
        captured_table(conn, role)
        conn.execute(
            'create table public."Odd ""Name""" (a int, "b=c(" text, primary key (a, "b=c("))'
        )
        queue.capture_attach(conn, Q, 'public."Odd ""Name"""')
        found = functions(conn)
        bodies = capture_bodies(conn)
    assert len(bodies) == 2 and all(secdef for f, secdef, _, _ in found if f in bodies)
    unpinned = [f for f, _, config, _ in found if PINNED not in (config or []) and f not in bodies]
    assert unpinned == []
    assert {f: unqualified(body) for f, body in bodies.items()} == {f: [] for f in bodies}
    assert unqualified("declare x text; begin x := format('%s', 1) || 'a'; end") == [
        "type text", "function format", "operator ||"]  # fmt: skip
    definers = [f for f, secdef, _, _ in found if secdef]
    assert sorted(definers) == sorted(bodies)
    assert [f for f, secdef, _, public in found if secdef and public] == []


# -- upgrade ------------------------------------------------------------------------------------


def make_old_style(conn: psycopg.Connection[Any], fn: str) -> None:
    """Turns a generated capture function back into what older versions generated: types
    unqualified, no search_path of its own, executable by PUBLIC."""
    (definition,) = conn.execute("select pg_get_functiondef(%s::regprocedure)", [fn]).fetchone()
    old = "\n".join(line for line in definition.splitlines() if "SET search_path" not in line)
    for t in ("text", "bytea", "int8"):
        old = old.replace(f" pg_catalog.{t};", f" {t};").replace(f" pg_catalog.{t} :=", f" {t} :=")
    assert "pg_catalog.text" not in old.split("begin")[0]
    conn.execute(old)
    conn.execute(f"grant execute on function {fn} to public")
    (config,) = conn.execute("select proconfig from pg_proc where oid = %s::regprocedure", [fn])
    assert config == (None,)


def test_upgrade_regenerates_old_capture_functions(provider_db, writer, caplog):
    role, dsn = writer
    with provider_db.connect() as conn:
        captured_table(conn, role)
        conn.execute(
            "create table public.renamed_later (id int primary key);"
            "create table public.key_dropped_later (id int primary key, v text)"
        )
        queue.capture_attach(conn, Q, "public.renamed_later")
        queue.capture_attach(conn, Q, "public.key_dropped_later")
        fns = {}
        for table in ("public.src", "public.renamed_later", "public.key_dropped_later"):
            (oid,) = conn.execute("select %s::regclass::oid", [table]).fetchone()
            fns[table] = f"londiste_rs._capture_1_{oid}()"
        for fn in fns.values():
            make_old_style(conn, fn)
        conn.execute("alter table public.renamed_later rename to renamed_now")
        conn.execute("alter table public.key_dropped_later drop constraint key_dropped_later_pkey")

        # the old function is the open door of finding 1
        assert attack(dsn) == "lrs_owner"
        assert can_read_secrets(dsn)
        conn.execute(sql.SQL("revoke select on public.secrets from {}").format(
            sql.Identifier(role)))  # fmt: skip

        with caplog.at_level(logging.WARNING, logger="londiste_rs.store.schema"):
            schema.install(conn)
        by_name = {f: (secdef, config, public) for f, secdef, config, public in functions(conn)}
        bodies = capture_bodies(conn)
        for table, fn in fns.items():
            secdef, config, public = by_name[fn]
            assert secdef and not public, fn
            if table == "public.key_dropped_later":  # kept its body: pinned by a SET clause
                assert PINNED in (config or []) and unqualified(bodies[fn]) != []
            else:  # generated again
                assert config is None and unqualified(bodies[fn]) == []
        # the function of the table without its key kept its body, and said why
        assert any(
            "key_dropped_later" in r.message and "no primary key" in r.message
            for r in caplog.records
        )

        assert attack(dsn) is None
        assert not can_read_secrets(dsn)
        # the renamed table's events still carry the name the subscriber knows it by
        conn.execute("insert into public.renamed_now values (1)")
        last = conn.execute(
            "select ev_extra1 from londiste_rs.event_1 order by ev_id desc limit 1"
        ).fetchone()
        assert last == ("public.renamed_later",)
