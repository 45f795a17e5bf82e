"""A consistent point between a node and its provider, as londiste3's compare takes it
(OPERATIONS-REFERENCE §1.1): both sides frozen on REPEATABLE READ snapshots in which the
compared tables hold the same tick's rows.

- Provider is the root: `LOCK TABLE ... IN SHARE MODE` on the tables (it waits for the
  writers in flight, then blocks new ones), a tick made at once, and a wait until this node
  has applied it. Then both snapshots are taken and the lock is released at once: the
  application's writes wait only for one tick to be applied, never during the scan.
- Provider is a branch: its worker is paused instead (only it writes the tables there), and
  this node waits for the branch's last tick.

The wait is bounded by the ini's `lock_timeout`: a node that lags more gives one line
(exit 2) and leaves nothing locked or paused. With `pause_node`, this node's worker is paused
too, until the caller is done (repair writes the node's tables from the frozen provider).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.names import TableName
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store.node import NodeInfo, get_node_info
from londiste_rs.tables.common import provider_location

Conn = psycopg.Connection[Any]

# Settings of the frozen sessions: every type's text form the same on both servers (row
# hashes compare it), and plans for the checksum scans.
SESSION_SETTINGS = (
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("TimeZone", "UTC"),
    ("bytea_output", "hex"),
    # The checksum scans group rows into segments by an expression whose count the planner
    # cannot estimate: it would sort a million rows to make a few hundred groups, where hash
    # aggregation is the plan. JIT compiling costs more than it saves on these scans.
    ("enable_sort", "off"),
    ("jit", "off"),
)


class LaggingError(LondisteError):
    """The node did not reach the consistent point within lock_timeout."""

    exit_code = 2


@dataclass
class Frozen:
    """Both sides on REPEATABLE READ snapshots holding the same tick's rows of the tables."""

    provider: Conn
    local: Conn
    tick_id: int
    provider_dsn: str


def _snapshot(dsn: str, what: str) -> Conn:
    conn = connect(dsn, what=what)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    for name, value in SESSION_SETTINGS:
        conn.execute("select set_config(%s, %s, false)", [name, value])
    conn.commit()
    return conn


def _take(conn: Conn) -> None:
    """Takes the transaction's snapshot now (REPEATABLE READ takes it at the first query)."""
    conn.execute("select 1")


def _wait_applied(cfg: JobConfig, local: Conn, tick_id: int, deadline: float, why: str) -> None:
    while True:
        info = get_node_info(local, cfg.queue_name)
        if info is not None and (info.last_tick_id or 0) >= tick_id:
            return
        if time.monotonic() > deadline:
            at = None if info is None else info.last_tick_id
            raise LaggingError(
                f"node {cfg.node_name or ''} did not apply tick {tick_id} within lock_timeout "
                f"({cfg.lock_timeout:g}s; it is at tick {at}); {why}"
            )
        time.sleep(0.05)


def _wait_uptodate(conn: Conn, queue: str, deadline: float, what: str) -> None:
    while True:
        info = get_node_info(conn, queue)
        if info is None or info.uptodate:
            return
        if time.monotonic() > deadline:
            raise LaggingError(
                f"the worker of {what} did not acknowledge its pause within lock_timeout; "
                "is it running? start it and run this again"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def _paused(conn: Conn, queue: str, info: NodeInfo) -> Iterator[None]:
    """Pauses the node's worker until the block ends (unless it was paused already)."""
    if info.paused:
        yield
        return
    store_node.set_paused(conn, queue, True)
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            store_node.set_paused(conn, queue, False)


@contextlib.contextmanager
def consistent_point(
    cfg: JobConfig, info: NodeInfo, tables: Sequence[TableName], *, pause_node: bool = False
) -> Iterator[Frozen]:
    """Freezes this node and its provider on the same tick for `tables` (provider names)."""
    queue = cfg.queue_name
    prov_dsn = provider_location(cfg, info)
    deadline = time.monotonic() + cfg.lock_timeout
    with contextlib.ExitStack() as stack:
        local = stack.enter_context(connect(cfg.db, autocommit=True, what="node database"))
        prov = stack.enter_context(connect(prov_dsn, autocommit=True, what="provider"))
        pinfo = get_node_info(prov, queue)
        if pinfo is None:
            raise LondisteError(f"provider {info.provider_node} is not a node of queue {queue}")
        prov_snap = stack.enter_context(_snapshot(prov_dsn, "provider"))
        local_snap = stack.enter_context(_snapshot(cfg.db, "node database"))
        if pinfo.node_type == "root":
            lock = stack.enter_context(connect(prov_dsn, what="provider"))
            with lock.transaction():
                lock.execute("select set_config('lock_timeout', %s, true)",
                             [f"{int(cfg.lock_timeout * 1000)}ms"])  # fmt: skip
                try:
                    lock.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                        sql.SQL(", ").join(t.ident for t in tables)))  # fmt: skip
                except pgerrors.LockNotAvailable:
                    raise LaggingError(
                        "the tables stay locked by writers on the provider for longer than "
                        f"lock_timeout ({cfg.lock_timeout:g}s); run this again, or raise "
                        "lock_timeout in the ini"
                    ) from None
                store_queue.force_tick(prov, queue)
                store_queue.ticker(prov, queue)
                tick_id = store_queue.last_tick_id(prov, queue) or 0
                _wait_applied(cfg, local, tick_id, deadline,
                              "is its worker running? start it, or run this again")  # fmt: skip
                if pause_node:  # once the tick is applied: the tables do not change after it
                    stack.enter_context(_paused(local, queue, info))
                    _wait_uptodate(local, queue, deadline, "this node")
                _take(prov_snap)
                _take(local_snap)
                # leaving the block releases the lock: the scan runs on the snapshots
        else:
            with _paused(prov, queue, pinfo):
                _wait_uptodate(prov, queue, deadline, f"provider {pinfo.node_name}")
                tick_id = store_queue.last_tick_id(prov, queue) or 0
                _wait_applied(cfg, local, tick_id, deadline,
                              "is its worker running? start it, or run this again")  # fmt: skip
                if pause_node:
                    stack.enter_context(_paused(local, queue, info))
                    _wait_uptodate(local, queue, deadline, "this node")
                _take(prov_snap)
                _take(local_snap)
        try:
            yield Frozen(prov_snap, local_snap, tick_id, prov_dsn)
        except psycopg.Error as e:
            raise LondisteError(f"while comparing: {first_line(e)}") from e
