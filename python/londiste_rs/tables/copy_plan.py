"""Planning a table's initial copy (tables/initial_copy.py runs it): the columns both sides
have, the snapshot transaction that every range reads under, ctid ranges of equal size, the
provider's row estimate, and the order of several tables (largest first)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from londiste_rs.errors import LondisteError, TableError
from londiste_rs.pg import ddl
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.catalog import binary_portable
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.ddl import Column
from londiste_rs.pg.names import TableName
from londiste_rs.pg.snapshot import Snapshot

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def common_columns(table: TableName, src: Sequence[Column], dst: Sequence[Column]) -> list[str]:
    """Columns to copy, in the subscriber's order: present on both sides and not generated on
    the subscriber (PostgreSQL computes those). Identity columns are copied as they are (COPY
    writes given values even into GENERATED ALWAYS). Types must match by name."""
    by_name = {c.name: c for c in src}
    out: list[str] = []
    for col in dst:
        other = by_name.get(col.name)
        if other is None or col.generated:
            continue
        if other.type != col.type:
            raise TableError(
                f"column {col.name!r} of {table} is {other.type} on the provider but "
                f"{col.type} on the subscriber; alter one side so the types match"
            )
        out.append(col.name)
    only_src = [c.name for c in src if c.name not in {d.name for d in dst}]
    only_dst = [c.name for c in dst if c.name not in by_name and not c.generated]
    if only_src or only_dst:
        log.warning(
            "%s: copying common columns only (provider only: %s; subscriber only: %s)",
            table, ", ".join(only_src) or "-", ", ".join(only_dst) or "-",
        )  # fmt: skip
    if not out:
        raise TableError(
            f"{table} has no column in common between provider and subscriber; "
            "create the subscriber table with the provider's columns (add-table --create)"
        )
    return out


def ranges(nblocks: int, block_size: int, jobs: int, min_range_bytes: int) -> list[sql.Composable]:
    """WHERE clauses cutting the heap into `n` ctid ranges of equal block counts."""
    n = max(1, min(jobs, nblocks * block_size // max(min_range_bytes, 1)))
    if n == 1:
        return [sql.SQL("")]
    cuts = [nblocks * i // n for i in range(1, n)]

    def tid(block: int) -> sql.Composable:
        return sql.SQL("{}::tid").format(sql.Literal(f"({block},0)"))

    out: list[sql.Composable] = [sql.SQL(" WHERE ctid < {}").format(tid(cuts[0]))]
    for lo, hi in itertools.pairwise(cuts):
        out.append(sql.SQL(" WHERE ctid >= {} AND ctid < {}").format(tid(lo), tid(hi)))
    out.append(sql.SQL(" WHERE ctid >= {}").format(tid(cuts[-1])))
    return out


def estimate(conn: Conn, table: TableName, partitioned: bool) -> tuple[int, int, int | None]:
    """(heap blocks now, block size, estimated rows) on the provider; a partitioned table's
    estimate is the sum over its partitions (and its blocks are not used: one range)."""
    rel = sql.SQL("{}::regclass").format(sql.Literal(pgnames.quoted_name(table)))
    parts = (
        sql.SQL("(select relid from pg_partition_tree({}) where isleaf)").format(rel)
        if partitioned
        else sql.SQL("({})").format(rel)
    )
    row = conn.execute(
        sql.SQL(
            "select coalesce(sum(pg_relation_size(c.oid)), 0),"
            " current_setting('block_size')::int, sum(greatest(c.reltuples, 0)),"
            " sum(c.relpages), bool_or(c.reltuples < 0)"
            " from pg_class c where c.oid in {}"
        ).format(parts)
    ).fetchone()
    assert row is not None
    size, block_size, reltuples, relpages, unknown = row
    nblocks = int(size) // int(block_size)
    if reltuples is None or unknown:
        return nblocks, block_size, None
    total = reltuples if relpages <= 0 else reltuples / relpages * nblocks
    return nblocks, block_size, int(total)


@dataclass(frozen=True)
class CopyPlan:
    source: TableName
    target: TableName
    names: list[str]
    binary: bool
    total: int | None
    wheres: list[sql.Composable]
    only: sql.SQL
    snapshot: Snapshot
    export_id: str | None

    def copy_out(self, where: sql.Composable) -> sql.Composed:
        return sql.SQL("COPY (SELECT {} FROM {}{}{}) TO STDOUT (FORMAT {})").format(
            self.cols, self.only, self.source.ident, where, self.fmt
        )

    def copy_in(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            self.target.ident, self.cols, self.fmt
        )

    @property
    def cols(self) -> sql.Composed:
        return sql.SQL(", ").join(map(sql.Identifier, self.names))

    @property
    def fmt(self) -> sql.SQL:
        return sql.SQL("binary" if self.binary else "text")


# Text COPY output that any DateStyle parses back and that loses no float digit.
TEXT_SETTINGS = (("DateStyle", "ISO"), ("IntervalStyle", "postgres"), ("extra_float_digits", "3"))


def set_local(conn: Conn, settings: Sequence[tuple[str, str]]) -> None:
    for name, value in settings:
        conn.execute("select set_config(%s, %s, true)", [name, value])


def snapshot_plan(
    coord: Conn, meta: Conn, source: TableName, target: TableName, jobs: int, min_range: int
) -> CopyPlan:
    """Opens the snapshot transaction on `coord` and plans the copy. The source lock comes
    first, so no TRUNCATE or ALTER of the source slips in between the snapshot and the end of
    the copy; `meta` reads the target's columns."""
    coord.isolation_level = IsolationLevel.REPEATABLE_READ
    coord.read_only = True
    partitioned = pgnames.relkind(coord, source) == "p"
    # A partitioned table's rows are in its partitions: read through the parent, one range.
    only = sql.SQL("" if partitioned else "ONLY ")
    coord.execute(sql.SQL("LOCK TABLE {}{} IN ACCESS SHARE MODE").format(only, source.ident))
    src_cols = ddl.columns(coord, source)
    with meta.transaction():  # a savepoint in a caller's transaction
        dst_cols = ddl.columns(meta, target)
    names = common_columns(target, src_cols, dst_cols)
    by_name = {c.name: c for c in src_cols}
    binary = binary_portable(coord, [by_name[n].type_oid for n in names])
    nblocks, block_size, total = estimate(coord, source, partitioned)
    wheres = ranges(nblocks, block_size, 1 if partitioned else jobs, min_range)
    row = coord.execute(
        "select pg_current_snapshot()::text"
        + (", pg_export_snapshot()" if len(wheres) > 1 else ", null")
    ).fetchone()
    assert row is not None
    if not binary:
        set_local(coord, TEXT_SETTINGS)
    return CopyPlan(
        source, target, names, binary, total, wheres, only, Snapshot.parse(row[0]), row[1]
    )


