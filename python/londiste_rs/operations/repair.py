"""`repair`: makes this node's differing rows equal to the provider's.

At a consistent point with this node's worker paused (consistent.py), compare finds the
differing keys (compare.py); the provider's rows of the missing and different keys are read
from its frozen snapshot, and in ONE transaction on this node the extra rows are deleted and
the others upserted. The provider is only read; equal ranges are never dumped. `--dry-run`
returns the statements instead of running them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.config import JobConfig
from londiste_rs.errors import TableError
from londiste_rs.operations.checksum import Key
from londiste_rs.operations.compare import (
    TableDiff,
    TablePair,
    chosen_tables,
    compare_table,
    pair,
)
from londiste_rs.operations.consistent import Frozen, consistent_point
from londiste_rs.pg.catalog import table_layout
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.names import name_of
from londiste_rs.store.node import require_node

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# Keys read from the provider per statement.
FETCH_KEYS = 500


@dataclass
class TableRepair:
    diff: TableDiff
    statements: list[str] = field(default_factory=list)


def _chunks(keys: Sequence[Key], n: int) -> Iterator[Sequence[Key]]:
    for i in range(0, len(keys), n):
        yield keys[i : i + n]


def _literal(value: str | None, type_name: str) -> sql.Composable:
    if value is None:
        return sql.SQL("NULL")
    return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(type_name))


def _statements(frozen: Frozen, p: TablePair, d: TableDiff) -> list[sql.Composable]:
    """DELETE of the extra keys, INSERT ... ON CONFLICT DO UPDATE of the provider's rows."""
    here = table_layout(frozen.local, str(p.dest))
    local = {c.name: c for c in here.columns}
    there = {c.name: c for c in table_layout(frozen.provider, str(p.source)).columns}
    cols = [c for c in p.columns if not local[c].generated]
    types = [there[c].type_name for c in cols]
    overriding = any(local[c].identity_always for c in cols)
    out: list[sql.Composable] = []
    key_row = sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(k) for k in p.keys))
    for key in d.extra:
        out.append(sql.SQL("DELETE FROM ONLY {} WHERE {} = ({})").format(
            p.dest.ident, key_row,
            sql.SQL(", ").join(_literal(v, t) for v, t in zip(key, p.key_types, strict=True)),
        ))  # fmt: skip
    wanted = sorted([*d.missing, *d.different])
    updates = [c for c in cols if c not in p.keys]
    conflict = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in updates
            )
        )
        if updates
        else sql.SQL("DO NOTHING")
    )
    for chunk in _chunks(wanted, FETCH_KEYS):
        keys = sql.SQL(", ").join(
            sql.SQL("({})").format(sql.SQL(", ").join(
                _literal(v, t) for v, t in zip(k, p.key_types, strict=True)))
            for k in chunk
        )  # fmt: skip
        query = sql.SQL("select {} from only {} where {} in ({}) order by {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols),
            p.source.ident, key_row, keys, key_row,
        )  # fmt: skip
        for row in frozen.provider.execute(query).fetchall():
            out.append(sql.SQL("INSERT INTO {} ({}) {}VALUES ({}) ON CONFLICT ({}) {}").format(
                p.dest.ident,
                sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                sql.SQL("OVERRIDING SYSTEM VALUE " if overriding else ""),
                sql.SQL(", ").join(_literal(v, t) for v, t in zip(row, types, strict=True)),
                sql.SQL(", ").join(sql.Identifier(k) for k in p.keys),
                conflict,
            ))  # fmt: skip
    return out


def repair(cfg: JobConfig, names: Sequence[str], dry_run: bool) -> list[TableRepair]:
    """Repairs (or with `dry_run` only plans) the node's tables at one consistent point."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("branch", "leaf"), "repair")
        tables = chosen_tables(cfg, conn, names, "repair")
    out: list[TableRepair] = []
    with consistent_point(cfg, info, [name_of(t) for t, _ in tables], pause_node=True) as frozen:
        with ThreadPoolExecutor(2) as pool:
            plans = []
            for name, dest in tables:
                p = pair(frozen, name, dest)
                d = compare_table(frozen, p, pool)
                plans.append((p, d, _statements(frozen, p, d) if not d.equal else []))
        with connect(cfg.db, what="node database") as writer:
            for _p, d, stmts in plans:
                out.append(TableRepair(d, [s.as_string(writer) for s in stmts]))
            if dry_run:
                return out
            try:
                with writer.transaction():
                    for r in out:
                        for s in r.statements:
                            writer.execute(s.encode())
            except psycopg.Error as e:
                raise TableError(
                    f"repair failed, nothing was changed: {first_line(e)}; fix the cause "
                    "(a trigger or constraint of this node's table) and run repair again"
                ) from None
    for r in out:
        if r.statements:
            log.info("%s: repaired with %d statements", r.diff.table, len(r.statements))
    return out
