"""Sequence values from the provider to the subscriber.

A sequence's position is the value its next `nextval` returns: `last_value`, plus one
increment once `is_called`. The regular sync only ever moves a subscriber sequence forward (in
the direction of its increment), so a value handed out on the subscriber is never handed out
again; the cut-over sync (`exact=True`) sets the provider's exact state, even backwards.

`setval` is not transactional and nothing locks a sequence against a concurrent `nextval`:
sequences of a subscriber are expected to be used by replication only until a cut-over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.pg.ddl import SEQUENCE_KINDS, TableName, quoted_name, resolve

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class SeqState:
    name: TableName
    last_value: int
    is_called: bool
    increment: int

    @property
    def next_value(self) -> int:
        """What the next nextval() returns (ignoring MAXVALUE/CYCLE)."""
        return self.last_value + (self.increment if self.is_called else 0)


@dataclass(frozen=True)
class SeqSync:
    name: TableName
    provider: int  # next value on the provider
    before: int  # next value on the subscriber before the sync
    changed: bool


def read(conn: Conn, names: Iterable[TableName]) -> dict[TableName, SeqState]:
    """The current state of each sequence, read in one statement."""
    names = list(names)
    if not names:
        return {}
    parts = [
        sql.SQL(
            "select {i}, s.last_value, s.is_called, p.seqincrement from {seq} s,"
            " pg_sequence p where p.seqrelid = {lit}::regclass"
        ).format(
            i=sql.Literal(i),
            seq=n.ident,
            lit=sql.Literal(quoted_name(n)),
        )
        for i, n in enumerate(names)
    ]
    rows = conn.execute(sql.SQL(" union all ").join(parts)).fetchall()
    return {names[r[0]]: SeqState(names[r[0]], r[1], r[2], r[3]) for r in rows}


def _ahead(a: SeqState, b: SeqState) -> bool:
    """Whether `a` is further along than `b` in the direction `a` moves."""
    return (a.next_value - b.next_value) * (1 if a.increment > 0 else -1) > 0


def sync(
    src: Conn,
    dst: Conn,
    names: Sequence[str | TableName],
    *,
    exact: bool = False,
) -> list[SeqSync]:
    """Sets each subscriber sequence to the provider's state when the provider is ahead (or,
    with `exact`, whenever they differ). `names` may be globs (`public.*_seq`); each must
    exist on both sides (TableError otherwise). Returns one SeqSync per sequence."""
    src_names = resolve(src, names, kinds=SEQUENCE_KINDS, where="the provider")
    resolve(dst, src_names, kinds=SEQUENCE_KINDS, where="the subscriber")
    provider = read(src, src_names)
    if not src.autocommit:
        src.commit()
    out: list[SeqSync] = []
    with dst.transaction():
        local = read(dst, src_names)
        for name in src_names:
            p, s = provider[name], local[name]
            if exact:
                change = (p.last_value, p.is_called) != (s.last_value, s.is_called)
            else:
                change = _ahead(p, s)
            if change:
                dst.execute(
                    "select setval(%s::regclass, %s, %s)",
                    [quoted_name(name), p.last_value, p.is_called],
                )
                log.info("sequence %s: %d -> %d", name, s.next_value, p.next_value)
            out.append(SeqSync(name, p.next_value, s.next_value, change))
    return out
