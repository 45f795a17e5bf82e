"""The table registry (internals §4): which tables and sequences a node replicates, each
table's state through its initial copy, and what the copy dropped to load faster.

Table states (`MergeState`; docs/internals.md has who sets each and what clears it):

    root:         add-table -> OK
    branch/leaf:  add-table -> NEEDS_COPY (stored as NULL), or OK with --expect-sync
                  worker    -> IN_COPY -> OK + copy snapshot | FAILED + copy_error
                  resync    -> NEEDS_COPY again

Each call is one statement on the caller's connection and transaction. Statements on
`dropped_ddl` change only their own items (copy threads write the same rows at once), never
writing back a list read before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode

import psycopg

from londiste_rs.pg.deferred import Deferred
from londiste_rs.pg.snapshot import Snapshot

Conn = psycopg.Connection[Any]

# add-table and resync NOTIFY this channel (payload: the queue) when a table needs its copy;
# the worker LISTENs on it, so its idle loop_delay does not delay the copy.
TABLES_CHANNEL = "londiste_rs.tables"


class MergeState(StrEnum):
    """A table's state on a node (`table_info.merge_state`, CHECKed by migration 0006)."""

    NEEDS_COPY = "needs-copy"  # stored as NULL, as londiste3 does
    IN_COPY = "in-copy"
    OK = "ok"
    FAILED = "failed"

    @classmethod
    def load(cls, stored: str | None) -> MergeState:
        return cls.NEEDS_COPY if stored is None else cls(stored)

    def stored(self) -> str | None:
        return None if self is MergeState.NEEDS_COPY else self.value

    @property
    def wants_copy(self) -> bool:
        """The worker copies the table ('in-copy' here: a copy a crash interrupted)."""
        return self in (MergeState.NEEDS_COPY, MergeState.IN_COPY)


@dataclass(frozen=True)
class TableState:
    """One local table as `tables` shows it."""

    table_name: str
    dest_table: str | None
    merge_state: MergeState
    skip_truncate: bool
    copy_rows: int | None
    copy_bytes: int | None
    copy_total_rows: int | None
    copy_seconds: float | None
    copy_error: str | None
    copy_node: str | None = None  # the node the initial copy reads from (None: the provider)

    @property
    def state(self) -> str:
        return self.merge_state.value


@dataclass(frozen=True)
class SourceTable:
    """A table as a copy's source node has it."""

    merge_state: MergeState
    snapshot_pending: bool  # its own copy's snapshot is still in use: not yet as of a tick
    dest_table: str | None


@dataclass(frozen=True)
class ReplayTable:
    """A table the worker applies events to."""

    name: str
    dest: str
    skip_snapshot: Snapshot | None  # events its copy holds already
    copy_tick: int | None  # copied from a copy node as of this tick, not yet resolved


def attrs_of(text: str | None) -> dict[str, str]:
    """londiste3's urlencoded `table_attrs`."""
    return dict(parse_qsl(text or ""))


# -- reading -------------------------------------------------------------------------------


def table_states(conn: Conn, queue: str) -> list[TableState]:
    rows = conn.execute(
        "select table_name, dest_table, merge_state, table_attrs, copy_rows,"
        " copy_bytes, copy_total_rows, copy_seconds, copy_error from londiste_rs.table_info"
        " where queue_name = %s and local order by table_name",
        [queue],
    ).fetchall()
    out = []
    for name, dest, state, text, rows_, bytes_, total, seconds, error in rows:
        attrs = attrs_of(text)
        out.append(TableState(name, dest, MergeState.load(state), attrs.get("skip_truncate") == "1",
                              rows_, bytes_, total, seconds, error,
                              attrs.get("copy_node")))  # fmt: skip
    return out


def table_names(conn: Conn, queue: str) -> list[str]:
    """The tables this node replicates (global names)."""
    return [t.table_name for t in table_states(conn, queue)]


def ok_tables(conn: Conn, queue: str, among: list[str]) -> set[str]:
    """Those of `among` that are 'ok' here."""
    rows = conn.execute(
        "select table_name from londiste_rs.table_info"
        " where queue_name = %s and local and merge_state = 'ok' and table_name = any(%s)",
        [queue, among],
    ).fetchall()
    return {str(r[0]) for r in rows}


def source_tables(conn: Conn, queue: str, tables: list[str]) -> dict[str, SourceTable]:
    rows = conn.execute(
        "select table_name, merge_state, custom_snapshot is not null or copy_tick is not null,"
        " dest_table from londiste_rs.table_info"
        " where queue_name = %s and local and table_name = any(%s)",
        [queue, tables],
    ).fetchall()
    return {str(r[0]): SourceTable(MergeState.load(r[1]), bool(r[2]), r[3]) for r in rows}


