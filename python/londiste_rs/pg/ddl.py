"""Table definitions read from the catalog (no pg_dump): resolving user-written table names,
creating a missing subscriber table from the provider's definition (`--create`,
`--create-full`; its foreign keys are made once the tables they reference are there, by
foreign_keys.py). Dropping and restoring a table's secondary indexes and keys around a bulk
load is in deferred.py.

Catalog reads run with an empty search_path, so `format_type`, `pg_get_expr`,
`pg_get_indexdef` and `pg_get_constraintdef` return schema-qualified, server-quoted SQL that
means the same thing on the subscriber.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.errors import TableError
from londiste_rs.pg.db import first_line
from londiste_rs.pg.foreign_keys import ForeignKey, foreign_keys
from londiste_rs.pg.names import (
    SEQUENCE_KINDS,
    TableName,
    exists,
    resolve_one,
)
from londiste_rs.pg.names import empty_search_path as _empty_search_path
from londiste_rs.pg.names import regclass as _regclass

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# -- columns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type, schema-qualified for non-builtin types
    type_oid: int
    not_null: bool  # validated: 18's NOT VALID ones are `not_null_name` with this False
    generated: str  # '' | 's' (GENERATED ALWAYS AS (...) STORED) | 'v' (VIRTUAL, PostgreSQL 18)
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    expr: str | None  # default or generation expression
    collation: sql.Composable | None  # only when it differs from the type's
    not_null_name: str | None = None  # PostgreSQL 18 names its NOT NULL constraints
    not_null_valid: bool = True  # False: 18's NOT NULL ... NOT VALID (old rows may be NULL)


_COLUMNS = """
select a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int8, a.attnotnull,
       a.attgenerated::text, a.attidentity::text, pg_get_expr(d.adbin, d.adrelid),
       case when a.attcollation <> t.typcollation then cn.nspname end, co.collname,
       n.conname, coalesce(n.convalidated, true)
from pg_attribute a
join pg_type t on t.oid = a.atttypid
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
left join pg_collation co on co.oid = a.attcollation
left join pg_namespace cn on cn.oid = co.collnamespace
left join pg_constraint n on n.conrelid = a.attrelid and n.contype = 'n'
                         and n.conkey = array[a.attnum] -- none before 18
where a.attrelid = {} and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""


def columns(conn: Conn, table: TableName) -> list[Column]:
    """The table's live columns in order. Leaves the connection's search_path as it was (it
    may be a caller's transaction)."""
    old = conn.execute("select current_setting('search_path')").fetchone()
    _empty_search_path(conn)
    rows = conn.execute(sql.SQL(_COLUMNS).format(_regclass(table))).fetchall()
    conn.execute("select set_config('search_path', %s, true)", [old[0] if old else ""])
    return [
        Column(
            r[0],
            r[1],
            r[2],
            r[3] and r[10],
            r[4],
            r[5],
            r[6],
            sql.Identifier(r[7], r[8]) if r[7] else None,
            not_null_name=r[9],
            not_null_valid=r[10],
        )
        for r in rows
    ]


# -- create --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seq:
    name: TableName
    type: str
    start: int
    increment: int
    minvalue: int
    maxvalue: int
    cache: int
    cycle: bool

    def options(self) -> sql.Composed:
        return sql.SQL("START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {}").format(
            sql.Literal(self.start),
            sql.Literal(self.increment),
            sql.Literal(self.minvalue),
            sql.Literal(self.maxvalue),
            sql.Literal(self.cache),
            sql.SQL("CYCLE" if self.cycle else "NO CYCLE"),
        )


# Sequences that belong to a column: serial ones (deptype 'a') and identity ones ('i').
_OWNED_SEQUENCES = """
select a.attname, d.deptype::text, n.nspname, c.relname,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
       s.seqcache, s.seqcycle
from pg_depend d
join pg_class c on c.oid = d.objid and c.relkind = 'S'
join pg_namespace n on n.oid = c.relnamespace
join pg_sequence s on s.seqrelid = c.oid
join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
  and d.refobjid = {} and d.deptype in ('a', 'i')
"""


def _owned_sequences(conn: Conn, table: TableName) -> dict[str, tuple[str, _Seq]]:
    """column name -> (deptype, sequence)."""
    rows = conn.execute(sql.SQL(_OWNED_SEQUENCES).format(_regclass(table))).fetchall()
    return {r[0]: (r[1], _Seq(TableName(r[2], r[3], r[4]), *r[5:12])) for r in rows}


