"""The replay loop (`londiste-rs node.ini worker`).

On a branch or leaf, each step takes the next batch(es) from the provider and applies them on
the local database in ONE transaction together with the tick position (exactly once):

    provider: next_batch -> (prev, cur); local last tick L
      L >= cur  -> already applied (a crash after the local commit): just finish the batch
      L == prev -> apply, set L = cur, commit locally, then finish the batch on the provider
      otherwise -> "lost position"

When the provider has more ticks ready (the worker lags), several consecutive batches are
taken in one provider transaction (each finished in it, nothing committed there until the
local commit) and applied as one stream: one local transaction, one commit. A crash between the
two commits is the `L >= cur` case. A branch takes one batch at a time, because it re-queues
each batch's events under the provider's tick ids for its own subscribers.

On a root the worker does the root's housekeeping: it records the queue's last tick as the
node's position, which `status` and `wait-root` read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs import daemon
from londiste_rs.cascade.node import NodeInfo, require_node
from londiste_rs.config import JobConfig
from londiste_rs.errors import ConnectError, LondisteError
from londiste_rs.pg import libpq
from londiste_rs.pg.catalog import table_layout
from londiste_rs.pg.db import connect, first_line, redact
from londiste_rs.replication.apply import (
    TablePlan,
    TypeMap,
    apply_events,
    make_type_map,
    order_parents_first,
    plan_table,
    prepare_staging,
    read_copy,
)
from londiste_rs.tables.verbs import (
    SEQ_SYNC_INTERVAL,
    TABLES_CHANNEL,
    CopyWaits,
    copy_pending,
    pending_copies,
    release_copy_snapshots,
    sync_sequences,
    tick_snapshot,
)

log = logging.getLogger(__name__)

EVENT_COLUMNS = "ev_id, ev_txid, ev_type, ev_extra1, ev_data, ev_extra2, ev_extra4"
# Channel every new tick is notified on (sql/functions/queue/_tick.sql).
TICK_CHANNEL = "londiste_rs_tick"
# Bounds of one combined apply when lagging: long enough to amortise a commit, short enough
# that a crash redoes little. Memory does not grow with it (the decoder drains by bytes).
MAX_TICKS_PER_APPLY = 100
MAX_EVENTS_PER_APPLY = 500_000
# A skip snapshot in which every transaction is visible: all the table's events are skipped.
SKIP_ALL: tuple[int, int, list[int]] = (1 << 62, 1 << 62, [])


class LostPosition(LondisteError):
    """The provider's next batch does not continue from the local position."""


@dataclass(frozen=True)
class Batch:
    batch_id: int
    cur_tick_id: int
    prev_tick_id: int
    cur_tick_time: Any
    prev_tick_time: Any
    cur_tick_event_seq: int
    prev_tick_event_seq: int


def _drop_notifications(conn: psycopg.Connection[Any]) -> None:
    """Reads and drops what woke the idle loop (a new table, a tick): left unread, it would
    keep the socket readable and the loop from sleeping. The next step looks for work."""
    try:
        conn.pgconn.consume_input()
        while conn.pgconn.notifies() is not None:
            pass
    except psycopg.Error:
        pass  # a lost connection: the next step reconnects and says so


