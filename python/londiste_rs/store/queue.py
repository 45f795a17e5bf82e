"""Typed wrappers of the queue's SQL API (internals §2) for the worker, the ticker and the CLI.

Each call is one statement on the caller's connection and transaction. SQL errors a user can
cause (no such queue or consumer, a table that cannot be captured, a bad setting) come back as
one-line LondisteError subclasses; anything else propagates as the psycopg error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from londiste_rs.errors import NotInstalledError, TableError, UsageError
from londiste_rs.pg.snapshot import Snapshot

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Tick:
    """One tick of a queue: the point between two batches."""

    tick_id: int
    time: datetime
    event_seq: int
    snapshot: Snapshot


@dataclass(frozen=True)
class Batch:
    """An open batch: the events committed between two ticks (`prev_tick_id`, `tick_id`]."""

    batch_id: int
    tick_id: int
    prev_tick_id: int
    tick_time: datetime
    prev_tick_time: datetime
    tick_event_seq: int
    prev_tick_event_seq: int
    ticks: int = 1  # how many ticks it spans (next_batch_span)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turns the SQL layer's refusals (one line, with the fix) into LondisteErrors."""
    try:
        yield
    except pgerrors.UndefinedFunction as e:
        if "londiste_rs." in str(e):
            raise NotInstalledError(
                "the londiste-rs schema is missing or outdated in this database; "
                "install it (create-root / create-leaf) first"
            ) from None
        raise
    except (
        pgerrors.InvalidTableDefinition,
        pgerrors.FeatureNotSupported,
        pgerrors.UndefinedTable,
    ) as e:
        raise TableError(_message(e)) from None
    except (
        pgerrors.UndefinedObject,
        pgerrors.InvalidParameterValue,
        pgerrors.InvalidName,
        pgerrors.ObjectInUse,
        pgerrors.ObjectNotInPrerequisiteState,
    ) as e:
        raise UsageError(_message(e)) from None


def _message(e: psycopg.Error) -> str:
    diag = e.diag.message_primary
    return diag if diag else str(e).splitlines()[0]


def _one(conn: Conn, query: str, params: list[Any]) -> Any:
    with _user_errors():
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def create_queue(conn: Conn, queue: str, ntables: int = 3) -> bool:
    """Creates the queue; False when it already existed."""
    return bool(_one(conn, "select londiste_rs.create_queue(%s, %s)", [queue, ntables]))


def drop_queue(conn: Conn, queue: str, force: bool = False) -> bool:
    return bool(_one(conn, "select londiste_rs.drop_queue(%s, %s)", [queue, force]))


def insert_event(
    conn: Conn,
    queue: str,
    ev_type: str,
    data: bytes | None,
    extra1: str | None = None,
    extra2: bytes | None = None,
    extra3: str | None = None,
    extra4: str | None = None,
) -> int:
    query = "select londiste_rs.insert_event(%s, %s, %s::bytea, %s, %s::bytea, %s, %s)"
    return int(_one(conn, query, [queue, ev_type, data, extra1, extra2, extra3, extra4]))


def ticker(conn: Conn, queue: str) -> int | None:
    """Ticks the queue if it needs a tick; the new tick id or None."""
    tick: int | None = _one(conn, "select londiste_rs.ticker(%s)", [queue])
    return tick


def force_tick(conn: Conn, queue: str) -> int:
    """Makes the next ticker call tick; returns the last tick id so far."""
    return int(_one(conn, "select londiste_rs.force_tick(%s)", [queue]))


def register_consumer(conn: Conn, queue: str, consumer: str, tick_id: int | None = None) -> bool:
    """Registers at the last tick (or at `tick_id`); False when it already was registered."""
    if tick_id is None:
        return bool(_one(conn, "select londiste_rs.register_consumer(%s, %s)", [queue, consumer]))
    query = "select londiste_rs.register_consumer_at(%s, %s, %s)"
    return bool(_one(conn, query, [queue, consumer, tick_id]))


def unregister_consumer(conn: Conn, queue: str, consumer: str) -> bool:
    return bool(_one(conn, "select londiste_rs.unregister_consumer(%s, %s)", [queue, consumer]))


