"""The node registry (internals §3): this database's node of a queue, its worker's position and
state, the cascade's member locations and this node's subscribers.

Each call is one statement on the caller's connection and transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from londiste_rs.config import JobConfig
from londiste_rs.errors import NotInstalledError, UsageError
from londiste_rs.pg.db import describe
from londiste_rs.pg.location import for_storing
from londiste_rs.store.schema import installed_version

Conn = psycopg.Connection[Any]

KINDS = ("root", "branch", "leaf")


@dataclass(frozen=True)
class NodeInfo:
    """This database's node of a queue and its worker's state (`get_node_info`)."""

    node_type: str
    node_name: str
    worker_name: str
    node_location: str | None
    provider_node: str | None
    provider_location: str | None
    last_tick_id: int | None
    last_tick_time: datetime | None
    last_apply_time: datetime | None
    paused: bool
    uptodate: bool
    cur_error: str | None
    error_time: datetime | None


@dataclass(frozen=True)
class Member:
    """A node of the cascade as a node's member list has it."""

    name: str
    location: str
    dead: bool


def get_node_info(conn: Conn, queue: str) -> NodeInfo | None:
    """The node of `queue` in this database, or None (also when nothing is installed)."""
    if installed_version(conn) is None:
        return None
    with conn.cursor(row_factory=class_row(NodeInfo)) as cur:
        return cur.execute("select * from londiste_rs.get_node_info(%s)", [queue]).fetchone()


def create_node(
    conn: Conn,
    queue: str,
    kind: str,
    name: str,
    worker: str,
    location: str,
    provider: str | None = None,
    tick_id: int | None = None,
) -> None:
    conn.execute(
        "select londiste_rs.create_node(%s, %s, %s, %s, %s, %s, %s)",
        [queue, kind, name, worker, for_storing(location), provider, tick_id],
    )


def drop_node(conn: Conn, queue: str) -> None:
    """Drops this database's node of the queue (and, on a root or branch, its queue)."""
    conn.execute("select londiste_rs.drop_node(%s)", [queue])


def members(conn: Conn, queue: str) -> list[Member]:
    """The cascade's nodes this node knows of, with their locations."""
    rows = conn.execute("select * from londiste_rs.get_queue_locations(%s)", [queue]).fetchall()
    return [Member(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


def register_location(conn: Conn, queue: str, node: str, location: str, dead: bool = False) -> None:
    """Records (or updates) where a member of the cascade can be reached; never with a
    password (pg/location.py: the caller says so to the user when it gave one)."""
    query = "select londiste_rs.register_location(%s, %s, %s, %s)"
    conn.execute(query, [queue, node, for_storing(location), dead])


def unregister_location(conn: Conn, queue: str, node: str) -> None:
    conn.execute("select londiste_rs.unregister_location(%s, %s)", [queue, node])


def register_subscriber(conn: Conn, queue: str, node: str, worker: str, tick_id: int | None) -> int:
    """Subscribes `node` (consumer `worker`) at `tick_id`, or at the last tick; returns the
    tick it starts from."""
    row = conn.execute(
        "select londiste_rs.register_subscriber(%s, %s, %s, %s)", [queue, node, worker, tick_id]
    ).fetchone()
    assert row is not None
    return int(row[0])


def unregister_subscriber(conn: Conn, queue: str, node: str) -> None:
    conn.execute("select londiste_rs.unregister_subscriber(%s, %s)", [queue, node])


def subscribers(conn: Conn, queue: str) -> list[tuple[str, str | None]]:
    """This node's subscribers and their locations (None: not in the member list)."""
    rows = conn.execute(
        "select s.subscriber_node, l.node_location from londiste_rs.subscriber_info s"
        " left join londiste_rs.node_location l on l.queue_name = s.queue_name"
        " and l.node_name = s.subscriber_node where s.queue_name = %s order by 1",
        [queue],
    ).fetchall()
    return [(str(r[0]), None if r[1] is None else str(r[1])) for r in rows]


@dataclass(frozen=True)
class Consumer:
    """A consumer of this node's queue (`status`): its lag (seconds since the time of its last
    tick), the events queued after its last tick, and the subscriber node it reads for (None:
    an orphan, which no subscriber node uses and which holds back rotation)."""

    name: str
    lag_seconds: float | None
    pending_events: int | None
    last_tick: int | None
    subscriber_node: str | None
    node_dead: bool


def consumers(conn: Conn, queue: str) -> list[Consumer]:
    """Every consumer of the queue here (none on a leaf), orphans included."""
    rows = conn.execute(
        "select c.consumer_name, extract(epoch from c.lag)::float8, c.pending_events,"
        " c.last_tick, s.subscriber_node, coalesce(l.dead, false)"
        " from londiste_rs.get_consumer_info(%s) c"
        " left join londiste_rs.subscriber_info s on s.queue_name = c.queue_name"
        " and s.consumer_name = c.consumer_name"
        " left join londiste_rs.node_location l on l.queue_name = s.queue_name"
        " and l.node_name = s.subscriber_node order by 1, 5",
        [queue],
    ).fetchall()
    return [Consumer(str(r[0]), r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


def change_provider(conn: Conn, queue: str, provider: str) -> None:
    conn.execute("select londiste_rs.change_consumer_provider(%s, %s)", [queue, provider])


def set_completed(conn: Conn, queue: str, tick_id: int | None, tick_time: Any) -> None:
    """Records the tick this node has applied (a root: the queue's last tick)."""
    conn.execute(
        "select londiste_rs.set_consumer_completed(%s, %s, %s)", [queue, tick_id, tick_time]
    )


def set_error(conn: Conn, queue: str, message: str | None) -> None:
    """Records (or with None clears) the worker's last error, which `status` shows."""
    conn.execute("select londiste_rs.set_consumer_error(%s, %s)", [queue, message])


def set_uptodate(conn: Conn, queue: str, uptodate: bool) -> None:
    conn.execute("select londiste_rs.set_consumer_uptodate(%s, %s)", [queue, uptodate])


def set_paused(conn: Conn, queue: str, paused: bool) -> None:
    conn.execute("select londiste_rs.set_consumer_paused(%s, %s)", [queue, paused])


def lag_seconds(conn: Conn, queue: str) -> float | None:
    """Seconds since the time of the last tick this node applied."""
    row = conn.execute(
        "select extract(epoch from now() - last_tick_time)::float8"
        " from londiste_rs.local_state where queue_name = %s",
        [queue],
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


class NodeMissing(NotInstalledError):
    """The database holds no node of the queue (not created yet, or dropped)."""


def require_node(
    conn: Conn, cfg: JobConfig, kinds: tuple[str, ...] = KINDS, verb: str = ""
) -> NodeInfo:
    """The local node, or a one-line error saying how to create it / which kind `verb` needs."""
    info = get_node_info(conn, cfg.queue_name)
    if info is None:
        raise NodeMissing(
            f"{describe(cfg.db)} is not a node of queue {cfg.queue_name}; create it first with "
            f"'londiste-rs {cfg.path.name} create-root|create-branch|create-leaf NAME ...'"
        )
    if info.node_type not in kinds:
        raise UsageError(
            f"'{verb}' needs a {' or '.join(kinds)} node, but {info.node_name} is a "
            f"{info.node_type} of queue {cfg.queue_name}; run it with another node's config"
        )
    return info
