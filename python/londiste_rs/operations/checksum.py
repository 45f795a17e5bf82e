"""The checksum queries of compare: a row hash, key ranges, and how a range is cut.

A row's hash XORs one 64-bit hash per compared column, each seeded by the column's place.
Common built-in types are hashed by their own hash function (the one hash partitioning uses,
stable across major versions); any other type by the hash of its text form, which both
sessions render alike (consistent.SESSION_SETTINGS). A NULL hashes to a constant of its own.

A range of keys is cut into segments in one of two ways:
- **by arithmetic** when the key's first column is an integer: segments of equal width
  between the lowest and highest value, numbered by `(k - lo) / step` in the same scan that
  sums them (no extra pass, no per-row CASE);
- **by boundaries** read from the provider's key order otherwise (one `row_number()` pass),
  numbered by a CASE over the boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.pg.names import TableName

Conn = psycopg.Connection[Any]
Key = tuple[str, ...]  # a primary key (or its first columns) as the text of its columns

# Built-in types hashed natively (OID -> hash function), each equal exactly when its text
# form is: timestamptz is hashed as the UTC timestamp, bool as an integer.
_NATIVE: dict[int, str] = {
    16: "hashint4extended({}::int4, {})",  # bool
    20: "hashint8extended({}, {})",  # int8
    21: "hashint2extended({}, {})",  # int2
    23: "hashint4extended({}, {})",  # int4
    25: 'hashtextextended({} collate "C", {})',  # text
    26: "hashoidextended({}, {})",  # oid
    1042: 'hashbpcharextended({} collate "C", {})',  # char(n)
    1043: 'hashtextextended({} collate "C", {})',  # varchar
    1114: "timestamp_hash_extended({}, {})",  # timestamp
    1184: "timestamp_hash_extended({} at time zone 'UTC', {})",  # timestamptz
    2950: "uuid_hash_extended({}, {})",  # uuid
}
_TEXT = 'hashtextextended({}::text collate "C", {})'
INTEGER_TYPES = {20, 21, 23}
# Segments of one cut: the first cut of a large table goes straight to ~ROWS_LEVEL rows.
MAX_SEGMENTS = 1024


@dataclass(frozen=True)
class Shape:
    """What the queries need to know of a table: its key and its compared columns."""

    keys: Sequence[str]
    key_types: Sequence[str]  # format_type of each key column
    key_oids: Sequence[int]
    columns: Sequence[str]
    column_oids: Sequence[int]

    @property
    def integer_key(self) -> bool:
        """Whether the key's first column is an integer (cut by arithmetic)."""
        return self.key_oids[0] in INTEGER_TYPES


def row_hash(s: Shape) -> sql.Composable:
    terms = [
        sql.SQL("coalesce({}, {})").format(
            sql.SQL(_NATIVE.get(oid, _TEXT)).format(sql.Identifier(c), sql.Literal(i)),
            sql.Literal(-1 - i),
        )
        for i, (c, oid) in enumerate(zip(s.columns, s.column_oids, strict=True))
    ]
    return sql.SQL(" # ").join(terms) if terms else sql.SQL("0::int8")


def _key_row(s: Shape, n: int) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(k) for k in s.keys[:n]))


def key_value(s: Shape, key: Key) -> sql.Composable:
    """A key (or its first columns) as a row of literals cast to the key columns' types."""
    return sql.SQL("({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t))
            for v, t in zip(key, s.key_types[: len(key)], strict=True)
        )
    )


def key_range(s: Shape, lo: Key | None, hi: Key | None) -> sql.Composable:
    """`lo <= key < hi`, either end open; a bound may name only the key's first columns."""
    parts: list[sql.Composable] = [sql.SQL("true")]
    if lo is not None:
        parts.append(sql.SQL("{} >= {}").format(_key_row(s, len(lo)), key_value(s, lo)))
    if hi is not None:
        parts.append(sql.SQL("{} < {}").format(_key_row(s, len(hi)), key_value(s, hi)))
    return sql.SQL(" and ").join(parts)


def _key_text(s: Shape) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in s.keys)


