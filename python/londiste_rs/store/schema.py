"""The installer: puts the `londiste_rs` schema into a database, or upgrades it, in one
transaction, from the SQL files embedded in the wheel (`_native.sql_files()`).

Migrations (`migrations/NNNN_name.sql`) are applied once each, in order, and recorded in
`londiste_rs.schema_version`; functions (`functions/<area>/<name>.sql`, all CREATE OR REPLACE)
are re-applied on every install, sorted by path. Needs only CREATE on the database.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pgerrors

from londiste_rs import _native
from londiste_rs.errors import NotInstalledError
from londiste_rs.pg.db import first_line
from londiste_rs.pg.locking import set_lock_timeout

SCHEMA = "londiste_rs"
VERSION_MARKER = "@PACKAGE_VERSION@"
# Serialises concurrent installers in one database (an arbitrary fixed advisory lock key).
_INSTALL_LOCK = 0x4C52_5301


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
    installed. Idempotent. Raises InstallError with a one-line fix on missing privileges.
    `lock_timeout`: lock waits in that transaction end after so many seconds."""
    version = package_version()
    try:
        with conn.transaction():
            set_lock_timeout(conn, lock_timeout)
            _apply(conn, version)
    except pgerrors.InsufficientPrivilege as e:
        raise _privilege_error(conn, e) from None
    return version


def _apply(conn: psycopg.Connection[Any], version: str) -> None:
    conn.execute("select pg_advisory_xact_lock(%s)", [_INSTALL_LOCK])
    conn.execute(f"create schema if not exists {SCHEMA}")
    conn.execute(
        f"create table if not exists {SCHEMA}.schema_version ("
        " migration text primary key,"
        " applied_at timestamptz not null default now(),"
        " package_version text not null)"
    )
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