class Worker:
    """One node's worker: `step()` does one unit of work; `run()` loops until stopped."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg
        self.queue = cfg.queue_name
        self.local: psycopg.Connection[Any] | None = None
        self.provider: psycopg.Connection[Any] | None = None
        self.provider_location: str | None = None
        self.connected_at = 0.0
        self.plans: list[TablePlan] = []
        self.types: TypeMap = {}
        self.plans_key: object = None
        self.stats_applied = 0
        self.next_seq_sync = 0.0
        self.copy_waits = CopyWaits()
        # tables copied from a copy node as of a tick the provider had not reached then
        self.copy_ticks: dict[str, int] = {}

    # -- connections ---------------------------------------------------------------------
    def _local(self) -> psycopg.Connection[Any]:
        if self.local is None or self.local.closed:
            self.local = connect(self.cfg.db, autocommit=True, what="node database")
            # add-table and resync notify: the idle loop wakes up for a new copy at once
            self.local.add_notify_handler(lambda n: None)  # (no backlog of them kept)
            self.local.execute(sql.SQL("LISTEN {}").format(sql.Identifier(TABLES_CHANNEL)))
            self.connected_at = time.monotonic()
            self.plans_key = None  # staging tables live in the session
        return self.local

    def _provider(self, location: str) -> psycopg.Connection[Any]:
        if self.provider is not None and (
            self.provider.closed or location != self.provider_location
        ):
            self.provider.close()
            self.provider = None
        if self.provider is None:
            # Batches of several ticks are read as one UNION ALL whose branches must come out
            # in order: no parallel append.
            self.provider = connect(
                location, autocommit=True, what="provider",
                options="-c max_parallel_workers_per_gather=0",
            )  # fmt: skip
            # every tick notifies (sql/functions/queue/_tick.sql): the idle loop wakes at once
            self.provider.add_notify_handler(lambda n: None)
            self.provider.execute(sql.SQL("LISTEN {}").format(sql.Identifier(TICK_CHANNEL)))
            self.provider_location = location
        return self.provider

    def close(self) -> None:
        for conn in (self.local, self.provider):
            if conn is not None and not conn.closed:
                conn.close()
        self.local = self.provider = None

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        failures = 0
        while not daemon.stop_requested():
            if daemon.reload_requested():
                log.info("reload: reconnecting")
                self.close()
            if time.monotonic() - self.connected_at > self.cfg.connection_lifetime:
                self.close()
            try:
                busy = self.step()
                failures = 0
            except (psycopg.OperationalError, ConnectError) as e:
                failures += 1
                wait = min(self.cfg.exception_sleep, 0.5 * 2 ** min(failures, 8))
                log.warning("connection lost (%s); retrying in %.1fs", redact(first_line(e)), wait)
                self.close()
                daemon.sleep(wait)
                continue
            except (LondisteError, psycopg.Error) as e:
                failures += 1
                wait = min(self.cfg.exception_sleep, 0.5 * 2 ** min(failures, 8))
                msg = redact(first_line(e))
                log.error("%s; retrying in %.1fs", msg, wait)
                self._record_error(msg)
                daemon.sleep(wait)
                continue
            if self.cfg.loop_delay <= 0 and not busy:
                return
            if not busy:
                listening = [
                    c for c in (self.local, self.provider) if c is not None and not c.closed
                ]
                daemon.sleep(self.cfg.loop_delay, also=[c.fileno() for c in listening])
                for conn in listening:
                    _drop_notifications(conn)
        self.close()

    def _record_error(self, message: str) -> None:
        try:
            conn = self._local()
            conn.execute("select londiste_rs.set_consumer_error(%s, %s)", [self.queue, message])
        except (LondisteError, psycopg.Error):
            self.close()

    def step(self) -> bool:
        """One unit of work; True when there may be more to do right away."""
        local = self._local()
        info = require_node(local, self.cfg, verb="worker")
        if not info.uptodate:
            local.execute("select londiste_rs.set_consumer_uptodate(%s, true)", [self.queue])
            log.info("worker %s", "paused" if info.paused else "resumed")
        if info.node_type == "root":
            self._root_housekeeping(local)
            return False
        if info.paused:
            return False
        if not info.provider_location:
            raise LondisteError(
                f"provider {info.provider_node} has no known location; "
                "register it with change-provider"
            )
        prov = self._provider(info.provider_location)
        if info.node_type == "branch":
            self._branch_tick(local, prov)
        pending = pending_copies(local, self.queue)
        if pending:
            copied, hold = copy_pending(self.cfg, local, prov, info, pending, self.copy_waits)
            if copied:
                self.plans_key = None
                return True
            if hold:  # a copy node behind this node: it must catch up before we go on
                return False
        if time.monotonic() >= self.next_seq_sync:
            sync_sequences(local, prov, self.queue)
            self.next_seq_sync = time.monotonic() + SEQ_SYNC_INTERVAL
        return self._replay(local, prov, info)

    def _root_housekeeping(self, local: psycopg.Connection[Any]) -> None:
        local.execute(
            "select londiste_rs.set_consumer_completed(%s, t.tick_id, t.tick_time)"
            " from londiste_rs.tick t join londiste_rs.queue q on q.queue_id = t.tick_queue"
            " where q.queue_name = %s order by t.tick_id desc limit 1",
            [self.queue, self.queue],
        )

    # -- replay --------------------------------------------------------------------------
    def _load_plans(self, local: psycopg.Connection[Any], prov: psycopg.Connection[Any]) -> None:
        rows = local.execute(
            "select table_name, coalesce(dest_table, table_name), custom_snapshot::text,"
            " copy_tick from londiste_rs.table_info"
            " where queue_name = %s and local and merge_state = 'ok' order by table_name",
            [self.queue],
        ).fetchall()
        key = (tuple(rows), self.provider_location)
        if key == self.plans_key:
            return
        plans = []
        self.copy_ticks = {}
        for name, dest, snap, copy_tick in rows:
            p = plan_table(name, dest, table_layout(prov, name), table_layout(local, dest))
            p.skip_snapshot = _parse_snapshot(snap) if snap else None
            if copy_tick is not None:
                self.copy_ticks[name] = int(copy_tick)
            plans.append(p)
        self.plans = order_parents_first(local, plans)
        self.types = make_type_map(local, self.plans)
        prepare_staging(local, self.plans)
        self.plans_key = key

    def _next_batch(self, prov: psycopg.Connection[Any]) -> Batch | None:
        row = prov.execute(
            "select * from londiste_rs.next_batch_custom(%s, %s, %s, %s, %s)",
            [
                self.queue,
                self.cfg.consumer_name,
                _interval(self.cfg.keep_lag),
                self.cfg.batch_collect_events or None,
                _interval(self.cfg.batch_collect_interval),
            ],
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return Batch(*row[:7])

    @staticmethod
    def _batch_sql(prov: psycopg.Connection[Any], batch_id: int) -> str:
        row = prov.execute("select londiste_rs.batch_event_sql(%s)", [batch_id]).fetchone()
        assert row is not None
        return str(row[0])

    def _replay(
        self, local: psycopg.Connection[Any], prov: psycopg.Connection[Any], info: NodeInfo
    ) -> bool:
        self._load_plans(local, prov)
        last = info.last_tick_id
        combine = info.node_type != "branch"
        batches: list[Batch] = []
        queries: list[str] = []
        finished_done = False
        with prov.transaction():
            # the batch's events are sorted by ev_id on the provider: in memory, not spilled
            # to disk as with the default 4MB (a third of the read time at 300k events)
            prov.execute(
                "select set_config('work_mem', %s, true)", [f"{self.cfg.batch_work_mem >> 10}kB"]
            )
            events = 0
            while True:
                b = self._next_batch(prov)
                if b is None:
                    break
                expected = batches[-1].cur_tick_id if batches else last
                if not batches and last is not None and last >= b.cur_tick_id:
                    # applied and committed here already; the provider missed the finish
                    log.info(
                        "batch %s (tick %s) already applied; finishing it",
                        b.batch_id,
                        b.cur_tick_id,
                    )
                    prov.execute("select londiste_rs.finish_batch(%s)", [b.batch_id])
                    finished_done = True
                    continue
                if b.prev_tick_id != expected:
                    raise LostPosition(
                        f"lost position: the provider's next batch covers ticks "
                        f"{b.prev_tick_id}..{b.cur_tick_id} but this node has applied up to "
                        f"tick {expected}; re-create the node or re-register it at tick {expected}"
                    )
                batches.append(b)
                # the batch's SQL is built from its ticks, so before finishing it
                queries.append(self._batch_sql(prov, b.batch_id))
                events += max(0, b.cur_tick_event_seq - b.prev_tick_event_seq)
                prov.execute("select londiste_rs.finish_batch(%s)", [b.batch_id])
                if not combine or len(batches) >= MAX_TICKS_PER_APPLY:
                    break
                if events >= MAX_EVENTS_PER_APPLY:
                    break
            if not batches:
                return finished_done
            resolved = self._resolve_copy_ticks(prov, batches[-1].cur_tick_id)
            query = sql.SQL("copy ({}) to stdout (format binary)").format(
                sql.SQL(" union all ").join(
                    sql.SQL("(select " + EVENT_COLUMNS + " from ({}) e)").format(sql.SQL(q))
                    for q in queries
                )
            )

            def fetch() -> Iterator[bytes | bytearray | memoryview]:
                return read_copy(prov, query)

            last_batch = batches[-1]
            with local.transaction():
                stats = apply_events(
                    local, self.plans, fetch, self.cfg.apply_chunk_bytes, self.types
                )
                for table, snap in resolved.items():
                    local.execute(
                        "update londiste_rs.table_info set custom_snapshot = %s,"
                        " copy_tick = null where queue_name = %s and table_name = %s",
                        [snap, self.queue, table],
                    )
                if info.node_type == "branch":
                    self._requeue(local, prov, batches[0], queries[0])
                local.execute(
                    "select londiste_rs.set_consumer_completed(%s, %s, %s)",
                    [self.queue, last_batch.cur_tick_id, last_batch.cur_tick_time],
                )
            # the local commit happened; now the provider's finish commits (leaving the block).
            # The local commit must be durable before that: with synchronous_commit=off a
            # subscriber crash could lose it after the provider moved on ("lost position"),
            # so the apply session keeps the server's default.
            if info.node_type == "branch":
                self._branch_tick(local, prov)
        release_copy_snapshots(local, prov, self.queue, last_batch.cur_tick_id)
        self.stats_applied += stats.upserts + stats.deletes
        log.info(
            "applied ticks %s..%s (%d batch%s): %d upserts, %d deletes, %d truncates in %.3fs"
            " (%.3fs waiting for the provider, %.3fs writing)%s",
            batches[0].prev_tick_id,
            last_batch.cur_tick_id,
            len(batches),
            "" if len(batches) == 1 else "es",
            stats.upserts,
            stats.deletes,
            stats.truncates,
            stats.seconds,
            stats.wait_seconds,
            stats.write_seconds,
            " (exact order)" if stats.exact_order else "",
        )
        return True

    def _resolve_copy_ticks(self, prov: psycopg.Connection[Any], upto: int) -> dict[str, str]:
        """Skip snapshots for tables copied from a copy node as of tick T (`copy_ticks`) that
        the provider had not reached then: once this apply reaches T, the provider's tick T
        snapshot (returned, to be stored); before, every event of the table (all of them in
        ticks <= T, so in the copy)."""
        resolved: dict[str, str] = {}
        for p in self.plans:
            tick = self.copy_ticks.get(p.name)
            if tick is None:
                continue
            if upto < tick:
                p.skip_snapshot = SKIP_ALL
                continue
            snap = tick_snapshot(prov, self.queue, tick)
            if snap is None:
                raise LondisteError(
                    f"tick {tick}, which the copy of {p.name} is as of, is gone from the "
                    f"provider; run resync {p.name}"
                )
            p.skip_snapshot = _parse_snapshot(snap)
            resolved[p.name] = snap
        return resolved

    def _requeue(
        self, local: psycopg.Connection[Any], prov: psycopg.Connection[Any], b: Batch, query: str
    ) -> None:
        """Branch: the batch's events go into the local queue with the same ids, then the
        local queue gets the provider's tick (same id, time, event sequence)."""
        cols = (
            "ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,"
            " ev_extra1, ev_extra2, ev_extra3, ev_extra4"
        )
        # as insert_event does: take a txid before reading the current table (rotation)
        local.execute("select pg_current_xact_id()")
        row = local.execute(
            "select 'event_' || q.queue_id || '_' || londiste_rs._cur_table(q.queue_id)"
            " from londiste_rs.queue q where q.queue_name = %s",
            [self.queue],
        ).fetchone()
        assert row is not None
        target = sql.Identifier("londiste_rs", str(row[0]))
        copy_out = sql.SQL("copy (select " + cols + " from ({}) e) to stdout (format binary)")
        copy_in = sql.SQL("copy {} (" + cols + ") from stdin (format binary)")
        # the rows move in Rust (no Python per event): both connections are in their
        # transactions, which keep the re-queued events with the apply
        libpq.copy_between(
            prov, copy_out.format(sql.SQL(query)).as_bytes(prov),
            local, copy_in.format(target).as_bytes(local),
        )  # fmt: skip

    def _branch_tick(self, local: psycopg.Connection[Any], prov: psycopg.Connection[Any]) -> None:
        """Branch: gives the local queue the provider's tick for the last applied batch, in
        its own transaction after the apply committed. (A snapshot never shows its own
        transaction as finished, so a tick made in the apply transaction would leave the
        re-queued events to the next tick.) Also repairs a tick missing after a crash."""
        row = local.execute(
            "select s.last_tick_id, (select max(t.tick_id) from londiste_rs.tick t"
            "  join londiste_rs.queue q on q.queue_id = t.tick_queue where q.queue_name = %s)"
            " from londiste_rs.local_state s where s.queue_name = %s",
            [self.queue, self.queue],
        ).fetchone()
        if row is None or row[0] is None or (row[1] is not None and row[1] >= row[0]):
            return
        tick = prov.execute(
            "select t.tick_time, t.tick_event_seq from londiste_rs.tick t"
            " join londiste_rs.queue q on q.queue_id = t.tick_queue"
            " where q.queue_name = %s and t.tick_id = %s",
            [self.queue, row[0]],
        ).fetchone()
        if tick is None:
            raise LondisteError(
                f"tick {row[0]} is gone from the provider; the branch queue cannot get it"
            )
        local.execute(
            "select londiste_rs.ticker(%s, %s, %s, %s)", [self.queue, row[0], tick[0], tick[1]]
        )


def _interval(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds} seconds"


def _parse_snapshot(text: str) -> tuple[int, int, list[int]]:
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), [int(x) for x in xip.split(",") if x]


def run_worker(cfg: JobConfig) -> None:
    """The body `daemon.dispatch` runs."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, verb="worker")
    log.info("worker for %s node %s of queue %s", info.node_type, info.node_name, cfg.queue_name)
    Worker(cfg).run()
