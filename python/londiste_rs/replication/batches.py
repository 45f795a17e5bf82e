"""Taking batches from the provider (the exactly-once protocol's provider side, internals §5).

    provider: next_batch -> (prev, cur); local last tick L
      L >= cur  -> already applied (a crash after the local commit): just finish the batch
      L == prev -> apply, set L = cur, commit locally, then finish the batch on the provider
      otherwise -> "lost position"

When the provider has more ticks ready (the worker lags), the batch spans several of them
(next_batch_span: PgQ's merged batch, up to MAX_TICKS_PER_APPLY ticks / MAX_EVENTS_PER_APPLY
events), finished in the provider transaction, nothing committed there until the local
commit. It is read in one scan, and opened with one index probe, whatever the number of ticks:
with ticks every 20 ms a backlog is hundreds of ticks a minute, millions a day. A branch
takes one tick at a time, because it re-queues each batch's events under the provider's tick
ids for its own subscribers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.config import JobConfig
from londiste_rs.retry import PermanentError
from londiste_rs.store import queue as store_queue
from londiste_rs.store.queue import Batch

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# The event columns the decoder reads (internals §2), in its order.
EVENT_COLUMNS = "ev_id, ev_txid, ev_type, ev_extra1, ev_data, ev_extra2, ev_extra4, ev_extra3"
# Bounds of one batch when lagging: long enough to amortise a commit, short enough that a
# crash redoes little (events); ticks without events cost nothing to span. Memory does not
# grow with it (the decoder drains by bytes).
MAX_TICKS_PER_APPLY = 10_000
MAX_EVENTS_PER_APPLY = 500_000


class LostPosition(PermanentError):
    """The provider's next batch does not continue from the local position."""


@dataclass(frozen=True)
class Taken:
    """The batch taken in the provider's open transaction (one tick or several), and the
    SELECT of its events (ordered by ev_id)."""

    batch: Batch
    query: str

    def stream_query(self) -> sql.Composed:
        """The binary COPY of the events, in the decoder's column order."""
        return sql.SQL(
            "copy (select " + EVENT_COLUMNS + " from ({}) e) to stdout (format binary)"
        ).format(sql.SQL(self.query))


def _interval(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds} seconds"


def take(cfg: JobConfig, prov: Conn, last_tick: int | None, combine: bool) -> Taken | None:
    """Takes the next batch after this node's tick `last_tick` (spanning several ticks when
    `combine`), inside the provider's transaction the caller holds open (finished there,
    committed only after the local commit). None: nothing to apply now (batches already
    applied were finished)."""
    # the batch's events are sorted by ev_id on the provider: in memory, not spilled to disk
    # as with the default 4MB (a third of the read time at 300k events)
    prov.execute("select set_config('work_mem', %s, true)", [f"{cfg.batch_work_mem >> 10}kB"])
    while True:
        b = store_queue.next_batch_span(
            prov,
            cfg.queue_name,
            cfg.consumer_name,
            _interval(cfg.keep_lag),
            cfg.batch_collect_events or None,
            _interval(cfg.batch_collect_interval),
            last_tick,
            MAX_TICKS_PER_APPLY if combine else 1,
            MAX_EVENTS_PER_APPLY,
        )
        if b is None:
            return None
        if last_tick is not None and last_tick >= b.tick_id:
            # applied and committed here already; the provider missed the finish
            log.info("batch %s (tick %s) already applied; finishing it", b.batch_id, b.tick_id)
            store_queue.finish_batch(prov, b.batch_id)
            continue
        if b.prev_tick_id != last_tick:
            raise LostPosition(
                f"lost position: the provider's next batch covers ticks "
                f"{b.prev_tick_id}..{b.tick_id} but this node has applied up to "
                f"tick {last_tick}; re-create the node or re-register it at tick {last_tick}"
            )
        # the batch's SQL is built from its ticks, so before finishing it
        query = store_queue.batch_event_sql(prov, b.batch_id)
        store_queue.finish_batch(prov, b.batch_id)
        return Taken(b, query)
