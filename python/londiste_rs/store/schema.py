"""The installer: puts the `londiste_rs` schema into a database, or upgrades it, in one
transaction, from the SQL files embedded in the wheel (`_native.sql_files()`).

Migrations (`migrations/NNNN_name.sql`) are applied once each, in order, and recorded in
`londiste_rs.schema_version`; functions (`functions/<area>/<name>.sql`, all CREATE OR REPLACE)
are re-applied on every install, sorted by path; then every capture trigger function is
generated again (`capture_refresh()`), so an upgrade brings them up to date too. Needs only
CREATE on the database.

Safety (review findings 11, 12): a `londiste_rs` schema that someone else made, or that holds
objects or rights of another role, is refused before anything is written (`ownership.foreign`).
Installers are serialised by a lock on `londiste_rs.schema_version`, which only the schema's
owner (or a superuser) can take, not by an advisory lock any connected role could hold; a
first install races on CREATE SCHEMA itself and the loser starts over. Every lock is waited
for at most `lock_timeout` seconds, then the install fails with one line.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from londiste_rs import _native
from londiste_rs.errors import NotInstalledError
from londiste_rs.pg.db import first_line
from londiste_rs.store import ownership

log = logging.getLogger(__name__)

SCHEMA = "londiste_rs"
VERSION_MARKER = "@PACKAGE_VERSION@"
# Seconds an install waits for any lock (another install, a long transaction on our tables).
LOCK_TIMEOUT = 10.0
# Installs that find the schema made by a concurrent install meanwhile start over, this often.
_ATTEMPTS = 3


class InstallError(NotInstalledError):
    """The schema could not be installed (privileges, a foreign schema of the same name)."""


def package_version() -> str:
    return _native.__version__


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every embedded migration, in the order they apply."""
    found = [
        (path.removeprefix("migrations/").removesuffix(".sql"), text)
        for path, text in _native.sql_files()
        if path.startswith("migrations/")
    ]
    return sorted(found)


def function_files() -> list[tuple[str, str]]:
    """(path, sql) of every embedded function file, sorted by path."""
    return sorted((p, t) for p, t in _native.sql_files() if p.startswith("functions/"))


def installed_version(conn: psycopg.Connection[Any]) -> str | None:
    """The package version that installed the schema here, or None when it is not installed."""
    row = conn.execute(
        "select p.oid is not null from pg_namespace n"
        " left join pg_proc p on p.pronamespace = n.oid and p.proname = 'version'"
        " where n.nspname = %s",
        [SCHEMA],
    ).fetchone()
    if not row or not row[0]:
        return None
    version = conn.execute("select londiste_rs.version()").fetchone()
    return str(version[0]) if version else None


def install(conn: psycopg.Connection[Any], *, lock_timeout: float | None = None) -> str:
    """Installs or upgrades the schema in one transaction; returns the package version now
    installed. Idempotent. Raises InstallError with a one-line fix on missing privileges, a
    schema of another role, or a lock held longer than `lock_timeout` seconds (default
    LOCK_TIMEOUT; the job's ini gives its own)."""
    version = package_version()
    lock_timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with conn.transaction():
                _apply(conn, version, lock_timeout)
            return version
        except (pgerrors.UniqueViolation, pgerrors.DuplicateSchema, pgerrors.DuplicateTable):
            # a concurrent install created the schema or its first table first: start over
            if attempt == _ATTEMPTS:
                raise
        except pgerrors.LockNotAvailable as e:
            raise _lock_error(conn, lock_timeout, e) from None
        except pgerrors.InsufficientPrivilege as e:
            raise _privilege_error(conn, e) from None
    raise AssertionError("unreachable")


