"""Relation names: the global `schema.table` names events carry, and resolving what a user
wrote (globs, quoted parts) against a database's catalog or a list of replicated tables."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.errors import TableError

Conn = psycopg.Connection[Any]

TABLE_KINDS = ("r", "p")
SEQUENCE_KINDS = ("S",)
_GLOB_CHARS = set("*?[")
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "londiste_rs")


@dataclass(frozen=True, order=True)
class TableName:
    """A schema-qualified relation name. `str()` is the global name events carry
    (`schema.table`, each part quoted only when needed, as quote_ident does)."""

    schema: str
    name: str
    text: str = field(default="", compare=False)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.text or f"{quote_part(self.schema)}.{quote_part(self.name)}"


def quote_part(part: str) -> str:
    """quote_ident without the keyword list: used only for names not read from a server."""
    plain = part and (part[0].islower() or part[0] == "_") and part.isascii()
    plain = plain and all(c.islower() or c.isdigit() or c in "_$" for c in part)
    return part if plain else '"' + part.replace('"', '""') + '"'


# -- names ---------------------------------------------------------------------------------


def parse_name(text: str) -> tuple[tuple[str, bool], tuple[str, bool]]:
    """Splits `schema.table` (either part possibly "quoted") into ((schema, quoted),
    (table, quoted)); unquoted parts fold to lower case like SQL; no schema means public."""
    parts: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise TableError(f"table name {text!r} has an unclosed quote; close it")
                buf.append(text[j:k])
                if text[k + 1 : k + 2] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            parts.append(("".join(buf), True))
        else:
            k = text.find(".", i)
            k = n if k < 0 else k
            part = text[i:k].strip()
            if not part or '"' in part:
                raise TableError(
                    f"table name {text!r} is not a valid [schema.]table name; "
                    'quote names with dots, spaces or capitals: public."My Table"'
                )
            parts.append((part.lower(), False))
            i = k
        if i >= n:
            break
        if text[i] != ".":
            raise TableError(f"table name {text!r} has text after a quoted part; put a dot there")
        i += 1
    if len(parts) == 1:
        return ("public", True), parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise TableError(f"table name {text!r} has more than two parts; write it as schema.table")


def _is_glob(part: tuple[str, bool]) -> bool:
    return not part[1] and bool(_GLOB_CHARS & set(part[0]))


def _matches(part: tuple[str, bool], value: str) -> bool:
    return fnmatch.fnmatchcase(value, part[0]) if _is_glob(part) else value == part[0]


_RELATIONS = """
select n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = any(%s) and not c.relispartition
  and n.nspname <> all(%s) and n.nspname !~ '^pg_(toast|temp)'
"""


def resolve(
    conn: Conn,
    patterns: Iterable[str | TableName],
    *,
    kinds: Sequence[str] = TABLE_KINDS,
    where: str = "the database",
) -> list[TableName]:
    """User-written names or globs (`orders`, `public."Mixed Case"`, `public.*`) to the
    qualified names that exist, in the order asked, without duplicates. A name that does not
    exist, or a glob that matches nothing, raises one TableError."""
    what = "sequence" if tuple(kinds) == SEQUENCE_KINDS else "table"
    out: list[TableName] = []
    for pattern in patterns:
        if isinstance(pattern, TableName):
            schema, table = (pattern.schema, True), (pattern.name, True)
            shown = str(pattern)
        else:
            schema, table = parse_name(pattern)
            shown = pattern
        query = _RELATIONS
        params: list[Any] = [list(kinds), list(_SYSTEM_SCHEMAS)]
        if not _is_glob(schema):
            query += " and n.nspname = %s"
            params.append(schema[0])
        if not _is_glob(table):
            query += " and c.relname = %s"
            params.append(table[0])
        rows = conn.execute(query + " order by 1, 2", params).fetchall()
        hits = [
            TableName(r[0], r[1], r[2])
            for r in rows
            if _matches(schema, r[0]) and _matches(table, r[1])
        ]
        if not hits:
            if _is_glob(schema) or _is_glob(table):
                raise TableError(f"no {what} on {where} matches {shown!r}; check the pattern")
            raise TableError(
                f"{what} {shown!r} does not exist on {where}; check the name "
                '(quote mixed-case names: public."My Table") or create it'
            )
        out.extend(h for h in hits if h not in out)
    return out


def name_of(text: str) -> TableName:
    """A registry name (`schema.table` as quote_ident writes it, or any exact user-written
    name) as a TableName, without a database."""
    schema, table = parse_name(text)
    return TableName(schema[0], table[0], text if "." in text else "")


def select(
    patterns: Iterable[str],
    candidates: Sequence[TableName],
    *,
    what: str = "table",
    where: str,
) -> list[TableName]:
    """`resolve` over a given list of names instead of the catalog (e.g. the tables a queue
    carries): the candidates the names or globs match, in the order asked, without
    duplicates; a name or glob that matches none raises one TableError."""
    out: list[TableName] = []
    for pattern in patterns:
        schema, table = parse_name(pattern)
        hits = [c for c in candidates if _matches(schema, c.schema) and _matches(table, c.name)]
        if not hits:
            if _is_glob(schema) or _is_glob(table):
                raise TableError(f"no {what} of {where} matches {pattern!r}; check the pattern")
            raise TableError(
                f"{what} {pattern!r} is not one of {where}; check the name "
                '(quote mixed-case names: public."My Table")'
            )
        out.extend(h for h in hits if h not in out)
    return out


def resolve_one(
    conn: Conn, name: str | TableName, *, kinds: Sequence[str] = TABLE_KINDS, where: str
) -> TableName:
    """One exact name (no glob) resolved as `resolve` does."""
    found = resolve(conn, [name], kinds=kinds, where=where)
    if len(found) != 1:
        raise TableError(f"{name!s} names {len(found)} relations on {where}; name exactly one")
    return found[0]


def quoted_name(table: TableName) -> str:
    """Both parts always quoted: the text form `::regclass` and to_regclass() parse."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in (table.schema, table.name))


def exists(conn: Conn, table: TableName) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", [quoted_name(table)]).fetchone()
    return bool(row and row[0])


def relkind(conn: Conn, table: TableName) -> str:
    """pg_class.relkind: 'r' table, 'p' partitioned table, 'S' sequence, ..."""
    row = conn.execute(
        "select relkind::text from pg_class where oid = to_regclass(%s)", [quoted_name(table)]
    ).fetchone()
    if row is None:
        raise TableError(f"{table} disappeared while being worked on; run the command again")
    return str(row[0])


def regclass(table: TableName) -> sql.Composable:
    """`'"schema"."table"'::regclass` for catalog queries."""
    return sql.SQL("{}::regclass").format(sql.Literal(quoted_name(table)))


def empty_search_path(conn: Conn) -> None:
    """For the rest of the current transaction: catalog functions print qualified names."""
    conn.execute("select set_config('search_path', '', true)")
