"""Sequences: the verbs (add-seq, remove-seq, seqs, sync-seqs) and their values moved from
the provider to the subscriber.

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

from londiste_rs.config import JobConfig
from londiste_rs.errors import TableError, UsageError
from londiste_rs.pg.db import connect
from londiste_rs.pg.ddl import create_sequence
from londiste_rs.pg.names import SEQUENCE_KINDS, TableName, exists, name_of, quoted_name, resolve
from londiste_rs.pg.names import select as select_names
from londiste_rs.store import tables as store_tables
from londiste_rs.tables.common import SUBSCRIBERS, all_user, local_seqs, node_for, provider_location

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


# -- the verbs: add-seq, remove-seq, seqs, sync-seqs, and the worker's periodic sync ---------


def add_seqs(cfg: JobConfig, names: list[str], all_: bool, create: bool = False) -> list[str]:
    """Registers sequences: on the root any of the database's; on a branch or leaf those its
    provider replicates (created here with --create), moved up to the provider's value."""
    if not names and not all_:
        raise UsageError("add-seq needs sequence names or --all")
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = node_for(cfg, conn, "add-seq")
        have = set(local_seqs(conn, queue))
        if info.node_type == "root":
            if create:
                raise UsageError("--create is for a branch or leaf; the root's sequences exist")
            wanted = (
                all_user(conn, SEQUENCE_KINDS)
                if all_
                else resolve(conn, names, kinds=SEQUENCE_KINDS, where=f"root {info.node_name}")
            )
            wanted = [s for s in wanted if s not in have]
            with conn.transaction():
                for s in wanted:
                    store_tables.register_seq(conn, queue, str(s))
            return [str(s) for s in wanted]
        with connect(provider_location(cfg, info), autocommit=True, what="provider") as prov:
            carried = local_seqs(prov, queue)
            where = f"the sequences provider {info.provider_node} replicates (add them there first)"
            wanted = carried if all_ else select_names(names, carried, what="sequence", where=where)
            wanted = [s for s in wanted if s not in have]
            with conn.transaction():
                for s in wanted:
                    if not exists(conn, s):
                        if not create:
                            raise TableError(
                                f"sequence {s} does not exist in {conn.info.dbname}; create it "
                                "or add it with --create"
                            )
                        create_sequence(prov, conn, s)
                    store_tables.register_seq(conn, queue, str(s))
                if wanted:
                    sync(prov, conn, wanted)
            return [str(s) for s in wanted]


def remove_seqs(cfg: JobConfig, names: list[str], all_: bool) -> list[str]:
    if not names and not all_:
        raise UsageError("remove-seq needs sequence names or --all")
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = node_for(cfg, conn, "remove-seq")
        have = local_seqs(conn, cfg.queue_name)
        wanted = (
            have
            if all_
            else select_names(
                names, have, what="sequence", where=f"node {info.node_name}'s sequences"
            )
        )
        store_tables.unregister_seqs(conn, cfg.queue_name, [str(s) for s in wanted])
        return [str(s) for s in wanted]


@dataclass(frozen=True)
class SeqStatus:
    seq_name: str
    local_value: int | None  # what nextval() returns next here
    provider_value: int | None  # ... on the provider (None on a root or when unreachable)


def seq_states(cfg: JobConfig) -> list[SeqStatus]:
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = node_for(cfg, conn, "seqs")
        names = local_seqs(conn, cfg.queue_name)
        here = _read_seqs(conn, names)
        there: dict[TableName, int | None] = {}
        if info.node_type != "root" and names:
            with connect(provider_location(cfg, info), autocommit=True, what="provider") as prov:
                there = _read_seqs(prov, names)
    return [SeqStatus(str(n), here.get(n), there.get(n)) for n in names]


def _read_seqs(conn: Conn, names: Iterable[TableName]) -> dict[TableName, int | None]:
    present = [n for n in names if exists(conn, n)]
    return {n: s.next_value for n, s in read(conn, present).items()}


