"""A captured table's source layout, read from the provider's catalog: what the decoder's
`add_table` needs (internals §4) and the type map for user-defined types.

A capture payload is `record_send(NEW)`: every non-dropped column in attnum order, generated
ones included. Binary values of arrays and composites carry the OIDs of their element / field
types; for user-defined types (enums, composites, domains, ...) those differ between databases,
so such columns are "walked" by the decoder, which rewrites the OIDs with the type map.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from londiste_rs.errors import TableError

FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: built-in OIDs are the same everywhere

_COLUMNS = """
select a.attname, a.atttypid::int8, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
       a.attidentity = 'a'
from pg_attribute a
where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""

_KEY = """
select a.attname
from pg_index i cross join unnest(i.indkey) with ordinality k(attnum, ord)
join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
where i.indrelid = %s::regclass and i.indisprimary
order by k.ord
"""

_TYPES = """
select t.oid::int8, n.nspname, t.typname, t.typtype::text,
       case when t.typelem <> 0 and t.typsubscript = 'array_subscript_handler'::regproc
            then t.typelem::int8 end,
       nullif(t.typbasetype, 0)::int8,
       (select rngsubtype::int8 from pg_range where rngtypid = t.oid),
       (select rngtypid::int8 from pg_range where rngmultitypid = t.oid),
       (select array_agg(atttypid::int8 order by attnum) from pg_attribute
         where attrelid = t.typrelid and t.typtype = 'c' and attnum > 0 and not attisdropped)
from pg_type t join pg_namespace n on n.oid = t.typnamespace
where t.oid = any(%s::oid[])
"""


@dataclass(frozen=True)
class TypeInfo:
    """How a type's binary form nests other types (only what OID rewriting needs)."""

    oid: int
    schema: str
    name: str
    kind: str  # array | composite | range | multirange | domain | scalar
    inner: int | None  # element, base, subtype or range type
    fields: tuple[int, ...]  # composite field types

    @property
    def children(self) -> tuple[int, ...]:
        return (
            self.fields
            if self.kind == "composite"
            else (() if self.inner is None else (self.inner,))
        )


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_name: str  # format_type, with typmod
    generated: bool
    identity_always: bool = False  # GENERATED ALWAYS AS IDENTITY (an insert must override it)


@dataclass(frozen=True)
class TableLayout:
    """The source row of a captured table, in payload order."""

    table: str
    columns: tuple[Column, ...]
    key_cols: tuple[int, ...]  # payload indices of the primary key, in key order
    walk_cols: tuple[int, ...]  # payload indices whose values embed user-defined type OIDs
    types: dict[int, TypeInfo]  # every type reachable from the walked columns

    @property
    def ncols(self) -> int:
        return len(self.columns)

    @property
    def out_cols(self) -> tuple[int, ...]:
        """Payload indices written on apply: generated columns are left out."""
        return tuple(i for i, c in enumerate(self.columns) if not c.generated)

    @property
    def user_types(self) -> list[int]:
        """User-defined types the type map must cover for this table."""
        return sorted(oid for oid in self.types if oid >= FIRST_USER_OID)


def _load_types(conn: psycopg.Connection[Any], roots: Iterable[int]) -> dict[int, TypeInfo]:
    """Every type reachable from `roots` through elements, bases, subtypes and fields."""
    types: dict[int, TypeInfo] = {}
    todo = set(roots)
    while todo:
        rows = conn.execute(_TYPES, [sorted(todo)]).fetchall()
        todo = set()
        for oid, schema, name, typtype, elem, base, subtype, range_of, fields in rows:
            if elem is not None:
                kind, inner = "array", elem
            elif typtype == "d":
                kind, inner = "domain", base
            elif typtype == "c":
                kind, inner = "composite", None
            elif typtype == "r":
                kind, inner = "range", subtype
            elif typtype == "m":
                kind, inner = "multirange", range_of
            else:
                kind, inner = "scalar", None
            info = TypeInfo(oid, schema, name, kind, inner, tuple(fields or ()))
            types[oid] = info
            todo.update(c for c in info.children if c not in types)
    return types


def _embeds_user_oids(oid: int, types: dict[int, TypeInfo], depth: int = 0) -> bool:
    """Whether a value's binary form carries a user-defined type's OID somewhere inside."""
    info = types.get(oid)
    if info is None or depth > 32:
        return False
    if info.kind in ("array", "composite"):
        return any(
            c >= FIRST_USER_OID or _embeds_user_oids(c, types, depth + 1) for c in info.children
        )
    return any(_embeds_user_oids(c, types, depth + 1) for c in info.children)