def replay_tables(conn: Conn, queue: str) -> list[ReplayTable]:
    """The 'ok' tables, whose events the worker applies."""
    rows = conn.execute(
        "select table_name, coalesce(dest_table, table_name), custom_snapshot::text,"
        " copy_tick from londiste_rs.table_info"
        " where queue_name = %s and local and merge_state = 'ok' order by table_name",
        [queue],
    ).fetchall()
    return [
        ReplayTable(
            str(name),
            str(dest),
            None if snap is None else Snapshot.parse(snap),
            None if tick is None else int(tick),
        )
        for name, dest, snap, tick in rows
    ]


def state_counts(conn: Conn, queue: str) -> tuple[int, int, int]:
    """(ok, not ok, failed) tables here, for `status`."""
    row = conn.execute(
        "select count(*) filter (where merge_state = 'ok'),"
        " count(*) filter (where merge_state is distinct from 'ok'),"
        " count(*) filter (where merge_state = 'failed')"
        " from londiste_rs.table_info where queue_name = %s and local",
        [queue],
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def table_shape(conn: Conn, table: str) -> str | None:
    """The table's shape as the capture trigger writes it into each event (`ev_extra3`):
    its columns' names and types. None where the schema predates shapes."""
    try:
        with conn.transaction():
            row = conn.execute("select londiste_rs.table_shape(%s::regclass)", [table]).fetchone()
    except psycopg.errors.UndefinedFunction:
        return None
    return None if row is None or row[0] is None else str(row[0])


def table_shapes(conn: Conn, tables: list[str]) -> tuple[str | None, ...]:
    """`table_shape` of each table (None: missing, or a schema that predates shapes)."""
    if not tables:
        return ()
    try:
        with conn.transaction():
            rows = conn.execute(
                "select londiste_rs.table_shape(pg_catalog.to_regclass(n))"
                " from unnest(%s::text[]) with ordinality u(n, i) order by i",
                [tables],
            ).fetchall()
    except psycopg.errors.UndefinedFunction:
        return tuple(None for _ in tables)
    return tuple(None if r[0] is None else str(r[0]) for r in rows)


# -- the lifecycle ---------------------------------------------------------------------------


def register(
    conn: Conn, queue: str, table: str, state: MergeState, dest: str | None, attrs: dict[str, str]
) -> None:
    conn.execute(
        "insert into londiste_rs.table_info"
        " (queue_name, table_name, merge_state, dest_table, table_attrs)"
        " values (%s, %s, %s, %s, nullif(%s, ''))",
        [queue, table, state.stored(), dest, urlencode(attrs)],
    )


def unregister(conn: Conn, queue: str, table: str) -> None:
    conn.execute(
        "delete from londiste_rs.table_info where queue_name = %s and table_name = %s",
        [queue, table],
    )


def notify_copy_needed(conn: Conn, queue: str) -> None:
    """Wakes the node's worker (at commit) for tables that need their copy."""
    conn.execute("select pg_notify(%s, %s)", [TABLES_CHANNEL, queue])


def set_copy_node(conn: Conn, queue: str, tables: dict[str, str | None]) -> None:
    """Stores (None: clears) the node each table's initial copy reads from."""
    rows = conn.execute(
        "select table_name, table_attrs from londiste_rs.table_info"
        " where queue_name = %s and table_name = any(%s)",
        [queue, list(tables)],
    ).fetchall()
    for table, text in rows:
        attrs = {k: v for k, v in attrs_of(text).items() if k != "copy_node"}
        node = tables[str(table)]
        if node is not None:
            attrs["copy_node"] = node
        conn.execute(
            "update londiste_rs.table_info set table_attrs = nullif(%s, '')"
            " where queue_name = %s and table_name = %s",
            [urlencode(attrs), queue, table],
        )


def reset_for_resync(conn: Conn, queue: str, tables: list[str]) -> None:
    """NEEDS_COPY again, every figure of the last copy forgotten."""
    conn.execute(
        "update londiste_rs.table_info set merge_state = null, custom_snapshot = null,"
        " copy_tick = null, copy_rows = null, copy_bytes = null, copy_total_rows = null,"
        " copy_seconds = null, copy_started = null, copy_error = null"
        " where queue_name = %s and table_name = any(%s)",
        [queue, tables],
    )


def mark_in_copy(conn: Conn, queue: str, tables: list[str]) -> None:
    conn.execute(
        "update londiste_rs.table_info set merge_state = 'in-copy', copy_started = now(),"
        " copy_rows = 0, copy_bytes = 0, copy_total_rows = null, copy_seconds = 0,"
        " copy_error = null, custom_snapshot = null, copy_tick = null"
        " where queue_name = %s and table_name = any(%s)",
        [queue, tables],
    )


def record_progress(
    conn: Conn, queue: str, table: str, rows: int, nbytes: int, total: int | None, secs: float
) -> None:
    conn.execute(
        "update londiste_rs.table_info set copy_rows = %s, copy_bytes = %s,"
        " copy_total_rows = %s, copy_seconds = %s"
        " where queue_name = %s and table_name = %s",
        [rows, nbytes, total, secs, queue, table],
    )


def mark_ok(
    conn: Conn,
    queue: str,
    table: str,
    snapshot: Snapshot | None,
    copy_tick: int | None,
    figures: tuple[int, int, float],
) -> None:
    """The copy is in: OK, with the snapshot of what it holds (or, copied from a node ahead
    of the provider, the tick it is as of) and its figures (rows, bytes, seconds)."""
    rows, nbytes, seconds = figures
    conn.execute(
        "update londiste_rs.table_info set merge_state = 'ok', custom_snapshot = %s,"
        " copy_tick = %s, copy_rows = %s, copy_bytes = %s, copy_seconds = %s"
        " where queue_name = %s and table_name = %s",
        [None if snapshot is None else str(snapshot), copy_tick, rows, nbytes, seconds,
         queue, table],
    )  # fmt: skip


def mark_not_started(conn: Conn, queue: str, table: str) -> None:
    """NEEDS_COPY again: its source was not ready, the copy is tried in a later round."""
    conn.execute(
        "update londiste_rs.table_info set merge_state = null, copy_started = null"
        " where queue_name = %s and table_name = %s",
        [queue, table],
    )


def mark_failed(conn: Conn, queue: str, table: str, error: str) -> None:
    conn.execute(
        "update londiste_rs.table_info set merge_state = 'failed', copy_error = %s"
        " where queue_name = %s and table_name = %s",
        [error, queue, table],
    )


def copy_snapshots(conn: Conn, queue: str) -> list[tuple[str, Snapshot]]:
    """The tables whose copy snapshot is still in use, with it."""
    rows = conn.execute(
        "select table_name, custom_snapshot::text from londiste_rs.table_info"
        " where queue_name = %s and custom_snapshot is not null",
        [queue],
    ).fetchall()
    return [(str(t), Snapshot.parse(s)) for t, s in rows]


def set_skip_snapshot(conn: Conn, queue: str, table: str, snapshot: Snapshot | None) -> None:
    """Replaces the table's copy snapshot (None: no later batch needs it); a copy tick is
    resolved by it."""
    conn.execute(
        "update londiste_rs.table_info set custom_snapshot = %s, copy_tick = null"
        " where queue_name = %s and table_name = %s",
        [None if snapshot is None else str(snapshot), queue, table],
    )


# -- what the copy dropped -------------------------------------------------------------------


def record_dropped(conn: Conn, queue: str, table: str, items: list[Deferred]) -> None:
    conn.execute(
        "update londiste_rs.table_info set dropped_ddl"
        " = coalesce(dropped_ddl, '[]'::jsonb) || %s::jsonb"
        " where queue_name = %s and table_name = %s",
        [json.dumps([vars(i) for i in items]), queue, table],
    )


def forget_dropped(conn: Conn, queue: str, table: str, items: list[Deferred]) -> None:
    conn.execute(
        "update londiste_rs.table_info set dropped_ddl = (select jsonb_agg(e)"
        "  from jsonb_array_elements(dropped_ddl) e where e->>'restore' <> all(%s))"
        " where queue_name = %s and table_name = %s",
        [[i.restore for i in items], queue, table],
    )


def dropped(conn: Conn, queue: str, tables: list[str]) -> list[tuple[str, Deferred]]:
    rows = conn.execute(
        "select table_name, dropped_ddl from londiste_rs.table_info"
        " where queue_name = %s and table_name = any(%s) and dropped_ddl is not null",
        [queue, tables],
    ).fetchall()
    return [(str(t), Deferred(**i)) for t, lst in rows for i in lst]


# -- sequences ---------------------------------------------------------------------------------


def seq_names(conn: Conn, queue: str) -> list[str]:
    rows = conn.execute(
        "select seq_name from londiste_rs.seq_info where queue_name = %s and local"
        " order by seq_name",
        [queue],
    ).fetchall()
    return [str(r[0]) for r in rows]


def register_seq(conn: Conn, queue: str, seq: str) -> None:
    conn.execute(
        "insert into londiste_rs.seq_info (queue_name, seq_name) values (%s, %s)", [queue, seq]
    )


def unregister_seqs(conn: Conn, queue: str, seqs: list[str]) -> None:
    conn.execute(
        "delete from londiste_rs.seq_info where queue_name = %s and seq_name = any(%s)",
        [queue, seqs],
    )


def store_seq_value(conn: Conn, queue: str, seq: str, value: int) -> None:
    conn.execute(
        "update londiste_rs.seq_info set last_value = %s where queue_name = %s and seq_name = %s",
        [value, queue, seq],
    )