def constraints(conn: Conn, table: TableName, types: str) -> list[tuple[str, str]]:
    """(name, pg_get_constraintdef) of the table's own constraints of the given contypes."""
    rows = conn.execute(
        sql.SQL(
            "select conname, pg_get_constraintdef(oid) from pg_constraint"
            " where conrelid = {} and contype = any(%s) and coninhcount = 0"
            " order by contype desc, conname"
        ).format(_regclass(table)),
        [list(types)],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def plain_indexes(conn: Conn, table: TableName) -> list[tuple[str, str]]:
    """(qualified name, pg_get_indexdef) of indexes that back no constraint."""
    rows = conn.execute(
        sql.SQL(
            "select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) from pg_index i"
            " where i.indrelid = {} and not exists"
            " (select from pg_constraint c where c.conindid = i.indexrelid)"
            " order by 1"
        ).format(_regclass(table))
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


# The first majors with VIRTUAL generated columns, and with NOT NULL constraints in
# pg_constraint (named: contype 'n'; before, attnotnull only).
VIRTUAL_SINCE = 18
NAMED_NOT_NULL_SINCE = 18


@dataclass(frozen=True)
class OptionalPart:
    """A part of a `--create-full` table that an older subscriber may lack (a default calling
    a newer function, a constraint in a newer syntax): skipped there with a warning."""

    what: str  # e.g. "default uuidv7() of column u"
    statement: sql.Composed


@dataclass
class CreatePlan:
    """What `create_table` runs on the subscriber, in order, and the foreign keys it leaves to
    `create_foreign_keys`. `notes` say where the subscriber's table differs from the
    provider's (a major without a feature the table uses)."""

    table: TableName
    statements: list[sql.SQL | sql.Composed]
    sequences: list[TableName]
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    optional: list[OptionalPart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def major(conn: Conn) -> int:
    """The server's major version (15, 18, ...)."""
    return conn.info.server_version // 10000


def plan_create(src: Conn, table: TableName, *, full: bool, target: int) -> CreatePlan:
    """Reads `table`'s definition on the provider and returns the DDL that recreates it on a
    subscriber running PostgreSQL `target` (major): columns (type, NOT NULL) and primary key;
    with `full` also collations, identity and generated columns, then (`optional`) defaults,
    CHECK/UNIQUE/EXCLUDE constraints and plain indexes, and the sequences of serial columns
    (created, then OWNED BY their column). A VIRTUAL generated column is created STORED on a
    target without them (a note says so). Its foreign keys (with `full`) are read but not in
    the statements: the tables they reference may not be there yet."""
    with src.transaction():
        _empty_search_path(src)
        kind = src.execute(
            sql.SQL("select relkind::text from pg_class where oid = {}").format(_regclass(table))
        ).fetchone()
        if kind and kind[0] == "p":
            raise TableError(
                f"{table} is partitioned on the provider; create it and its partitions on the "
                "subscriber by hand, then add the partitions"
            )
        cols = columns(src, table)
        owned = _owned_sequences(src, table) if full else {}
        pkey = constraints(src, table, "p")
        others = constraints(src, table, "cux") if full else []
        indexes = plain_indexes(src, table) if full else []
        fkeys = foreign_keys(src, table) if full else []

    plan = CreatePlan(table, [], [], fkeys)
    plan.statements.append(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema))
    )
    serial: list[tuple[str, _Seq]] = []
    for col, (deptype, seq) in owned.items():
        if deptype == "a":
            serial.append((col, seq))
            plan.statements.append(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(seq.name.schema))
            )
            plan.statements.append(
                sql.SQL("CREATE SEQUENCE {} AS {} {}").format(
                    seq.name.ident, sql.SQL(seq.type), seq.options()
                )
            )
    defs: list[sql.Composable] = []
    for c in cols:
        parts: list[sql.Composable] = [sql.Identifier(c.name), sql.SQL(c.type)]
        if full and c.collation is not None:
            parts += [sql.SQL("COLLATE"), c.collation]
        if full and c.generated:
            parts.append(_generated(plan, c, target))
        elif full and c.identity:
            seq = owned[c.name][1]
            parts.append(
                sql.SQL("GENERATED {} AS IDENTITY (SEQUENCE NAME {} {})").format(
                    sql.SQL("ALWAYS" if c.identity == "a" else "BY DEFAULT"),
                    seq.name.ident,
                    seq.options(),
                )
            )
        elif full and c.expr is not None:
            plan.optional.append(
                OptionalPart(
                    f"default {c.expr} of column {c.name}",
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                        table.ident, sql.Identifier(c.name), sql.SQL(c.expr)
                    ),
                )
            )
        if c.not_null and c.not_null_name and target >= NAMED_NOT_NULL_SINCE:
            parts.append(sql.SQL("CONSTRAINT {} NOT NULL").format(sql.Identifier(c.not_null_name)))
        elif c.not_null:
            parts.append(sql.SQL("NOT NULL"))
        elif c.not_null_name and not c.not_null_valid:
            # NOT VALID (18): rows to be copied may be NULL, a new constraint would refuse them
            add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} NOT NULL {} NOT VALID").format(
                table.ident, sql.Identifier(c.not_null_name), sql.Identifier(c.name)
            )
            plan.notes.append(
                f"{table}: constraint {c.not_null_name} (NOT NULL {c.name} NOT VALID) not "
                "created: the provider's rows may break it; once they are copied, create it "
                f"by hand: {add.as_string(src)}"
            )
        defs.append(sql.SQL(" ").join(parts))
    for name, definition in pkey:
        defs.append(sql.SQL("CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition)))
    plan.statements.append(
        sql.SQL("CREATE TABLE {} ({})").format(table.ident, sql.SQL(", ").join(defs))
    )
    for name, definition in others:
        plan.optional.append(
            OptionalPart(
                f"constraint {name} ({definition})",
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    table.ident, sql.Identifier(name), sql.SQL(definition)
                ),
            )
        )
    plan.optional.extend(
        OptionalPart(f"index {name}", sql.Composed([sql.SQL(d)])) for name, d in indexes
    )
    for col, seq in serial:
        plan.statements.append(
            sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                seq.name.ident, sql.Identifier(table.schema, table.name, col)
            )
        )
    plan.sequences = [seq.name for _, seq in serial]
    return plan


