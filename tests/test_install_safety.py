"""The installer against other roles of the same database (review findings 11, 12 and 16):
a `londiste_rs` schema someone else made, or put objects in, is refused before anything is
written; the install lock cannot be held by a role that merely connects, and any wait is
bounded; queue names are counted in bytes, so trigger names never get cut."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from londiste_rs.errors import LondisteError
from londiste_rs.store import queue, schema

OLD_INSTALL_LOCK = 0x4C52_5301  # the advisory lock key installs used to wait for


@pytest.fixture
def other_role(provider_db: Any) -> Iterator[tuple[str, str]]:
    """A login role that may create schemas in the test database: (name, dsn)."""
    name = f"lrs_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        admin.execute(
            sql.SQL("grant create on database {} to {}").format(
                sql.Identifier(provider_db.name), sql.Identifier(name)
            )
        )
    try:
        yield name, provider_db.dsn.replace("user=lrs_owner", f"user={name}")
    finally:
        with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                [name],
            )
            admin.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(name)))
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def create_root(tmp_path: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    ini = tmp_path / "root.ini"
    ini.write_text(f"[londiste3]\ndb = {dsn}\nqueue_name = q\n")
    return subprocess.run(
        [sys.executable, "-m", "londiste_rs", str(ini), "create-root", "root"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0, out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def objects_in_schema(db: Any) -> int:
    rows = db.sql(
        "select (select count(*) from pg_class where relnamespace = n.oid)"
        " + (select count(*) from pg_proc where pronamespace = n.oid)"
        " from pg_namespace n where nspname = 'londiste_rs'"
    )
    return int(rows[0][0]) if rows else 0


def test_a_schema_made_by_another_role_is_refused(tmp_path, provider_db, other_role):
    """E12: a role with CREATE on the database makes the schema first and opens it to all."""
    role, dsn = other_role
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("create schema londiste_rs")
        other.execute("grant all on schema londiste_rs to public")
    msg = one_line(create_root(tmp_path, provider_db.dsn))
    assert f"schema londiste_rs belongs to {role}, not lrs_owner" in msg
    assert "ALTER SCHEMA londiste_rs OWNER TO" in msg and "DROP SCHEMA londiste_rs" in msg
    assert objects_in_schema(provider_db) == 0  # nothing installed into it


def test_objects_of_another_role_in_our_schema_are_refused(provider_db, other_role):
    role, dsn = other_role
    with provider_db.connect() as conn:
        schema.install(conn)
        conn.execute(sql.SQL("grant create on schema londiste_rs to {}").format(
            sql.Identifier(role)))  # fmt: skip
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute(
                "create function londiste_rs.maint_helper() returns int language sql as 'select 1'"
            )
        with pytest.raises(LondisteError) as err:
            schema.install(conn)
        msg = str(err.value)
        assert "\n" not in msg
        assert f"{role} may create objects in schema londiste_rs" in msg
        assert f"REVOKE CREATE ON SCHEMA londiste_rs FROM {role}" in msg

        conn.execute(sql.SQL("revoke create on schema londiste_rs from {}").format(
            sql.Identifier(role)))  # fmt: skip
        with pytest.raises(LondisteError) as err:
            schema.install(conn)
        assert f"function londiste_rs.maint_helper() belongs to {role}" in str(err.value)

        conn.execute("drop function londiste_rs.maint_helper()")
        assert schema.install(conn) == schema.package_version()


def test_the_install_lock_cannot_be_held_hostage(provider_db, other_role):
    """E13: any role can take any advisory lock; holding the key installs used to wait for
    must not stop an install (the test's statement_timeout turns a wait into a failure)."""
    _, dsn = other_role
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("select pg_advisory_lock(%s)", [OLD_INSTALL_LOCK])
        other.execute("select pg_advisory_lock(%s)", [0])
        with psycopg.connect(
            provider_db.dsn, autocommit=True, options="-c statement_timeout=5000"
        ) as conn:
            started = time.monotonic()
            schema.install(conn)
            schema.install(conn)  # an upgrade too
            assert time.monotonic() - started < 5


def test_a_held_lock_is_waited_for_a_bounded_time(provider_db):
    """What an install waits for (another install, a long transaction on our tables) is waited
    for at most lock_timeout, then one line says what to do."""
    with provider_db.connect() as conn:
        schema.install(conn)
        with provider_db.connect(autocommit=False) as holder:
            holder.execute("lock table londiste_rs.schema_version in access exclusive mode")
            started = time.monotonic()
            with pytest.raises(LondisteError) as err:
                schema.install(conn, lock_timeout=1)
            waited = time.monotonic() - started
        msg = str(err.value)
        assert 0.9 < waited < 5, waited
        assert "\n" not in msg
        assert "held by another session for more than 1s" in msg and "run the command again" in msg
        assert schema.install(conn) == schema.package_version()  # free again


def test_queue_names_are_limited_in_bytes(provider_db):
    with provider_db.connect() as conn:
        schema.install(conn)
        with pytest.raises(LondisteError) as err:
            queue.create_queue(conn, "é" * 40)  # 40 letters, 80 bytes
        msg = str(err.value)
        assert "\n" not in msg
        assert "it is 80 bytes long, at most 40 are allowed" in msg and "shorter name" in msg
        assert conn.execute("select count(*) from londiste_rs.queue").fetchone() == (0,)

        # 40 bytes: both trigger names fit in 63 bytes, distinct and whole
        name = "é" * 20
        assert queue.create_queue(conn, name)
        conn.execute("create table public.t (id int primary key)")
        queue.capture_attach(conn, name, "public.t")
        triggers = conn.execute(
            "select tgname from pg_trigger where tgrelid = 'public.t'::regclass order by 1"
        ).fetchall()
        assert triggers == [(f"_londiste_rs_{name}",), (f"_londiste_rs_{name}_truncate",)]
