"""The foreign keys of tables `--create-full` creates: read from the provider's catalog with
the table (ddl.plan_create), made on the subscriber once every table of the run is there
(`create_foreign_keys`), so a key never waits for a table created after it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.errors import TableError
from londiste_rs.pg.db import first_line
from londiste_rs.pg.names import TableName, exists
from londiste_rs.pg.names import empty_search_path as _empty_search_path
from londiste_rs.pg.names import regclass as _regclass

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of a table `--create-full` creates, made once every table is there."""

    name: str
    table: TableName  # the referencing table
    references: TableName
    definition: str  # pg_get_constraintdef: FOREIGN KEY (...) REFERENCES ...

    @property
    def statement(self) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            self.table.ident, sql.Identifier(self.name), sql.SQL(self.definition)
        )


_FOREIGN_KEYS = """
select k.conname, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_get_constraintdef(k.oid)
from pg_constraint k
join pg_class c on c.oid = k.confrelid
join pg_namespace n on n.oid = c.relnamespace
where k.conrelid = {} and k.contype = 'f' and k.coninhcount = 0 and k.conparentid = 0
order by k.conname
"""


def foreign_keys(conn: Conn, table: TableName) -> list[ForeignKey]:
    """The table's own foreign keys (not inherited, not a partition's copy), by name; the
    caller has set an empty search_path, so the definitions are schema-qualified."""
    rows = conn.execute(sql.SQL(_FOREIGN_KEYS).format(_regclass(table))).fetchall()
    return [ForeignKey(r[0], table, TableName(r[1], r[2], r[3]), r[4]) for r in rows]


def create_foreign_keys(dst: Conn, keys: Sequence[ForeignKey]) -> list[ForeignKey]:
    """Creates these foreign keys on the subscriber (in the caller's transaction, after every
    table it creates); returns those created. One whose referenced table is not there is
    skipped with a warning naming the fix."""
    created = []
    for fk in keys:
        if not exists(dst, fk.references):
            log.warning(
                "%s: foreign key %s not created: %s is not on the subscriber; add that table "
                "too (add-table --create-full), then create the key by hand: %s",
                fk.table, fk.name, fk.references, fk.statement.as_string(dst),
            )  # fmt: skip
            continue
        try:
            with dst.transaction():
                _empty_search_path(dst)
                dst.execute(fk.statement)
        except psycopg.Error as e:
            raise TableError(
                f"cannot create foreign key {fk.name} of {fk.table} on the subscriber: "
                f"{first_line(e)}; give {fk.references} the provider's key, or add "
                f"{fk.table} with --create and create the key by hand"
            ) from None
        created.append(fk)
    return created