def _generated(plan: CreatePlan, c: Column, target: int) -> sql.Composed:
    """A generated column's clause: VIRTUAL stays VIRTUAL where the target has them."""
    kind = "STORED"
    if c.generated == "v":
        if target >= VIRTUAL_SINCE:
            kind = "VIRTUAL"
        else:
            plan.notes.append(
                f"{plan.table}: generated column {c.name} is VIRTUAL on the provider; "
                f"PostgreSQL {target} has only STORED ones, so it is created STORED here"
            )
    return sql.SQL("GENERATED ALWAYS AS ({}) {}").format(sql.SQL(c.expr or ""), sql.SQL(kind))


def create_table(
    src: Conn, dst: Conn, name: str | TableName, *, full: bool = False
) -> CreatePlan | None:
    """Creates the provider's table `name` on the subscriber if it is missing there, in one
    subscriber transaction (see `plan_create`). Returns the plan run, or None when the table
    already existed. On a subscriber of an older major than the provider, an optional part
    that fails there is left out with a warning; elsewhere any failure creates nothing.
    Serial sequences are created at their start value: sync their values with
    `sequences.sync` afterwards; create its foreign keys with `create_foreign_keys` once the
    tables they reference are there."""
    table = resolve_one(src, name, where="the provider")
    older = major(dst) < major(src)
    with dst.transaction():
        _empty_search_path(dst)
        if exists(dst, table):
            return None
        plan = plan_create(src, table, full=full, target=major(dst))
        try:
            for stmt in plan.statements:
                dst.execute(stmt)
            for part in plan.optional:
                if older:
                    _create_optional(dst, plan, part, major(src))
                else:
                    dst.execute(part.statement)
        except psycopg.Error as e:
            raise TableError(
                f"cannot create {table} on the subscriber: {first_line(e)}; create the "
                "objects it depends on (types, schemas) there first, or create the table by hand"
            ) from None
    for note in plan.notes:
        log.warning("%s", note)
    log.info("created %s on the subscriber (%s)", table, "full" if full else "columns + key")
    return plan


def _create_optional(dst: Conn, plan: CreatePlan, part: OptionalPart, provider: int) -> None:
    """Runs one optional part on an older subscriber (in a savepoint); one that this major
    cannot run is left out, with a note."""
    try:
        with dst.transaction():
            dst.execute(part.statement)
    except psycopg.Error as e:
        plan.notes.append(
            f"{plan.table}: {part.what} left out: PostgreSQL {major(dst)} cannot run it "
            f"({first_line(e)}; the provider runs {provider}); create an equivalent by hand "
            "if you need it"
        )


def create_sequence(src: Conn, dst: Conn, name: str | TableName) -> bool:
    """Creates the provider's sequence on the subscriber if missing (same type and options);
    returns whether it was created. Its value is synced by `sequences.sync`."""
    seq = resolve_one(src, name, kinds=SEQUENCE_KINDS, where="the provider")
    row = src.execute(
        sql.SQL(
            "select format_type(seqtypid, null), seqstart, seqincrement, seqmin, seqmax,"
            " seqcache, seqcycle from pg_sequence where seqrelid = {}"
        ).format(_regclass(seq))
    ).fetchone()
    assert row is not None
    spec = _Seq(seq, *row)
    with dst.transaction():
        if exists(dst, seq):
            return False
        dst.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(seq.schema)))
        dst.execute(
            sql.SQL("CREATE SEQUENCE {} AS {} {}").format(
                seq.ident, sql.SQL(spec.type), spec.options()
            )
        )
    return True
