"""`compare`: is each table of this node equal to its provider's, and which rows differ.

Both sides are frozen at a consistent point (consistent.py). A table is compared by checksums
computed inside both databases at once (one thread per side): first the whole table (row
count and the sum of a 64-bit hash of each row's text), then, where the two differ, the key
range is cut into up to FANOUT sub-ranges (boundaries read from the provider's primary-key
order) whose checksums are compared in one query per side, recursing only into the ranges
that differ (bisection, as data-diff does). A range of at most ROWS_LEVEL rows on both sides
is compared row by row (key and row hash), which names the differing keys: `missing here`
(on the provider only), `extra here` (on this node only) and `different`.

Columns compared are those both sides have (generated ones too: both compute them); a column
whose type differs between the sides is reported and left out of the hashes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from londiste_rs.config import JobConfig
from londiste_rs.errors import TableError, UsageError
from londiste_rs.operations.consistent import Frozen, consistent_point
from londiste_rs.pg.catalog import table_layout
from londiste_rs.pg.db import connect
from londiste_rs.pg.names import TableName, name_of, select
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import require_node
from londiste_rs.store.tables import MergeState

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
T = TypeVar("T")

# Sub-ranges a differing range is cut into, and the size below which rows are compared.
FANOUT = 16
ROWS_LEVEL = 2000
# Differing keys shown per table (all of them are found; repair uses every one).
SHOWN_KEYS = 20

Key = tuple[str, ...]  # a primary key as the text of its columns


@dataclass
class TablePair:
    """One table on both sides: the names, the key and the columns hashed."""

    name: str  # global name
    source: TableName  # on the provider
    dest: TableName  # on this node
    keys: list[str]
    key_types: list[str]  # the provider's format_type of each key column
    columns: list[str]  # compared: on both sides with the same type, provider order
    skipped: list[str] = field(default_factory=list)  # why columns are left out


@dataclass
class TableDiff:
    """What compare found for one table."""

    table: str
    provider_rows: int
    local_rows: int
    missing: list[Key] = field(default_factory=list)  # on the provider only
    extra: list[Key] = field(default_factory=list)  # on this node only
    different: list[Key] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def shown(self, limit: int = SHOWN_KEYS) -> list[tuple[str, Key]]:
        """The first `limit` differing keys, each with what differs, in key order."""
        tagged = [("missing here", k) for k in self.missing]
        tagged += [("extra here", k) for k in self.extra]
        tagged += [("different", k) for k in self.different]
        return sorted(tagged, key=lambda tk: tk[1])[:limit]


def pair(frozen: Frozen, name: str, dest: str | None) -> TablePair:
    """The table's names, key and comparable columns, read in both snapshots."""
    source = name_of(name)
    target = name_of(dest or name)
    there = table_layout(frozen.provider, str(source))
    here = table_layout(frozen.local, str(target))
    mine = {c.name: c for c in here.columns}
    keys = [there.columns[i].name for i in there.key_cols]
    missing_keys = [k for k in keys if k not in mine]
    if missing_keys:
        raise TableError(
            f"{name}: key column {missing_keys[0]} is missing on this node; the tables cannot be "
            "compared (add the column, or resync the table)"
        )
    columns, skipped = [], []
    for c in there.columns:
        local = mine.get(c.name)
        if local is None:
            skipped.append(f"column {c.name} only on the provider")
        elif local.type_name != c.type_name:
            skipped.append(f"column {c.name} is {local.type_name} here, {c.type_name} there")
        else:
            columns.append(c.name)
    skipped += [
        f"column {n} only on this node" for n in mine if n not in {c.name for c in there.columns}
    ]
    key_types = [there.columns[i].type_name for i in there.key_cols]
    for k, kt in zip(keys, key_types, strict=True):
        if mine[k].type_name != kt:
            raise TableError(
                f"{name}: key column {k} is {mine[k].type_name} here, {kt} on the provider; "
                "the tables cannot be compared"
            )
    return TablePair(name, source, target, keys, key_types, columns, skipped)


# -- the queries -------------------------------------------------------------------------------


def _key_row(p: TablePair) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(k) for k in p.keys))


def _key_value(p: TablePair, key: Key) -> sql.Composable:
    """A key as a row of literals cast to the key columns' types."""
    return sql.SQL("({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t))
            for v, t in zip(key, p.key_types, strict=True)
        )
    )


def _range(p: TablePair, lo: Key | None, hi: Key | None) -> sql.Composable:
    """`lo <= key < hi` (either end open)."""
    parts: list[sql.Composable] = [sql.SQL("true")]
    if lo is not None:
        parts.append(sql.SQL("{} >= {}").format(_key_row(p), _key_value(p, lo)))
    if hi is not None:
        parts.append(sql.SQL("{} < {}").format(_key_row(p), _key_value(p, hi)))
    return sql.SQL(" and ").join(parts)


def _row_hash(p: TablePair) -> sql.Composable:
    return sql.SQL("hashtextextended(row({})::text, 0)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in p.columns)
    )


def _key_text(p: TablePair) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in p.keys)