def next_batch(
    conn: Conn,
    queue: str,
    consumer: str,
    min_lag: str | None = None,
    min_count: int | None = None,
    min_interval: str | None = None,
) -> Batch | None:
    """The consumer's next batch (merging ticks up to min_count events / min_interval), or
    None when there is none yet. An open batch is returned again."""
    query = "select * from londiste_rs.next_batch_custom(%s, %s, %s::interval, %s, %s::interval)"
    with _user_errors():
        row = conn.execute(query, [queue, consumer, min_lag, min_count, min_interval]).fetchone()
    if row is None or row[0] is None:
        return None
    return Batch(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def next_batch_span(
    conn: Conn,
    queue: str,
    consumer: str,
    min_lag: str | None,
    min_count: int | None,
    min_interval: str | None,
    stop_tick: int | None,
    max_ticks: int,
    max_events: int,
) -> Batch | None:
    """The consumer's next batch as next_batch takes it, spanning up to `max_ticks` ticks of
    at most `max_events` events when it lags (one batch read in one scan), or ending at
    `stop_tick` when that is further (applied here already). None: no batch yet."""
    query = (
        "select * from londiste_rs.next_batch_span(%s, %s, %s::interval, %s, %s::interval,"
        " %s, %s, %s)"
    )
    args = [queue, consumer, min_lag, min_count, min_interval, stop_tick, max_ticks, max_events]
    with _user_errors():
        row = conn.execute(query, args).fetchone()
    if row is None or row[0] is None:
        return None
    return Batch(*row)


def get_tick(conn: Conn, queue: str, tick_id: int | None = None) -> Tick | None:
    """Tick `tick_id` of the queue, or its last tick (None: no such tick here)."""
    with _user_errors():
        row = conn.execute(
            "select tick_id, tick_time, tick_event_seq, tick_snapshot::text"
            " from londiste_rs.get_tick(%s, %s)",
            [queue, tick_id],
        ).fetchone()
    if row is None:
        return None
    return Tick(int(row[0]), row[1], int(row[2]), Snapshot.parse(row[3]))


def last_tick_id(conn: Conn, queue: str) -> int | None:
    """The queue's last tick here (a root's or a branch's queue)."""
    tick = get_tick(conn, queue)
    return None if tick is None else tick.tick_id


def external_tick(conn: Conn, queue: str, tick: Tick) -> None:
    """Gives a branch's queue (external_ticker) its provider's tick: same id, time, sequence."""
    query = "select londiste_rs.ticker(%s, %s, %s, %s)"
    _one(conn, query, [queue, tick.tick_id, tick.time, tick.event_seq])


def current_event_table(conn: Conn, queue: str) -> sql.Identifier:
    """The event table new events go into, quoted; the caller's transaction must hold a
    transaction id already (as insert_event does), so rotation cannot slip in."""
    name = str(_one(conn, "select londiste_rs.current_event_table(%s)", [queue]))
    return sql.Identifier("londiste_rs", name)


def batch_event_sql(conn: Conn, batch_id: int) -> str:
    """The SELECT of the batch's events (internals §2), to run as COPY (...) TO STDOUT."""
    return str(_one(conn, "select londiste_rs.batch_event_sql(%s)", [batch_id]))


def finish_batch(conn: Conn, batch_id: int) -> bool:
    """Closes the batch; False when it was not open."""
    return bool(_one(conn, "select londiste_rs.finish_batch(%s)", [batch_id]))


def event_retry(conn: Conn, batch_id: int, ev_id: int, seconds: int) -> bool:
    query = "select londiste_rs.event_retry(%s, %s, %s::int4)"
    return bool(_one(conn, query, [batch_id, ev_id, seconds]))


def set_queue_config(conn: Conn, queue: str, param: str, value: str) -> None:
    _one(conn, "select londiste_rs.set_queue_config(%s, %s, %s)", [queue, param, value])


def capture_attach(conn: Conn, queue: str, table: str) -> None:
    """Starts capturing the table's changes into the queue (root). `table` is a name as SQL
    reads it (`schema.table`, quoted parts as needed)."""
    _one(conn, "select londiste_rs.capture_attach(%s, %s::text::regclass)", [queue, table])


def capture_detach(conn: Conn, queue: str, table: str) -> bool:
    """Stops capturing; False when the table was not captured."""
    query = "select londiste_rs.capture_detach(%s, %s::text::regclass)"
    return bool(_one(conn, query, [queue, table]))


def raise_if_missing(conn: Conn, queue: str) -> None:
    """Raises UsageError naming the queue when it does not exist."""
    _one(conn, "select (londiste_rs._queue(%s)).queue_id", [queue])


__all__ = [
    "Batch",
    "batch_event_sql",
    "capture_attach",
    "capture_detach",
    "create_queue",
    "drop_queue",
    "event_retry",
    "finish_batch",
    "force_tick",
    "insert_event",
    "next_batch",
    "next_batch_span",
    "raise_if_missing",
    "register_consumer",
    "set_queue_config",
    "ticker",
    "unregister_consumer",
]