def import_snapshot(dsn: str, plan: CopyPlan, encoding: str, cleanup: list[Conn]) -> Conn:
    """A provider connection whose transaction sees exactly the coordinator's snapshot."""
    conn = connect(dsn, what="provider", client_encoding=encoding)
    cleanup.append(conn)
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(plan.export_id)))
    if not plan.binary:
        set_local(conn, TEXT_SETTINGS)
    return conn


# A table's heap size on the provider (a partitioned table's: its partitions'); 0 when the
# table is not there (its copy reports that).
_SIZES = """
select coalesce((select sum(pg_relation_size(relid)) from pg_partition_tree(r)),
                pg_relation_size(r), 0)::int8
from unnest(%s::text[]) with ordinality u(name, i), to_regclass(u.name) r
order by u.i
"""


def largest_first(src_dsn: str, sources: Sequence[str | TableName]) -> list[int]:
    """Indices of `sources` by heap size on the provider, largest first (ties keep their
    order), read in one catalog query; the given order when the provider cannot be asked
    (the copies then report why)."""
    if len(sources) < 2:
        return list(range(len(sources)))
    names: list[str | None] = []
    for s in sources:
        try:
            names.append(pgnames.quoted_name(s if isinstance(s, TableName) else pgnames.name_of(s)))
        except TableError:  # not a valid name: its copy says so
            names.append(None)
    try:
        with connect(src_dsn, autocommit=True, what="provider") as conn:
            sizes = [int(r[0]) for r in conn.execute(_SIZES, [names]).fetchall()]
    except (LondisteError, psycopg.Error) as e:
        log.debug("table sizes not read, copying in the given order: %s", first_line(e))
        return list(range(len(sources)))
    return sorted(range(len(sources)), key=lambda i: -sizes[i])
