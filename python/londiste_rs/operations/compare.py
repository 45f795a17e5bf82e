"""`compare`: is each table of this node equal to its provider's, and which rows differ.

Both sides are frozen at a consistent point (consistent.py). A table is compared by checksums
computed inside both databases at once (one thread per side; the queries are in checksum.py):
first the whole table (row count and the sum of a 64-bit hash of each row), then, where the
two differ, the key range is cut into segments whose checksums are compared in one query per
side, recursing only into the segments that differ (bisection, as data-diff does). An integer
key is cut by arithmetic into up to a thousand segments in one scan, so one row changed in a
million is found in two full scans; other keys are cut at boundaries read from the provider.
A range of at most ROWS_LEVEL rows on both sides is compared row by row (key and row hash),
which names the differing keys: `missing here` (on the provider only), `extra here` (on this
node only) and `different`.

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

from londiste_rs.config import JobConfig
from londiste_rs.errors import TableError, UsageError
from londiste_rs.operations import checksum
from londiste_rs.operations.checksum import Key
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

# Segments a range of a non-integer key is cut into, and the size below which rows are compared.
FANOUT = 16
ROWS_LEVEL = 2000
# Differing keys shown per table (all of them are found; repair uses every one).
SHOWN_KEYS = 20

Range = tuple[Key | None, Key | None, int, int]  # lo, hi, rows there, rows here


def key_order(key: Key) -> tuple[tuple[int, int, str], ...]:
    """Sorts keys as their values do where they are integers (9 before 10), else as text."""
    return tuple((0, int(v), "") if v.lstrip("-").isdigit() else (1, 0, v) for v in key)


@dataclass
class TablePair:
    """One table on both sides: the names, the key and the columns hashed."""

    name: str  # global name
    source: TableName  # on the provider
    dest: TableName  # on this node
    shape: checksum.Shape  # the key and the compared columns (on both sides, same type)
    skipped: list[str] = field(default_factory=list)  # why columns are left out

    @property
    def keys(self) -> list[str]:
        return list(self.shape.keys)

    @property
    def key_types(self) -> list[str]:
        return list(self.shape.key_types)

    @property
    def columns(self) -> list[str]:
        return list(self.shape.columns)


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
        return sorted(tagged, key=lambda tk: key_order(tk[1]))[:limit]


def pair(frozen: Frozen, name: str, dest: str | None) -> TablePair:
    """The table's names, key and comparable columns, read in both snapshots."""
    source = name_of(name)
    target = name_of(dest or name)
    there = table_layout(frozen.provider, str(source))
    here = table_layout(frozen.local, str(target))
    mine = {c.name: c for c in here.columns}
    key_cols = [there.columns[i] for i in there.key_cols]
    missing_keys = [k.name for k in key_cols if k.name not in mine]
    if missing_keys:
        raise TableError(
            f"{name}: key column {missing_keys[0]} is missing on this node; the tables cannot be "
            "compared (add the column, or resync the table)"
        )
    for k in key_cols:
        if mine[k.name].type_name != k.type_name:
            raise TableError(
                f"{name}: key column {k.name} is {mine[k.name].type_name} here, {k.type_name} "
                "on the provider; the tables cannot be compared"
            )
    columns, skipped = [], []
    for c in there.columns:
        local = mine.get(c.name)
        if local is None:
            skipped.append(f"column {c.name} only on the provider")
        elif local.type_name != c.type_name:
            skipped.append(f"column {c.name} is {local.type_name} here, {c.type_name} there")
        else:
            columns.append(c)
    skipped += [
        f"column {n} only on this node" for n in mine if n not in {c.name for c in there.columns}
    ]
    shape = checksum.Shape(
        keys=[k.name for k in key_cols],
        key_types=[k.type_name for k in key_cols],
        key_oids=[k.type_oid for k in key_cols],
        columns=[c.name for c in columns],
        column_oids=[c.type_oid for c in columns],
    )
    return TablePair(name, source, target, shape, skipped)


# -- the bisection -----------------------------------------------------------------------------


def _both(
    pool: ThreadPoolExecutor, frozen: Frozen, p: TablePair, query: Callable[..., T], *args: Any
) -> tuple[T, T]:
    """Runs `query` on the provider's table and on this node's at once."""
    a = pool.submit(query, frozen.provider, p.shape, p.source, *args)
    b = pool.submit(query, frozen.local, p.shape, p.dest, *args)
    return a.result(), b.result()


def _by_step(r: Range) -> bool:
    """Whether a range may be cut by arithmetic: its ends name only the key's first column
    (a range once cut at full-key boundaries stays so, or a row would be seen twice)."""
    return all(b is None or len(b) == 1 for b in (r[0], r[1]))


def _cut(pool: ThreadPoolExecutor, frozen: Frozen, p: TablePair, r: Range) -> checksum.Cut | None:
    """How to cut a range that is too large to compare row by row (None: compare its rows)."""
    lo, hi, n_there, n_here = r
    if p.shape.integer_key and _by_step(r):
        if lo is None or hi is None:  # the whole table: from the lowest key to the highest
            ext = [e for e in _both(pool, frozen, p, checksum.extent) if e is not None]
            if not ext:
                return None
            first, last = min(e[0] for e in ext), max(e[1] for e in ext) + 1
        else:
            first, last = int(lo[0]), int(hi[0])
        if last - first >= 2:
            wanted = max(FANOUT, -(-2 * max(n_there, n_here) // ROWS_LEVEL))
            return checksum.cut_by_step(p.shape, first, last, min(checksum.MAX_SEGMENTS, wanted))
        lo, hi = (str(first),), (str(last),)  # one value of the first column: cut at keys
    # boundaries from the provider's rows, or this node's when the provider has too few
    for conn, table, rows in ((frozen.provider, p.source, n_there), (frozen.local, p.dest, n_here)):
        bounds = checksum.bounds(conn, p.shape, table, lo, hi, rows, FANOUT) if rows > 1 else []
        if bounds:
            return checksum.cut_at(p.shape, lo, hi, bounds)
    return None


def _compare_rows(
    pool: ThreadPoolExecutor, frozen: Frozen, p: TablePair, r: Range, diff: TableDiff
) -> None:
    rows_there, rows_here = _both(pool, frozen, p, checksum.rows, r[0], r[1])
    for k, h in rows_there.items():
        if k not in rows_here:
            diff.missing.append(k)
        elif rows_here[k] != h:
            diff.different.append(k)
    diff.extra += [k for k in rows_here if k not in rows_there]


def compare_table(frozen: Frozen, p: TablePair, pool: ThreadPoolExecutor) -> TableDiff:
    there, here = _both(pool, frozen, p, checksum.total)
    diff = TableDiff(p.name, there[0], here[0], notes=list(p.skipped))
    todo: list[Range] = [] if there == here else [(None, None, there[0], here[0])]
    while todo:
        r = todo.pop()
        cut = None if max(r[2], r[3]) <= ROWS_LEVEL else _cut(pool, frozen, p, r)
        if cut is None:
            _compare_rows(pool, frozen, p, r, diff)
            continue
        sums_there, sums_here = _both(pool, frozen, p, checksum.segment_sums, r[0], r[1], cut)
        for i, (a, b) in enumerate(zip(sums_there, sums_here, strict=True)):
            if a != b:
                todo.append((cut.edges[i], cut.edges[i + 1], a[0], b[0]))
    for keys in (diff.missing, diff.extra, diff.different):
        keys.sort(key=key_order)
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