def _segment_sums(
    conn: Conn, p: TablePair, table: TableName, lo: Key | None, hi: Key | None, bounds: list[Key]
) -> list[tuple[int, int]]:
    """(rows, hash sum) of each segment of [lo, hi) cut at `bounds`, in one scan."""
    cases = sql.SQL(" ").join(
        sql.SQL("when {} < {} then {}").format(_key_row(p), _key_value(p, b), sql.Literal(i))
        for i, b in enumerate(bounds)
    )
    seg = (
        sql.SQL("case {} else {} end").format(cases, sql.Literal(len(bounds)))
        if bounds
        else sql.SQL("0")
    )
    query = sql.SQL(
        "select {seg} s, count(*), coalesce(sum({h}), 0)::text from only {t} where {r} group by 1"
    ).format(seg=seg, h=_row_hash(p), t=table.ident, r=_range(p, lo, hi))
    sums = [(0, 0)] * (len(bounds) + 1)
    for s, n, total in conn.execute(query).fetchall():
        sums[int(s)] = (int(n), int(total))
    return sums


def _bounds(conn: Conn, p: TablePair, lo: Key | None, hi: Key | None, rows: int) -> list[Key]:
    """Up to FANOUT - 1 keys cutting [lo, hi) into ranges of about equal row counts."""
    step = max(1, rows // FANOUT)
    query = sql.SQL(
        "select {k} from (select {keys}, row_number() over (order by {kr}) n from only {t}"
        " where {r}) x where n % {step} = 1 and n > 1 order by n"
    ).format(
        k=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in p.keys),
        keys=sql.SQL(", ").join(sql.Identifier(k) for k in p.keys),
        kr=sql.SQL(", ").join(sql.Identifier(k) for k in p.keys),
        t=p.source.ident,
        r=_range(p, lo, hi),
        step=sql.Literal(step),
    )
    return [tuple(r) for r in conn.execute(query).fetchall()][: FANOUT - 1]


def _rows(
    conn: Conn, p: TablePair, table: TableName, lo: Key | None, hi: Key | None
) -> dict[Key, int]:
    query = sql.SQL("select {k}, {h} from only {t} where {r}").format(
        k=_key_text(p), h=_row_hash(p), t=table.ident, r=_range(p, lo, hi)
    )
    return {tuple(r[:-1]): int(r[-1]) for r in conn.execute(query).fetchall()}


# -- the bisection -----------------------------------------------------------------------------


def _both(
    pool: ThreadPoolExecutor, frozen: Frozen, p: TablePair, query: Callable[..., T], *args: Any
) -> tuple[T, T]:
    """Runs `query` on the provider's table and on this node's at once."""
    a = pool.submit(query, frozen.provider, p, p.source, *args)
    b = pool.submit(query, frozen.local, p, p.dest, *args)
    return a.result(), b.result()


def compare_table(frozen: Frozen, p: TablePair, pool: ThreadPoolExecutor) -> TableDiff:
    prov, local = frozen.provider, frozen.local
    (total_there,), (total_here,) = _both(pool, frozen, p, _segment_sums, None, None, [])
    diff = TableDiff(p.name, total_there[0], total_here[0], notes=list(p.skipped))
    todo: list[tuple[Key | None, Key | None, int, int]] = []
    if total_there != total_here:
        todo.append((None, None, total_there[0], total_here[0]))
    while todo:
        lo, hi, n_there, n_here = todo.pop()
        if max(n_there, n_here) <= ROWS_LEVEL:
            rows_there, rows_here = _both(pool, frozen, p, _rows, lo, hi)
            for k, h in rows_there.items():
                if k not in rows_here:
                    diff.missing.append(k)
                elif rows_here[k] != h:
                    diff.different.append(k)
            diff.extra += [k for k in rows_here if k not in rows_there]
            continue
        bounds = _bounds(prov, p, lo, hi, n_there) if n_there else []
        if not bounds:  # nothing to cut on the provider's side: compare the rows
            bounds = _bounds(local, p, lo, hi, n_here)
        sums_there, sums_here = _both(pool, frozen, p, _segment_sums, lo, hi, bounds)
        edges: list[Key | None] = [lo, *bounds, hi]
        for i, (a, b) in enumerate(zip(sums_there, sums_here, strict=True)):
            if a != b:
                todo.append((edges[i], edges[i + 1], a[0], b[0]))
    for keys in (diff.missing, diff.extra, diff.different):
        keys.sort()
    return diff


def chosen_tables(
    cfg: JobConfig, local: Conn, names: Sequence[str], verb: str
) -> list[tuple[str, str | None]]:
    """(global name, local name) of the 'ok' tables named (all when none is)."""
    states = store_tables.table_states(local, cfg.queue_name)
    ok = {s.table_name: s for s in states if s.merge_state is MergeState.OK}
    if names:
        wanted = [str(t) for t in select(list(names), [name_of(s.table_name) for s in states],
                                         where="this node's tables")]  # fmt: skip
        not_ok = [t for t in wanted if t not in ok]
        if not_ok:
            state = next(s.state for s in states if s.table_name == not_ok[0])
            raise UsageError(
                f"table {not_ok[0]} is {state} here; {verb} works on tables in sync "
                "(wait-sync first)"
            )
    else:
        wanted = sorted(ok)
    if not wanted:
        raise UsageError(f"no table in sync on this node to {verb}; add tables and wait-sync")
    return [(t, ok[t].dest_table) for t in wanted]


def compare(cfg: JobConfig, names: Sequence[str]) -> list[TableDiff]:
    """Compares the node's tables with its provider's at one consistent point."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("branch", "leaf"), "compare")
        tables = chosen_tables(cfg, conn, names, "compare")
    with consistent_point(cfg, info, [name_of(t) for t, _ in tables]) as frozen, \
            ThreadPoolExecutor(2) as pool:  # fmt: skip
        out = []
        for name, dest in tables:
            p = pair(frozen, name, dest)
            d = compare_table(frozen, p, pool)
            log.info("%s: %s", name, "equal" if d.equal else "different")
            out.append(d)
        return out
