"""An execute file's header attributes (londiste3's format): which nodes need the file, and the
`@name@` tags replaced with the local table's name.

The header is the comment lines before the first statement; only lines starting with `--*--`
count: `--*-- Key: value1, value2`, a value list ending in `,` going on on the next `--*--`
line. Keys (case does not matter):

- `Local-Table`, `Local-Sequence`: the table (sequence) is replicated on this node;
- `Local-Destination`: the table is replicated here and its local table exists;
- `Need-Table`, `Need-Sequence`, `Need-View`, `Need-Schema`: the object exists here;
- `Need-Function`: `name(nargs)`, a function of that name with that many arguments exists.

A node runs the file when every value matches, skips it (saying why) when none does, and
refuses a file that matches only partly (the node's setup differs from what the file
expects). Names without a schema are in `public`. In the statements, `@value@` of a
`Local-*` value is replaced with the table's (sequence's) local name, quoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg import sql

from londiste_rs.errors import TableError, UsageError
from londiste_rs.pg.names import TableName, name_of

PREFIX = "--*--"
# (key as written in files, what a match means), in the order they are checked
KEYS = {
    "local-table": "Local-Table",
    "local-sequence": "Local-Sequence",
    "local-destination": "Local-Destination",
    "need-table": "Need-Table",
    "need-sequence": "Need-Sequence",
    "need-function": "Need-Function",
    "need-schema": "Need-Schema",
    "need-view": "Need-View",
}
_LOCAL = ("local-table", "local-sequence", "local-destination")


@dataclass(frozen=True)
class ExecAttrs:
    """The attributes of one file: key (lower case) -> values, in file order."""

    values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.values)

    def urlencoded(self) -> str:
        """londiste3's form, `local-table=a%2Cb&need-schema=s`."""
        return urlencode({k: ",".join(v) for k, v in self.values.items()})

    def describe(self) -> str:
        return "; ".join(f"{KEYS[k]}: {', '.join(v)}" for k, v in self.values.items())


def parse_attrs(text: str, what: str = "the file") -> ExecAttrs:
    """The header attributes of an SQL file. An unknown key is refused (UsageError)."""
    found: dict[str, list[str]] = {}
    key: str | None = None  # the key whose values go on on the next line
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break  # the first statement ends the header
        if not line.startswith(PREFIX):
            continue
        line = line[len(PREFIX) :].strip()
        if not line:
            continue
        if key is None:
            name, colon, rest = line.partition(":")
            if not colon:
                continue
            key = name.strip().lower()
            if key not in KEYS:
                raise UsageError(
                    f"{what}: unknown attribute {name.strip()!r} in its header; known: "
                    + ", ".join(KEYS.values())
                )
            line = rest
        found.setdefault(key, []).extend(v.strip() for v in line.split(",") if v.strip())
        if not line.rstrip().endswith(","):
            key = None
    return ExecAttrs({k: tuple(v) for k, v in found.items() if v})


@dataclass(frozen=True)
class Need:
    """Whether this node runs a file, and what matched or did not."""

    run: bool
    matched: list[str]
    missed: list[str]

    @property
    def why_not(self) -> str:
        return ", ".join(self.missed)


def _exists(conn: psycopg.Connection[Any], query: str, params: list[Any]) -> bool:
    return conn.execute(query, params).fetchone() is not None


_RELATION = """
select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where n.nspname = %s and c.relname = %s and c.relkind = any(%s)
"""
_FUNCTION = """
select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
 where n.nspname = %s and p.proname = %s and p.pronargs = %s
"""


def _function(value: str) -> tuple[TableName, int]:
    name, paren, rest = value.partition("(")
    nargs = 0
    if paren:
        digits = rest.rstrip().rstrip(")").strip()
        if not digits.isdigit():
            raise UsageError(f"Need-Function {value!r}: write it as name(number of arguments)")
        nargs = int(digits)
    return name_of(name.strip()), nargs


def need(
    conn: psycopg.Connection[Any],
    attrs: ExecAttrs,
    tables: dict[TableName, TableName],
    seqs: set[TableName],
    what: str = "the file",
) -> Need:
    """Checks the attributes against this node: `tables` maps the tables replicated here
    (global name) to their local tables, `seqs` the sequences replicated here. Raises
    UsageError when they match only partly."""
    if not attrs:
        return Need(True, [], [])
    matched: list[str] = []
    missed: list[str] = []
    for key in KEYS:
        for value in attrs.values.get(key, ()):
            ok = _matches(conn, key, value, tables, seqs)
            (matched if ok else missed).append(f"{KEYS[key]} {value}")
    if matched and missed:
        raise UsageError(
            f"{what}: its attributes match this node only in part (has {', '.join(matched)};"
            f" lacks {', '.join(missed)}); make the node match them or skip the file here"
        )
    return Need(not missed, matched, missed)


def _matches(
    conn: psycopg.Connection[Any],
    key: str,
    value: str,
    tables: dict[TableName, TableName],
    seqs: set[TableName],
) -> bool:
    try:
        if key == "need-function":
            fn, nargs = _function(value)
            return _exists(conn, _FUNCTION, [fn.schema, fn.name, nargs])
        if key == "need-schema":
            schema = value[1:-1].replace('""', '"') if value.startswith('"') else value.lower()
            return _exists(
                conn, "select 1 from pg_catalog.pg_namespace where nspname = %s", [schema]
            )
        name = name_of(value)
    except TableError as e:
        raise UsageError(f"{KEYS[key]} {value!r}: {e}") from None
    if key == "local-table":
        return name in tables
    if key == "local-sequence":
        return name in seqs
    if key == "local-destination":
        dest = tables.get(name)
        return dest is not None and _exists(conn, _RELATION, [dest.schema, dest.name, ["r", "p"]])
    kinds = {"need-table": ["r", "p"], "need-sequence": ["S"], "need-view": ["v", "m"]}[key]
    return _exists(conn, _RELATION, [name.schema, name.name, kinds])


def substitute(
    conn: psycopg.Connection[Any],
    text: str,
    attrs: ExecAttrs,
    tables: dict[TableName, TableName],
    seqs: set[TableName],
) -> str:
    """`@value@` of each Local-* value replaced with its local name, quoted."""
    for key in _LOCAL:
        for value in attrs.values.get(key, ()):
            tag = f"@{value}@"
            if tag not in text:
                continue
            name = name_of(value)
            if key == "local-sequence":
                local = name if name in seqs else None
            else:
                local = tables.get(name)
            if local is None:  # need() matched every value before this runs
                raise UsageError(f"{KEYS[key]} {value} is not replicated here")
            text = text.replace(tag, sql.Identifier(local.schema, local.name).as_string(conn))
    return text