def total(conn: Conn, s: Shape, table: TableName) -> tuple[int, int]:
    """(rows, hash sum) of the whole table."""
    row = conn.execute(
        sql.SQL("select count(*), coalesce(sum({h}), 0)::text from only {t}").format(
            h=row_hash(s), t=table.ident
        )
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def extent(conn: Conn, s: Shape, table: TableName) -> tuple[int, int] | None:
    """The lowest and highest value of the key's first (integer) column, None when empty."""
    row = conn.execute(
        sql.SQL("select min({k}), max({k}) from only {t}").format(
            k=sql.Identifier(s.keys[0]), t=table.ident
        )
    ).fetchone()
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))


@dataclass(frozen=True)
class Cut:
    """Segments of a key range: segment i is [edges[i], edges[i + 1]); `number` gives a
    row's segment in SQL."""

    edges: list[Key | None]
    number: sql.Composable


def cut_by_step(s: Shape, lo: int, hi: int, segments: int) -> Cut:
    """[lo, hi) of the key's first column in `segments` equal widths (at least 1)."""
    step = max(1, -(-(hi - lo) // segments))
    k = sql.Identifier(s.keys[0])
    # int8 arithmetic unless the width does not fit in it (keys spread over all of int8)
    form = "({}::int8 - {}) / {}" if hi - lo < 2**62 else "div({}::numeric - {}, {})"
    number = sql.SQL(form).format(k, sql.Literal(lo), sql.Literal(step))
    edges: list[Key | None] = [(str(v),) for v in range(lo, hi, step)]
    return Cut([*edges, (str(hi),)], number)


def cut_at(s: Shape, lo: Key | None, hi: Key | None, bounds: list[Key]) -> Cut:
    """[lo, hi) cut at the given keys (read from one side's key order)."""
    cases = sql.SQL(" ").join(
        sql.SQL("when {} < {} then {}").format(_key_row(s, len(b)), key_value(s, b), sql.Literal(i))
        for i, b in enumerate(bounds)
    )
    number = (
        sql.SQL("case {} else {} end").format(cases, sql.Literal(len(bounds)))
        if bounds
        else sql.SQL("0")
    )
    return Cut([lo, *bounds, hi], number)


def bounds(
    conn: Conn, s: Shape, table: TableName, lo: Key | None, hi: Key | None, rows: int, n: int
) -> list[Key]:
    """Up to n - 1 keys cutting [lo, hi) into ranges of about equal row counts."""
    step = max(1, rows // n)
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in s.keys)
    query = sql.SQL(
        "select {k} from (select {keys}, row_number() over (order by {keys}) n from only {t}"
        " where {r}) x where n % {step} = 1 and n > 1 order by n"
    ).format(k=_key_text(s), keys=keys, t=table.ident, r=key_range(s, lo, hi),
             step=sql.Literal(step))  # fmt: skip
    return [tuple(r) for r in conn.execute(query).fetchall()][: n - 1]


def segment_sums(
    conn: Conn, s: Shape, table: TableName, lo: Key | None, hi: Key | None, cut: Cut
) -> list[tuple[int, int]]:
    """(rows, hash sum) of each segment of [lo, hi), in one scan."""
    query = sql.SQL(
        "select {n} s, count(*), coalesce(sum({h}), 0)::text from only {t} where {r} group by 1"
    ).format(n=cut.number, h=row_hash(s), t=table.ident, r=key_range(s, lo, hi))
    sums = [(0, 0)] * (len(cut.edges) - 1)
    for seg, n, h in conn.execute(query).fetchall():
        sums[int(seg)] = (int(n), int(h))
    return sums


def rows(conn: Conn, s: Shape, table: TableName, lo: Key | None, hi: Key | None) -> dict[Key, int]:
    """Each row's key and hash in [lo, hi)."""
    query = sql.SQL("select {k}, {h} from only {t} where {r}").format(
        k=_key_text(s), h=row_hash(s), t=table.ident, r=key_range(s, lo, hi)
    )
    return {tuple(r[:-1]): int(r[-1]) for r in conn.execute(query).fetchall()}
