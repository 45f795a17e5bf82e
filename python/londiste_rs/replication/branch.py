"""A branch's second job: its provider's events re-queued into its own queue, under the
provider's tick ids, so that its subscribers follow it as they would follow the root."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.errors import LondisteError
from londiste_rs.pg import libpq
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue

Conn = psycopg.Connection[Any]

_COLUMNS = (
    "ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,"
    " ev_extra1, ev_extra2, ev_extra3, ev_extra4"
)  # fmt: skip


def requeue(local: Conn, prov: Conn, queue: str, batch_sql: str) -> None:
    """The batch's events go into the local queue with the same ids, inside both open
    transactions (the provider's batch, the local apply), so they commit with the apply."""
    # as insert_event does: take a txid before reading the current table (rotation)
    local.execute("select pg_current_xact_id()")
    target = store_queue.current_event_table(local, queue)
    copy_out = sql.SQL("copy (select " + _COLUMNS + " from ({}) e) to stdout (format binary)")
    copy_in = sql.SQL("copy {} (" + _COLUMNS + ") from stdin (format binary)")
    # the rows move in Rust (no Python per event)
    libpq.copy_between(
        prov, copy_out.format(sql.SQL(batch_sql)).as_bytes(prov),
        local, copy_in.format(target).as_bytes(local),
    )  # fmt: skip


def tick(local: Conn, prov: Conn, queue: str) -> None:
    """Gives the local queue the provider's tick for the last applied batch, in its own
    transaction after the apply committed. (A snapshot never shows its own transaction as
    finished, so a tick made in the apply transaction would leave the re-queued events to
    the next tick.) Also repairs a tick missing after a crash."""
    info = store_node.get_node_info(local, queue)
    applied = None if info is None else info.last_tick_id
    if applied is None:
        return
    have = store_queue.last_tick_id(local, queue)
    if have is not None and have >= applied:
        return
    provider_tick = store_queue.get_tick(prov, queue, applied)
    if provider_tick is None:
        raise LondisteError(
            f"tick {applied} is gone from the provider; the branch queue cannot get it"
        )
    store_queue.external_tick(local, queue, provider_tick)