def _apply(conn: psycopg.Connection[Any], version: str, lock_timeout: float) -> None:
    # Our own statements resolve nothing through a writable schema or this session's pg_temp.
    conn.execute("select pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
    conn.execute(
        "select pg_catalog.set_config('lock_timeout', %s, true)",
        [f"{max(1, round(lock_timeout * 1000))}ms"],
    )
    _refuse_foreign_schema(conn)
    exists = conn.execute(
        "select 1 from pg_catalog.pg_namespace where nspname = %s", [SCHEMA]
    ).fetchone()
    if not exists:
        # no IF NOT EXISTS: of two first installs, the second waits for the first and fails
        # (then starts over and finds the schema)
        conn.execute(f"create schema {SCHEMA}")
    conn.execute(
        f"create table if not exists {SCHEMA}.schema_version ("
        " migration pg_catalog.text primary key,"
        " applied_at pg_catalog.timestamptz not null default pg_catalog.now(),"
        " package_version pg_catalog.text not null)"
    )
    # Serialises installers; only the table's owner (or a superuser) may take this lock.
    conn.execute(f"lock table {SCHEMA}.schema_version in share row exclusive mode")
    applied = {r[0] for r in conn.execute(f"select migration from {SCHEMA}.schema_version")}
    for name, text in migrations():
        if name in applied:
            continue
        try:
            conn.execute(text.encode())
        except psycopg.Error as e:
            e.add_note(f"while applying sql/migrations/{name}.sql")
            raise
        conn.execute(
            f"insert into {SCHEMA}.schema_version (migration, package_version) values (%s, %s)",
            [name, version],
        )
    literal = version.replace("'", "''")
    # Files apply in path order, so a body may call a function from a later file (as pg_dump).
    conn.execute("set local check_function_bodies = off")
    for path, text in function_files():
        try:
            conn.execute(text.replace(VERSION_MARKER, literal).encode())
        except psycopg.Error as e:
            e.add_note(f"while applying sql/{path}")
            raise
    conn.execute("set local check_function_bodies = on")
    # Trigger functions generated by an older version are generated again by this one.
    for fn, table, regenerated, problem in conn.execute(
        f"select * from {SCHEMA}.capture_refresh()"
    ).fetchall():
        if not regenerated:
            log.warning(
                "capture function %s.%s of table %s was not generated again (%s); it keeps "
                "its old body, now with its search_path pinned",
                SCHEMA, fn, table, problem,
            )  # fmt: skip


def _refuse_foreign_schema(conn: psycopg.Connection[Any]) -> None:
    """Refuses, before anything is written, a schema of another role or one another role could
    have put code in (it would run as whoever uses the schema, the installer first)."""
    who = ownership.owners(conn)
    if who.owner is None:
        return
    dbname = conn.info.dbname
    if who.owner != who.me:
        raise InstallError(
            f"cannot install londiste-rs in database {dbname}: schema {SCHEMA} belongs to "
            f"{who.owner}, not {who.me}; install as {who.owner}, or, if {who.owner} did not "
            f"make it for londiste-rs, as a superuser look inside and run: ALTER SCHEMA "
            f"{SCHEMA} OWNER TO {_ident(who.me)} (or DROP SCHEMA {SCHEMA} CASCADE)"
        )
    problems = ownership.foreign(conn)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InstallError(
            f"cannot install londiste-rs in database {dbname}: {problems[0]}{more}, so that "
            f"role could run code as whoever uses the schema; {problems[0].fix}"
        )


def _lock_error(conn: psycopg.Connection[Any], timeout: float, e: psycopg.Error) -> InstallError:
    return InstallError(
        f"cannot install londiste-rs in database {conn.info.dbname}: a lock it needs was held "
        f"by another session for more than {timeout:g}s ({first_line(e)}); let that session "
        f"(another install, a long transaction on {SCHEMA} tables) finish and run the "
        "command again"
    )


def _privilege_error(conn: psycopg.Connection[Any], e: psycopg.Error) -> InstallError:
    """Says which privilege is missing and the statement that grants it."""
    row = conn.execute(
        "select current_database(), current_user,"
        " has_database_privilege(current_database(), 'CREATE'),"
        " (select pg_get_userbyid(nspowner) from pg_namespace where nspname = %s)",
        [SCHEMA],
    ).fetchone()
    assert row is not None
    dbname, user, can_create, schema_owner = row
    if schema_owner is not None and schema_owner != user:
        return InstallError(
            f"cannot install londiste-rs in database {dbname}: schema {SCHEMA} belongs to "
            f"{schema_owner}, not {user}; install as {schema_owner}, or as a superuser run: "
            f"ALTER SCHEMA {SCHEMA} OWNER TO {_ident(user)}"
        )
    if not can_create:
        return InstallError(
            f"cannot install londiste-rs in database {dbname}: role {user} may not create "
            f"schemas there; as a superuser run: GRANT CREATE ON DATABASE {_ident(dbname)} "
            f"TO {_ident(user)}"
        )
    return InstallError(
        f"cannot install londiste-rs in database {dbname} as {user}: {first_line(e)}; "
        "install as the role that owns the database"
    )


def _ident(name: str) -> str:
    """A name quoted as an SQL identifier, for statements shown to the user."""
    return '"' + name.replace('"', '""') + '"'
