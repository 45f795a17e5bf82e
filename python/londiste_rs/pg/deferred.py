"""A table's secondary indexes, keys and foreign keys dropped before a bulk load and
restored after it (building them once is faster than maintaining them row by row), and its
NOT VALID CHECK constraints (the provider's old rows may break them: NOT VALID spares only
the rows there when it is made, a COPY into the table would be refused).

Catalog reads run with an empty search_path, so the definitions read back are
schema-qualified, server-quoted SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.errors import TableError
from londiste_rs.pg.db import first_line
from londiste_rs.pg.ddl import constraints, plain_indexes
from londiste_rs.pg.names import TableName
from londiste_rs.pg.names import empty_search_path as _empty_search_path
from londiste_rs.pg.names import regclass as _regclass

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Deferred:
    """One dropped object and the statement that brings it back."""

    kind: str  # 'key' | 'index' | 'fkey' | 'check' (a NOT VALID CHECK)
    name: str
    table: str  # the table the object is defined on (for an fkey: the referencing one)
    restore: str  # CREATE INDEX ... / ALTER TABLE ... ADD CONSTRAINT ...
    references: str = ""  # an fkey's referenced table ("": recorded before this was kept)


_FKEYS = """
select conname, conrelid::regclass::text, pg_get_constraintdef(oid), confrelid::regclass::text
from pg_constraint
where contype = 'f' and (conrelid = {t} or confrelid = {t}) and coninhcount = 0
order by conrelid, conname
"""

_NOT_VALID_CHECKS = """
select conname, pg_get_constraintdef(oid) from pg_constraint
where conrelid = {t} and contype = 'c' and not convalidated and coninhcount = 0
order by conname
"""


def defer_secondary(conn: Conn, table: TableName, *, keys: bool = False) -> list[Deferred]:
    """Drops, in one committed transaction, the table's indexes that back no constraint, its
    NOT VALID CHECK constraints and every foreign key from or to it, and with `keys` also its
    PRIMARY KEY, UNIQUE and EXCLUDE constraints (only safe into an emptied table: building them
    after the load is faster than maintaining them row by row). Returns what
    `restore_secondary` needs to recreate them."""
    with conn.transaction():
        _empty_search_path(conn)
        rows = conn.execute(sql.SQL(_FKEYS).format(t=_regclass(table))).fetchall()
        # names quoted as the server does (a constraint named "user" must stay quoted)
        items = [
            Deferred("fkey", name, rel, _add_constraint(conn, sql.SQL(rel), name, d), ref)
            for name, rel, d, ref in rows
        ]
        if keys:
            items += [
                Deferred("key", name, str(table), _add_constraint(conn, table.ident, name, d))
                for name, d in constraints(conn, table, "pux")
            ]
        items += [Deferred("index", n, str(table), d) for n, d in plain_indexes(conn, table)]
        # restored as they are, NOT VALID: the loaded rows are not checked, new ones are
        checks = conn.execute(sql.SQL(_NOT_VALID_CHECKS).format(t=_regclass(table))).fetchall()
        items += [
            Deferred("check", name, str(table), _add_constraint(conn, table.ident, name, d))
            for name, d in checks
        ]
        for item in items:  # in this order: foreign keys need the keys they reference
            if item.kind == "index":
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(item.name)))
            else:
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        sql.SQL(item.table), sql.Identifier(item.name)
                    )
                )
    if items:
        log.info("%s: dropped %d indexes/constraints for the load", table, len(items))
    return items


def _add_constraint(conn: Conn, table: sql.Composable, name: str, definition: str) -> str:
    """`ALTER TABLE table ADD CONSTRAINT name definition` as text, every name quoted."""
    stmt = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(table, sql.Identifier(name))
    return stmt.as_string(conn) + definition


# keys first: indexes and foreign keys may need them
RESTORE_ORDER = {"key": 0, "index": 1, "check": 1, "fkey": 2}


def restore_secondary(conn: Conn, items: Sequence[Deferred]) -> None:
    """Recreates what `defer_secondary` dropped: keys, indexes, then foreign keys. A foreign
    key comes back NOT VALID and is validated in a second step; when the rows do not satisfy
    it (e.g. its other table is not copied yet) it stays NOT VALID, enforced for new rows, and
    a warning says how to validate it later. Every item is tried; the first failure is raised
    after the others are restored."""
    failed: list[str] = []
    for item in sorted(items, key=lambda i: RESTORE_ORDER[i.kind]):
        stmt = item.restore
        validate = item.kind == "fkey" and not stmt.endswith(" NOT VALID")
        try:
            with conn.transaction():
                _empty_search_path(conn)
                conn.execute(sql.SQL(stmt + (" NOT VALID" if validate else "")))
        except psycopg.Error as e:
            failed.append(f"{stmt} ({first_line(e)})")
            continue
        if validate:
            try:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                            sql.SQL(item.table), sql.Identifier(item.name)
                        )
                    )
            except psycopg.Error as e:
                log.warning(
                    "foreign key %s on %s restored NOT VALID: %s; validate it later with "
                    "ALTER TABLE %s VALIDATE CONSTRAINT %s",
                    item.name, item.table, first_line(e), item.table,
                    sql.Identifier(item.name).as_string(conn),
                )  # fmt: skip
    if failed:
        raise TableError(f"could not restore {len(failed)} object(s), run by hand: {failed[0]}")