def binary_portable(conn: psycopg.Connection[Any], type_oids: Iterable[int]) -> bool:
    """Whether binary COPY between two servers is safe for values of these types: the binary
    forms of arrays and composites carry their element/field type OIDs, which differ between
    servers for user types. Everything else (enums, domains, ranges, extension base types)
    is sent without OIDs."""
    oids = list(type_oids)
    types = _load_types(conn, oids)
    return not any(_embeds_user_oids(oid, types) for oid in oids)


def table_layout(conn: psycopg.Connection[Any], table: str) -> TableLayout:
    """Reads the layout of `table` (a name as SQL reads it) from the catalog."""
    try:
        rows = conn.execute(_COLUMNS, [table]).fetchall()
    except psycopg.errors.UndefinedTable:
        raise TableError(f"table {table} does not exist; check its name (schema.table)") from None
    columns = tuple(Column(*r) for r in rows)
    names = [c.name for c in columns]
    key = tuple(names.index(r[0]) for r in conn.execute(_KEY, [table]).fetchall())
    if not key:
        raise TableError(f"table {table} has no primary key; add one and add the table again")
    types = _load_types(conn, {c.type_oid for c in columns})
    walk = tuple(i for i, c in enumerate(columns) if _embeds_user_oids(c.type_oid, types))
    reachable: dict[int, TypeInfo] = {}
    todo = [columns[i].type_oid for i in walk]
    while todo:
        oid = todo.pop()
        if oid not in reachable and oid in types:
            reachable[oid] = types[oid]
            todo.extend(types[oid].children)
    return TableLayout(table, columns, key, walk, reachable)


def type_map(
    dst: psycopg.Connection[Any], layouts: Iterable[TableLayout]
) -> dict[int, tuple[int, str, int | None]]:
    """{source oid: (subscriber oid, kind, inner source oid)} for every type the layouts' walked
    columns reach, found on the subscriber by schema and name (BatchDecoder.set_type_map)."""
    wanted: dict[int, tuple[TypeInfo, str]] = {}
    for layout in layouts:
        for info in layout.types.values():
            wanted.setdefault(info.oid, (info, layout.table))
    user = [info for info, _ in wanted.values() if info.oid >= FIRST_USER_OID]
    found: dict[tuple[str, str], int] = {}
    if user:
        rows = dst.execute(
            "select n.nspname, t.typname, t.oid::int8 from pg_type t"
            " join pg_namespace n on n.oid = t.typnamespace"
            " where (n.nspname, t.typname) in (select * from unnest(%s::text[], %s::text[]))",
            [[i.schema for i in user], [i.name for i in user]],
        ).fetchall()
        found = {(r[0], r[1]): r[2] for r in rows}
    result: dict[int, tuple[int, str, int | None]] = {}
    # Arrays last, so a missing type is reported by its own name rather than as _name.
    for info, table in sorted(wanted.values(), key=lambda w: w[0].kind == "array"):
        dst_oid = info.oid
        if info.oid >= FIRST_USER_OID:
            if (info.schema, info.name) not in found:
                raise TableError(
                    f"type {info.schema}.{info.name} used by table {table} does not exist on "
                    "the subscriber; create it there (same name and definition) first"
                )
            dst_oid = found[(info.schema, info.name)]
        result[info.oid] = (dst_oid, info.kind, info.inner)
    return result


def unique_only_by_key(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether the table's primary key is its only unique index or exclusion constraint
    (then a row with a new key conflicts with no other row)."""
    row = conn.execute(
        "select not exists (select from pg_index i where i.indrelid = %s::regclass"
        " and (i.indisunique or i.indisexclusion) and not i.indisprimary)",
        [table],
    ).fetchone()
    return bool(row and row[0])


def parents_first(conn: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    """`tables` sorted so that a table referenced by a foreign key comes before the tables
    referencing it (a cycle keeps the given order for its members)."""
    oids = [
        int(conn.execute("select %s::regclass::oid::int8", [t]).fetchone()[0])  # type: ignore[index]
        for t in tables
    ]
    edges = conn.execute(
        "select conrelid::int8, confrelid::int8 from pg_constraint"
        " where contype = 'f' and conrelid = any(%s) and confrelid = any(%s)"
        " and conrelid <> confrelid",
        [oids, oids],
    ).fetchall()
    parents: dict[int, set[int]] = {o: set() for o in oids}
    for child, parent in edges:
        parents[child].add(parent)
    done: list[int] = []
    while len(done) < len(oids):
        ready = [o for o in oids if o not in done and parents[o] <= set(done)]
        done.extend(ready or [o for o in oids if o not in done])
    by_oid = dict(zip(oids, tables, strict=True))
    return [by_oid[o] for o in done]