def sync_seqs(cfg: JobConfig, names: list[str], exact: bool) -> list[SeqSync]:
    """Moves this node's sequences (all, or those named) to its provider's values: forward
    only, or with `exact` to the provider's exact state (a cut-over, with writes stopped)."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = node_for(cfg, conn, "sync-seqs", SUBSCRIBERS)
        have = local_seqs(conn, cfg.queue_name)
        wanted = (
            select_names(names, have, what="sequence", where="this node's sequences")
            if (names)
            else have
        )
        if not wanted:
            return []
        with connect(provider_location(cfg, info), autocommit=True, what="provider") as prov:
            done = sync(prov, conn, wanted, exact=exact)
        _store_seq_values(conn, cfg.queue_name, done)
        return done


def sync_sequences(local: Conn, prov: Conn, queue: str) -> None:
    """The worker's periodic forward-only sync of the node's sequences."""
    names = local_seqs(local, queue)
    if names:
        _store_seq_values(local, queue, sync(prov, local, names))


def _store_seq_values(conn: Conn, queue: str, done: list[SeqSync]) -> None:
    for s in done:
        store_tables.store_seq_value(conn, queue, str(s.name), s.provider)


def past_column_max(conn: Conn, names: Sequence[str | TableName]) -> list[SeqSync]:
    """Moves each sequence that a table column owns (serial, identity) past that column's
    largest value (smallest, for a descending one), when it is not there already: after a
    failover, the new root cannot read the dead root's sequences, but no value its replicated
    rows hold is handed out again."""
    out: list[SeqSync] = []
    present = [n for n in _names(names) if exists(conn, n)]
    states = read(conn, present)
    for name in present:
        row = conn.execute(
            "select n.nspname, c.relname, a.attname from pg_catalog.pg_depend d"
            " join pg_catalog.pg_attribute a on a.attrelid = d.refobjid"
            "  and a.attnum = d.refobjsubid"
            " join pg_catalog.pg_class c on c.oid = d.refobjid"
            " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
            " where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = %s::regclass"
            "  and d.refclassid = 'pg_catalog.pg_class'::regclass and d.deptype in ('a', 'i')",
            [quoted_name(name)],
        ).fetchone()
        if row is None:
            continue
        s = states[name]
        agg = "max" if s.increment > 0 else "min"
        table = sql.Identifier(row[0], row[1])
        query = sql.SQL("select {}({}) from {}").format(sql.SQL(agg), sql.Identifier(row[2]), table)
        edge = conn.execute(query).fetchone()
        if edge is None or edge[0] is None:
            continue
        used = int(edge[0])
        if (used - s.next_value) * (1 if s.increment > 0 else -1) >= 0:
            conn.execute("select setval(%s::regclass, %s, true)", [quoted_name(name), used])
            log.info("sequence %s: %d -> past %s.%s's values (%d)", name, s.next_value, row[0],
                     row[1], used)  # fmt: skip
            out.append(SeqSync(name, used + s.increment, s.next_value, True))
    return out


def _names(names: Sequence[str | TableName]) -> list[TableName]:
    return [n if isinstance(n, TableName) else name_of(n) for n in names]


def advance(conn: Conn, names: Sequence[str | TableName], steps: int) -> list[SeqSync]:
    """Moves each sequence `steps` increments forward (within its bounds): after a failover,
    past what the dead root may have handed out since this node last synced from it."""
    out: list[SeqSync] = []
    present = [n for n in _names(names) if exists(conn, n)]
    with conn.transaction():
        for name, s in read(conn, present).items():
            row = conn.execute(
                "select case when p.seqincrement > 0"
                " then least(p.seqmax, %s::numeric + p.seqincrement * %s)"
                " else greatest(p.seqmin, %s::numeric + p.seqincrement * %s) end"
                " from pg_catalog.pg_sequence p where p.seqrelid = %s::regclass",
                [s.last_value, steps, s.last_value, steps, quoted_name(name)],
            ).fetchone()
            assert row is not None
            target = int(row[0])
            conn.execute("select setval(%s::regclass, %s, true)", [quoted_name(name), target])
            log.info("sequence %s: %d -> %d (%d steps ahead)", name, s.next_value,
                     target + s.increment, steps)  # fmt: skip
            out.append(SeqSync(name, target + s.increment, s.next_value, True))
    return out
