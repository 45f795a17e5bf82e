"""The replay loop (`londiste-rs node.ini worker`).

On a branch or leaf, each step takes the next batch(es) from the provider (batches.py) and
applies them on the local database in ONE transaction together with the tick position
(exactly once); the provider's finish commits after the local commit, so a crash in between
is found as "already applied" by the next step. A branch also re-queues each batch for its
own subscribers (branch.py). Between batches the worker runs the initial copies that are
due (tables/copy_round.py) and moves the sequences forward.

On a root the worker does the root's housekeeping: it records the queue's last tick as the
node's position, which `status` and `wait-root` read.

Errors follow the one retry policy (retry.py): a transient one is retried with a backoff, a
permanent one is recorded with its fix where `status` shows it and looked at again slowly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from londiste_rs import daemon
from londiste_rs.config import STARTUP_SETTINGS, JobConfig, load_job_config, reloaded
from londiste_rs.errors import ConnectError, LondisteError
from londiste_rs.logsetup import figures, set_context
from londiste_rs.pg.db import connect, first_line, with_fix
from londiste_rs.progress import Progress
from londiste_rs.replication import batches, branch
from londiste_rs.replication.apply import apply_events, read_copy
from londiste_rs.replication.barriers import StreamBarriers
from londiste_rs.replication.execute import ExecuteFailed
from londiste_rs.replication.heartbeat import Heartbeat
from londiste_rs.replication.plans import PlanCache
from londiste_rs.replication.shapes import SchemaWait
from londiste_rs.retry import Backoff, classify
from londiste_rs.store import execute as store_execute
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import NodeInfo, NodeMissing, get_node_info, require_node
from londiste_rs.tables.common import provider_location
from londiste_rs.tables.copy_round import copy_pending, pending_copies, release_copy_snapshots
from londiste_rs.tables.copy_source import CopyWaits
from londiste_rs.tables.sequences import sync_sequences

if TYPE_CHECKING:
    from londiste_rs.metrics import NodeMetrics

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# Channel every new tick is notified on (sql/functions/queue/_tick.sql).
TICK_CHANNEL = "londiste_rs_tick"
# How often a subscriber's worker moves its sequences up to its provider's.
SEQ_SYNC_INTERVAL = 2.0
# How often a root's worker makes the capture functions follow columns changed without
# execute (store/execute.capture_follow).
CAPTURE_FOLLOW_INTERVAL = 10.0
# How often a worker stopped by a missing column or a missing node (dropped, not created yet)
# looks whether it exists now: one catalog lookup, so the fix is noticed within a second
# rather than at the permanent error's slow retry.
SCHEMA_POLL = 1.0
# What a reload (SIGHUP) does not change in a running worker: what its start set up, and which
# node and consumer it is.
FIXED_AT_START = (*STARTUP_SETTINGS, "queue_name", "consumer_name", "job_name")


def _drop_notifications(conn: Conn) -> None:
    """Reads and drops what woke the idle loop (a new table, a tick): left unread, it would
    keep the socket readable and the loop from sleeping. The next step looks for work."""
    try:
        conn.pgconn.consume_input()
        while conn.pgconn.notifies() is not None:
            pass
    except psycopg.Error:
        pass  # a lost connection: the next step reconnects and says so


class NoMetrics:
    """A worker's metrics when `metrics_listen` is not set: nothing is counted, and
    prometheus-client (15 ms of the worker's start) is not imported."""

    def position(self, node: str, tick_id: int | None, tick_time: datetime | None) -> None:
        pass

    def batch(self, events: int, batches: int, seconds: float) -> None:
        pass

    def error(self) -> None:
        pass

    def copy_progress(self, p: Progress) -> None:
        pass

    def poll(self, local: Conn, provider: Conn | None) -> None:
        pass


class Worker:
    """One node's worker: `step()` does one unit of work; `run()` loops until stopped."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg
        self.queue = cfg.queue_name
        self.local: Conn | None = None
        self.provider: Conn | None = None
        self.provider_location: str | None = None
        self.connected_at = 0.0
        self.plans = PlanCache(self.queue)
        self.stats_applied = 0
        self.next_seq_sync = 0.0
        self.next_capture_follow = 0.0
        self.copy_waits = CopyWaits()
        self.metrics: NodeMetrics | NoMetrics = NoMetrics()
        if cfg.metrics_listen is not None:
            from londiste_rs.metrics import NodeMetrics

            self.metrics = NodeMetrics(self.queue, enabled=True)
        # Set by a notification (a tick on the provider, a table added here). One that arrives
        # while a step runs a query is read by psycopg then, and no longer wakes the sleep;
        # this flag keeps it from being lost (the next step looks for work at once).
        self.notified = False

    def _listen(self, conn: Conn, channel: str) -> None:
        conn.add_notify_handler(self._on_notify)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def _on_notify(self, _n: psycopg.Notify) -> None:
        self.notified = True

    # -- connections ---------------------------------------------------------------------
    def _local(self) -> Conn:
        if self.local is None or self.local.closed:
            self.local = connect(self.cfg.db, autocommit=True, what="node database")
            # add-table and resync notify: the idle loop wakes up for a new copy at once
            self._listen(self.local, store_tables.TABLES_CHANNEL)
            self.connected_at = time.monotonic()
            self.plans.invalidate()  # staging tables live in the session
        return self.local

    def _provider(self, location: str) -> Conn:
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
            self._listen(self.provider, TICK_CHANNEL)
            self.provider_location = location
        return self.provider

    def close(self) -> None:
        for conn in (self.local, self.provider):
            if conn is not None and not conn.closed:
                conn.close()
        self.local = self.provider = None

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        beat = Heartbeat(self.cfg)  # status tells a live worker by it (issue 16)
        beat.start()
        try:
            self._loop(beat)
        finally:
            beat.stop()
            self.close()

    def _loop(self, beat: Heartbeat) -> None:
        backoff = Backoff(self.cfg.exception_sleep)
        while not daemon.stop_requested():
            if daemon.reload_requested():
                self.reload(beat)
                backoff = Backoff(self.cfg.exception_sleep)
            if time.monotonic() - self.connected_at > self.cfg.connection_lifetime:
                self.close()
            beat.activity = "working"
            try:
                busy = self.step()
                backoff.reset()
            except Exception as e:  # the policy decides; the worker never dies of it
                verdict = classify(e)
                wait = backoff.failed(verdict)
                self.metrics.error()
                if isinstance(e, ExecuteFailed):
                    # a statement of an execute file failed here: the node waits, paused,
                    # for the fix and 'resume' (or 'execute --skip')
                    log.error("%s; the node is paused", verdict.message)
                    self._pause()
                    wait = 0.0
                elif verdict.transient:
                    log.warning("%s; retrying in %.1fs", verdict.message, wait)
                else:
                    log.error("%s; looking again in %.0fs", verdict.message, wait)
                log.debug("error details", exc_info=True)
                if verdict.lost_connection:
                    self.close()
                else:  # also forget plans and sessions an unforeseen error may have left
                    self._record_error(verdict.message)
                    self.plans.invalidate()
                beat.activity = "retrying after an error"
                if isinstance(e, SchemaWait):
                    self._wait_until(f"the missing column of {e.table}", e.ready, wait)
                elif isinstance(e, NodeMissing):
                    self._wait_until("the node", self._node_exists, wait)
                else:
                    daemon.sleep(wait)
                continue
            if self.cfg.loop_delay <= 0 and not busy:
                return
            if not busy:
                beat.activity = "idle"
                listening = [
                    c for c in (self.local, self.provider) if c is not None and not c.closed
                ]
                if not self.notified:
                    daemon.sleep(self.cfg.loop_delay, also=[c.fileno() for c in listening])
                self.notified = False
                for conn in listening:
                    _drop_notifications(conn)

    def reload(self, beat: Heartbeat) -> None:
        """SIGHUP (`-r`), as londiste3's: reads the job file again, and the next step runs with
        it on new connections. A file that no longer loads keeps the old config, with the
        reason; FIXED_AT_START settings that changed wait for the next start, with a warning."""
        self.close()
        try:
            cfg = load_job_config(self.cfg.path)
        except LondisteError as e:
            log.error("reload failed, keeping the old config: %s", e)
            return
        self.cfg = reloaded(self.cfg, cfg, FIXED_AT_START)
        beat.use(self.cfg)
        log.info("config reloaded from %s", self.cfg.path)

    def _pause(self) -> None:
        try:
            store_node.set_paused(self._local(), self.queue, True)
        except (LondisteError, psycopg.Error):
            self.close()

    def _wait_until(self, what: str, ready: Callable[[Conn], bool], seconds: float) -> None:
        """Sleeps up to `seconds`, looking every SCHEMA_POLL whether `ready(local)` (then the
        step is tried again at once)."""
        deadline = time.monotonic() + seconds
        while not daemon.stop_requested() and time.monotonic() < deadline:
            daemon.sleep(min(SCHEMA_POLL, max(0.0, deadline - time.monotonic())))
            try:
                if ready(self._local()):
                    log.info("%s is here now; going on", what)
                    return
            except (LondisteError, psycopg.Error):
                return

    def _node_exists(self, local: Conn) -> bool:
        return get_node_info(local, self.queue) is not None

    def _follow_capture(self, local: Conn) -> None:
        """Root: the capture of a table whose columns were changed without execute follows
        them (otherwise its rows would carry the old shape until the next execute)."""
        if time.monotonic() < self.next_capture_follow:
            return
        self.next_capture_follow = time.monotonic() + CAPTURE_FOLLOW_INTERVAL
        try:
            followed = store_execute.capture_follow(local, self.queue)
        except psycopg.Error as e:
            log.warning("capture functions could not follow their tables (%s)", first_line(e))
            return
        if followed:
            log.warning(
                "columns of %s were changed without execute; their capture follows them now "
                "(subscribers may stop on rows captured before: make schema changes with "
                "execute)",
                ", ".join(followed),
            )

    def _record_error(self, message: str) -> None:
        try:
            store_node.set_error(self._local(), self.queue, message)
        except (LondisteError, psycopg.Error):
            self.close()

    def step(self) -> bool:
        """One unit of work; True when there may be more to do right away."""
        local = self._local()
        info = require_node(local, self.cfg, verb="worker")
        self.metrics.position(info.node_name, info.last_tick_id, info.last_tick_time)
        if not info.uptodate:
            store_node.set_uptodate(local, self.queue, True)
            log.info("worker %s", "paused" if info.paused else "resumed")
        if info.node_type == "root":
            tick = store_queue.get_tick(local, self.queue)
            if tick is not None:
                store_node.set_completed(local, self.queue, tick.tick_id, tick.time)
                self.metrics.position(info.node_name, tick.tick_id, tick.time)
            self.metrics.poll(local, None)
            self._follow_capture(local)
            return False
        if info.paused:
            return False
        prov = self._provider(provider_location(self.cfg, info))
        self.metrics.poll(local, prov)
        if info.node_type == "branch":
            branch.tick(local, prov, self.queue)
        pending = pending_copies(local, self.queue)
        if pending:
            copied, hold = copy_pending(self.cfg, local, prov, info, pending, self.copy_waits,
                                        self.metrics.copy_progress)  # fmt: skip
            if copied:
                self.plans.invalidate()
                return True
            if hold:  # a copy node behind this node: it must catch up before we go on
                return False
        if time.monotonic() >= self.next_seq_sync:
            sync_sequences(local, prov, self.queue)
            self.next_seq_sync = time.monotonic() + SEQ_SYNC_INTERVAL
        return self._replay(local, prov, info)

    # -- replay --------------------------------------------------------------------------
    def _replay(self, local: Conn, prov: Conn, info: NodeInfo) -> bool:
        plans = self.plans.get(local, prov, self.provider_location)
        barriers = StreamBarriers(local, self.queue, self.plans.provider, self.cfg.path.name)
        is_branch = info.node_type == "branch"
        with prov.transaction():
            taken = batches.take(self.cfg, prov, info.last_tick_id, combine=not is_branch)
            if taken is None:
                return False
            resolved = self.plans.resolve_copy_ticks(prov, taken.batch.tick_id)
            query = taken.stream_query()

            def fetch() -> Iterator[bytes | bytearray | memoryview]:
                return read_copy(prov, query)

            with local.transaction():
                # the merge statements join a staging table with its target table: with the
                # default 4MB the hash of a 200k-row table already spills to disk
                local.execute(
                    "select set_config('work_mem', %s, true)",
                    [f"{self.cfg.apply_work_mem >> 10}kB"],
                )
                try:
                    stats = apply_events(
                        local, plans, fetch, self.cfg.apply_chunk_bytes, self.plans.types,
                        barriers,
                    )  # fmt: skip
                except BaseException:
                    # plans replaced or local tables changed in the rolled-back part
                    self.plans.invalidate()
                    raise
                for table, snap in resolved.items():
                    store_tables.set_skip_snapshot(local, self.queue, table, snap)
                if is_branch:
                    branch.requeue(local, prov, self.queue, taken.query)
                store_node.set_completed(
                    local, self.queue, taken.batch.tick_id, taken.batch.tick_time
                )
            # the local commit happened; now the provider's finish commits (leaving the block).
            # The local commit must be durable before that: with synchronous_commit=off a
            # subscriber crash could lose it after the provider moved on ("lost position"),
            # so the apply session keeps the server's default.
            if is_branch:
                branch.tick(local, prov, self.queue)
        release_copy_snapshots(local, prov, self.queue, taken.batch.tick_id)
        if stats.replanned:  # the plans a barrier made were for this batch only
            self.plans.invalidate()
        self.stats_applied += stats.upserts + stats.deletes
        n = taken.batch.ticks
        events = stats.decoder.get("events", stats.upserts + stats.deletes + stats.truncates)
        self.metrics.batch(events, n, stats.seconds)
        self.metrics.position(info.node_name, taken.batch.tick_id, taken.batch.tick_time)
        log.info(
            "applied ticks %s..%s (%d tick%s): %d upserts, %d deletes, %d truncates in %.3fs"
            " (%.3fs waiting for the provider, %.3fs writing)%s",
            taken.batch.prev_tick_id, taken.batch.tick_id, n, "" if n == 1 else "s",
            stats.upserts, stats.deletes, stats.truncates, stats.seconds,
            stats.wait_seconds, stats.write_seconds,
            " (exact order)" if stats.exact_order else "",
            extra=figures(ticks=n, events=events, seconds=round(stats.seconds, 6)),
        )  # fmt: skip
        return True


def check_worker(cfg: JobConfig) -> None:
    """The worker's start-up checks (run before -d detaches): the node's database answers and
    holds the node. One line naming the fix otherwise."""
    try:
        with connect(cfg.db, autocommit=True, what="node database") as conn:
            require_node(conn, cfg, verb="worker")
    except ConnectError as e:
        raise with_fix(e, f"'db' in {cfg.path.name}") from None


def run_worker(cfg: JobConfig) -> None:
    """The body `daemon.dispatch` runs."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, verb="worker")
    set_context(node=info.node_name, queue=cfg.queue_name)
    log.info("worker for %s node %s of queue %s", info.node_type, info.node_name, cfg.queue_name)
    Worker(cfg).run()
