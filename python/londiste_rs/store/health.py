"""What `status` needs to tell a healthy node from one where nothing moves (issue 16): the
worker's heartbeat (migration 0040, written by replication/heartbeat.py) and the age of the
last tick of a node's queue with the events waiting for the next one.

Ages are computed by the database (`now() - ...`), so the clocks of the machines running the
workers and `status` do not matter. Each call is one statement on the caller's connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

PHASES = ("start", "beat", "stop")


@dataclass(frozen=True)
class Heartbeat:
    """The last sign of life of a node's worker."""

    pid: int
    host: str
    started_at: datetime
    beat_at: datetime
    beat_age: float  # seconds since beat_at
    period: float  # seconds between beats the worker promised
    stopped_at: datetime | None  # it stopped cleanly then
    activity: str | None  # idle, working, retrying, ...
    activity_seconds: float | None  # for how long, as of its last beat


@dataclass(frozen=True)
class QueueTicks:
    """A root's or branch's queue: its last tick and the events that wait for the next one."""

    queue: str
    last_tick_id: int | None
    tick_age: float | None  # seconds since the last tick
    events_waiting: int  # events written since the last tick (may count rolled-back ones)
    external_ticker: bool  # a branch: its worker ticks it, not the ticker
    ticker_paused: bool
    max_lag: float  # a tick is due this long after an event (ticker_max_lag)
    idle_period: float  # a tick is due this long after the last one anyway


def beat(conn: Conn, queue: str, pid: int, host: str, period: float, activity: str,
         phase: str = "beat") -> bool:  # fmt: skip
    """Writes the worker's heartbeat; False when this database is not a node of the queue."""
    assert phase in PHASES
    row = conn.execute(
        "select londiste_rs.worker_heartbeat(%s, %s, %s, %s * interval '1 second', %s, %s)",
        [queue, pid, host, period, activity, phase],
    ).fetchone()
    return bool(row and row[0])


def has_heartbeats(conn: Conn) -> bool:
    """Whether the schema here has heartbeats (a schema older than migration 0040 has not)."""
    row = conn.execute("select pg_catalog.to_regclass('londiste_rs.worker_heartbeat')").fetchone()
    return bool(row and row[0] is not None)


def heartbeat(conn: Conn, queue: str) -> Heartbeat | None:
    """The node's last heartbeat; None when no worker ever wrote one (see has_heartbeats)."""
    row = conn.execute(
        "select worker_pid, worker_host, started_at, beat_at,"
        " extract(epoch from now() - beat_at)::float8,"
        " extract(epoch from beat_period)::float8, stopped_at, activity,"
        " extract(epoch from beat_at - activity_since)::float8"
        " from londiste_rs.worker_heartbeat where queue_name = %s",
        [queue],
    ).fetchone()
    if row is None:
        return None
    return Heartbeat(int(row[0]), str(row[1]), row[2], row[3], max(0.0, float(row[4])),
                     float(row[5]), row[6], row[7], row[8])  # fmt: skip


def queue_ticks(conn: Conn, queue: str) -> QueueTicks | None:
    """The queue's tick state here; None when this database has no such queue (a leaf)."""
    row = conn.execute(
        "select last_tick_id, extract(epoch from ticker_lag)::float8, coalesce(ev_new, 0),"
        " queue_external_ticker, queue_ticker_paused,"
        " extract(epoch from queue_ticker_max_lag)::float8,"
        " extract(epoch from queue_ticker_idle_period)::float8"
        " from londiste_rs.get_queue_info(%s)",
        [queue],
    ).fetchone()
    if row is None:
        return None
    age = None if row[1] is None else max(0.0, float(row[1]))
    return QueueTicks(queue, row[0], age, max(0, int(row[2])), bool(row[3]), bool(row[4]),
                      float(row[5]), float(row[6]))  # fmt: skip


def unpause_statement(queue: str) -> str:
    """The statement that lets the ticker tick a queue again, to show to the user."""
    literal = "'" + queue.replace("'", "''") + "'"
    return f"select londiste_rs.set_queue_config({literal}, 'ticker_paused', 'false')"


def local_ages(conn: Conn, queue: str) -> tuple[float | None, float | None]:
    """Seconds since this node's worker last applied a batch (a root's: recorded a tick), and
    since it recorded its current error (None: never, no error)."""
    row = conn.execute(
        "select extract(epoch from now() - last_apply_time)::float8,"
        " extract(epoch from now() - error_time)::float8"
        " from londiste_rs.local_state where queue_name = %s",
        [queue],
    ).fetchone()
    if row is None:
        return None, None
    return (None if row[0] is None else max(0.0, float(row[0])),
            None if row[1] is None else max(0.0, float(row[1])))  # fmt: skip
