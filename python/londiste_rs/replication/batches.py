"""Taking batches from the provider (the exactly-once protocol's provider side, internals §5).

    provider: next_batch -> (prev, cur); local last tick L
      L >= cur  -> already applied (a crash after the local commit): just finish the batch
      L == prev -> apply, set L = cur, commit locally, then finish the batch on the provider
      otherwise -> "lost position"

When the provider has more ticks ready (the worker lags), several consecutive batches are
taken in one provider transaction (each finished in it, nothing committed there until the
local commit) and read as one stream: one scan of the events from the first batch's start tick
to the last batch's end tick (range_event_sql), not one per batch: with ticks every 20 ms a
backlog is hundreds of batches, and on an event table autovacuum has not analyzed yet each
scan may read the whole table. A branch takes one batch at a time, because it
re-queues each batch's events under the provider's tick ids for its own subscribers.
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
# Bounds of one combined apply when lagging: long enough to amortise a commit, short enough
# that a crash redoes little. Memory does not grow with it (the decoder drains by bytes).
MAX_TICKS_PER_APPLY = 100
MAX_EVENTS_PER_APPLY = 500_000


class LostPosition(PermanentError):
    """The provider's next batch does not continue from the local position."""


@dataclass(frozen=True)
class Taken:
    """Consecutive batches taken in the provider's open transaction, and the SELECT of all
    their events (ordered by ev_id, as one batch from the first start tick to the last end
    tick would be)."""

    batches: list[Batch]
    query: str

    @property
    def first(self) -> Batch:
        return self.batches[0]

    @property
    def last(self) -> Batch:
        return self.batches[-1]

    def stream_query(self) -> sql.Composed:
        """The binary COPY of the events, in the decoder's column order."""
        return sql.SQL(
            "copy (select " + EVENT_COLUMNS + " from ({}) e) to stdout (format binary)"
        ).format(sql.SQL(self.query))


def _interval(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds} seconds"


def take(cfg: JobConfig, prov: Conn, last_tick: int | None, combine: bool) -> Taken | None:
    """Takes the next batch(es) after this node's tick `last_tick`, inside the provider's
    transaction the caller holds open (finished there, committed only after the local
    commit). None: nothing to apply now (batches already applied were finished)."""
    # the batch's events are sorted by ev_id on the provider: in memory, not spilled to disk
    # as with the default 4MB (a third of the read time at 300k events)
    prov.execute("select set_config('work_mem', %s, true)", [f"{cfg.batch_work_mem >> 10}kB"])
    batches: list[Batch] = []
    events = 0
    while True:
        b = store_queue.next_batch(
            prov,
            cfg.queue_name,
            cfg.consumer_name,
            _interval(cfg.keep_lag),
            cfg.batch_collect_events or None,
            _interval(cfg.batch_collect_interval),
        )
        if b is None:
            break
        expected = batches[-1].tick_id if batches else last_tick
        if not batches and last_tick is not None and last_tick >= b.tick_id:
            # applied and committed here already; the provider missed the finish
            log.info("batch %s (tick %s) already applied; finishing it", b.batch_id, b.tick_id)
            store_queue.finish_batch(prov, b.batch_id)
            continue
        if b.prev_tick_id != expected:
            raise LostPosition(
                f"lost position: the provider's next batch covers ticks "
                f"{b.prev_tick_id}..{b.tick_id} but this node has applied up to "
                f"tick {expected}; re-create the node or re-register it at tick {expected}"
            )
        batches.append(b)
        events += max(0, b.tick_event_seq - b.prev_tick_event_seq)
        store_queue.finish_batch(prov, b.batch_id)
        if not combine or len(batches) >= MAX_TICKS_PER_APPLY or events >= MAX_EVENTS_PER_APPLY:
            break
    if not batches:
        return None
    query = store_queue.range_event_sql(
        prov, cfg.queue_name, cfg.consumer_name, batches[0].prev_tick_id, batches[-1].tick_id
    )
    return Taken(batches, query)
