"""The copy round the worker runs between two batches (`copy_pending`).

The worker copies between two batches (`copy_pending`): every table that needs a copy and that
its provider has 'ok', `parallel_copies` tables at a time, big tables in ctid ranges read in
parallel under one exported snapshot (`initial_copy.copy_tables`), while writes go on on the
provider. Replay waits for the copies; so every copy's snapshot is later than the tick the
node has applied, and the first batch after it continues from that tick. Events of
transactions visible in a table's copy snapshot are already in its rows: the decoder skips them
(`custom_snapshot`, reference §3.4), so the table joins the event stream with nothing missed
and nothing applied twice. With `copy_node` in its attributes (add-table/resync
--copy-node) a table is copied from that node of the cascade instead, as of that node's last
tick (docs/internals.md §6). One failing table is marked 'failed' with its error; the others
go on. The copy's figures (rows, bytes, estimate, time) are written to the table's row while
it runs, for `tables` and `status`.

Tables are copied largest first. Foreign keys to and from the copied tables, their plain
indexes and (into a table the copy empties) their keys are dropped before the copies
(TRUNCATE refuses a table another table references, and indexes build faster after the data)
and recorded in `dropped_ddl` in the same transaction, so a crash in between is repaired by
the next copy. As soon as a table's rows are in, its copy thread rebuilds its keys and
indexes (beside the other copies) and marks it 'ok'; a foreign key between two copied tables
is restored, and validated, by the later of the two: until then it is recorded with the one
still copying, never with a table that is 'ok'. What cannot be restored (the copied rows
break a key) stays recorded and fails its table. The copied tables' ANALYZE follows the
round. add-table and resync NOTIFY the worker, which LISTENs while idle, so a copy starts at
once rather than after loop_delay.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, TableError
from londiste_rs.pg import deferred
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.deferred import Deferred
from londiste_rs.pg.names import name_of
from londiste_rs.pg.snapshot import Snapshot
from londiste_rs.progress import Progress, ProgressCallback, ProgressPrinter
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import NodeInfo
from londiste_rs.store.tables import TableState
from londiste_rs.tables import initial_copy
from londiste_rs.tables.common import provider_location
from londiste_rs.tables.copy_source import CopyJob, CopyWaits, at_tick, copy_node_job
from londiste_rs.tables.initial_copy import CopyFailed, CopyResult, copy_tables

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# ctid ranges per big table (each range one provider and one subscriber connection; tables
# under initial_copy.MIN_RANGE_BYTES per range are read in one piece).
RANGE_JOBS = 4


def pending_copies(conn: Conn, queue: str) -> list[str]:
    """Tables that need a copy ('in-copy' here means a copy a crash interrupted)."""
    return [
        t.table_name for t in store_tables.table_states(conn, queue) if t.merge_state.wants_copy
    ]


class _Recorder:
    """A progress callback writing each table's figures to its row (its own connection; the
    copy threads call it) and showing them (bars on a terminal, log lines otherwise)."""

    def __init__(self, dsn: str, queue: str, observe: ProgressCallback | None = None):
        self.dsn, self.queue, self.observe = dsn, queue, observe
        self.lock = threading.Lock()
        self.conn: Conn | None = None
        self.show = ProgressPrinter()

    def __call__(self, p: Progress) -> None:
        self.show(p)
        if self.observe is not None:
            self.observe(p)
        with self.lock:
            try:
                if self.conn is None:
                    self.conn = connect(self.dsn, autocommit=True, what="node database")
                store_tables.record_progress(self.conn, self.queue, p.table, p.rows, p.bytes,
                                             p.total_rows, p.elapsed)  # fmt: skip
            except (LondisteError, psycopg.Error) as e:  # figures only: never fail the copy
                log.warning("cannot record the copy progress of %s: %s", p.table, first_line(e))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def copy_pending(
    cfg: JobConfig,
    local: Conn,
    prov: Conn,
    info: NodeInfo,
    tables: list[str],
    waits: CopyWaits | None = None,
    observe: ProgressCallback | None = None,
) -> tuple[bool, bool]:
    """Copies those of `tables` whose source has them 'ok' (see the module doc): the
    provider, or the table's copy node. Returns (whether any table was copied or failed,
    whether replay must wait for a copy node that is behind). Each table copied ends 'ok'
    with the snapshot of what it holds, or 'failed' with its error. `observe` also gets
    every progress report (the worker's metrics)."""
    queue = cfg.queue_name
    waits = waits if waits is not None else CopyWaits()
    prov_dsn = provider_location(cfg, info)
    states = {s.table_name: s for s in store_tables.table_states(local, queue)}
    by_node: dict[str, list[str]] = {}
    for t in tables:
        node = states[t].copy_node
        if node is not None and node != info.provider_node:
            by_node.setdefault(node, []).append(t)
    from_provider = [t for t in tables if not any(t in ts for ts in by_node.values())]
    ready_there = store_tables.ok_tables(prov, queue, from_provider)
    jobs: list[CopyJob] = []
    ready = [t for t in from_provider if t in ready_there]
    if ready:
        jobs.append(
            CopyJob(prov_dsn, f"provider {info.provider_node}", ready, {t: t for t in ready})
        )
    failed: dict[str, str] = {}
    hold = False
    for node, ts in by_node.items():
        job, held = copy_node_job(cfg, local, info, node, ts, waits, failed)
        hold = hold or held
        if job is not None:
            jobs.append(job)
    ready = [t for j in jobs for t in j.tables]
    if not ready and not failed:
        return False, hold
    store_tables.mark_in_copy(local, queue, ready)
    _defer(local, queue, ready, states, failed)
    round_ = _Round(cfg, prov_dsn, {t: states[t].dest_table or t for t in ready})
    recorder = _Recorder(cfg.db, queue, observe)
    done: list[tuple[CopyJob, str, CopyResult]] = []
    not_ready: list[str] = []
    try:
        for job in jobs:
            back = {str(name_of(job.sources[t])): t for t in job.tables}
            hook = (
                None if job.node is None else at_tick(queue, job.node, info.last_tick_id or 0, back)
            )
            for skip in (False, True):
                group = [t for t in job.tables if t not in failed
                         and states[t].skip_truncate == skip]  # fmt: skip
                if not group:
                    continue
                log.info("initial copy of %s from %s", ", ".join(group), job.label)
                pairs = [(name_of(job.sources[t]), name_of(states[t].dest_table or t))
                         for t in group]  # fmt: skip
                try:
                    results = copy_tables(
                        job.dsn, cfg.db, pairs, parallel_copies=cfg.parallel_copies,
                        jobs=RANGE_JOBS, min_range_bytes=initial_copy.MIN_RANGE_BYTES,
                        skip_truncate=skip, progress=recorder, at_snapshot=hook,
                        analyze=False, finish=functools.partial(round_.finish, job, back),
                    )  # fmt: skip
                except CopyFailed as e:
                    results = e.results
                    for src, error in e.errors.items():
                        if src in e.not_ready:
                            not_ready.append(back[src])
                            waits.note(back[src], f"{back[src]}: copy waits: {error}")
                        else:
                            failed[back[src]] = error
                done += [(job, back[str(r.source)], r) for r in results]
    finally:
        recorder.close()
        round_.close()
        # the tables no copy thread finished (failed, not ready, interrupted), with the foreign
        # keys handed to them
        failed.update(_restore(local, queue, [t for t in ready if t not in round_.finished]))
    for _job, table, r in done:  # after 'ok' is committed: replay need not wait for it
        waits.done(table)
        try:
            local.execute(sql.SQL("ANALYZE {}").format(r.dest.ident))
        except psycopg.Error as e:
            log.warning("%s: ANALYZE after the copy failed: %s", r.dest, first_line(e))
    for table in not_ready:
        store_tables.mark_not_started(local, queue, table)
    for table, error in failed.items():
        store_tables.mark_failed(local, queue, table, error)
        waits.done(table)
        log.error("%s: initial copy failed: %s", table, error)
    return len(not_ready) < len(ready) or bool(failed), hold


def _defer(
    local: Conn, queue: str, ready: list[str], states: dict[str, TableState], failed: dict[str, str]
) -> None:
    """Drops the foreign keys and plain indexes of the tables about to be copied, one table
    at a time (a foreign key between two of them is dropped once), recording them."""
    for t in ready:
        try:
            with local.transaction():  # dropped and recorded at once: a crash loses neither
                # also the keys, into a table the copy empties: built once after the data
                # instead of maintained row by row (a key the rows break fails the table then)
                items = deferred.defer_secondary(
                    local, name_of(states[t].dest_table or t), keys=not states[t].skip_truncate
                )
                if items:
                    store_tables.record_dropped(local, queue, t, items)
        except LondisteError as e:
            failed[t] = str(e)


# Every statement on `dropped_ddl` changes only its own items (copy threads write the same
# rows), never writing back a list read before.


def _restore(
    conn: Conn,
    queue: str,
    tables: list[str],
    kinds: tuple[str, ...] = ("key", "index", "check", "fkey"),
) -> dict[str, str]:
    """Brings back what `_defer` (also a crashed earlier copy) dropped for these tables, of
    these kinds. Returns the tables something could not be restored for, with the error: they
    are not in sync (e.g. the copied rows break the table's key); what failed stays in
    `dropped_ddl`, so their resync tries it again."""
    items = [(t, i) for t, i in store_tables.dropped(conn, queue, tables) if i.kind in kinds]
    errors: dict[str, str] = {}
    for table, item in sorted(items, key=lambda ti: deferred.RESTORE_ORDER[ti[1].kind]):
        try:
            with conn.transaction():  # restored and forgotten at once: a crash repeats neither
                deferred.restore_secondary(conn, [item])
                store_tables.forget_dropped(conn, queue, table, [item])
        except LondisteError as e:
            errors.setdefault(
                table, f"after the copy: {e}; fix the rows or the definition, then resync {table}"
            )
    return errors


def _hand_over(conn: Conn, queue: str, table: str, waiting: dict[str, str]) -> None:
    """Moves the foreign keys recorded with `table` whose other end is still to be copied
    (`waiting`: local name -> table) to that table's record: restored once it is copied, and
    never left recorded with a table that is 'ok' (nothing would restore them)."""
    moves: dict[str, list[Deferred]] = {}
    for _, item in store_tables.dropped(conn, queue, [table]):
        ends = [waiting[e] for e in (item.table, item.references) if e in waiting]
        if item.kind == "fkey" and ends:
            moves.setdefault(ends[0], []).append(item)
    if not moves:
        return
    with conn.transaction():
        for other, items in moves.items():
            store_tables.record_dropped(conn, queue, other, items)
            store_tables.forget_dropped(conn, queue, table, items)
            log.debug("%s: foreign keys %s wait for the copy of %s",
                      table, ", ".join(i.name for i in items), other)  # fmt: skip


class _ThreadConns:
    """One autocommit connection per thread and database, opened when first needed (psycopg
    connections are not shared between threads)."""

    def __init__(self) -> None:
        self.mine = threading.local()
        self.lock = threading.Lock()
        self.opened: list[Conn] = []

    def get(self, dsn: str, what: str) -> Conn:
        conns: dict[str, Conn] = vars(self.mine).setdefault("conns", {})
        if dsn not in conns:
            conns[dsn] = connect(dsn, autocommit=True, what=what)
            with self.lock:
                self.opened.append(conns[dsn])
        return conns[dsn]

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


class _Round:
    """What the copy threads of one `copy_pending` round share: the tables their foreign keys
    wait for (not copied yet, or copied with keys that could not be rebuilt), those whose
    copy thread finished, and the threads' connections."""

    def __init__(self, cfg: JobConfig, prov_dsn: str, local_names: dict[str, str]):
        self.cfg, self.prov_dsn = cfg, prov_dsn
        self.local_names = local_names  # table -> the local table it is copied into
        self.waiting = set(local_names)
        self.finished: set[str] = set()
        self.lock = threading.Lock()
        self.conns = _ThreadConns()

    def finish(self, job: CopyJob, back: dict[str, str], r: CopyResult) -> None:
        """Runs in the copy's thread as soon as a table's rows are in, so the table is usable
        while others copy: its keys and indexes rebuilt, its foreign keys too once the table
        at their other end is copied (until then recorded with that table), then 'ok' with its
        copy snapshot. Raises TableError (the table fails) when something cannot be restored."""
        table, queue = back[str(r.source)], self.cfg.queue_name
        conn = self.conns.get(self.cfg.db, "node database")
        errors = _restore(conn, queue, [table], ("key", "index", "check"))
        with self.lock:  # a foreign key between two tables is restored by the later one
            self.finished.add(table)
            if not errors:  # else its foreign keys (on its keys, maybe) stay with it
                self.waiting.discard(table)
                _hand_over(conn, queue, table, {self.local_names[t]: t for t in self.waiting})
        errors = {**_restore(conn, queue, [table], ("fkey",)), **errors}
        if errors:
            raise TableError(errors[table])
        self._ok(conn, job, table, r)

    def _ok(self, conn: Conn, job: CopyJob, table: str, r: CopyResult) -> None:
        # a copy node's rows are as of its tick r.mark: skip what the provider's snapshot of
        # that tick shows, or (no such tick there yet) keep the tick for the worker
        snapshot: Snapshot | None = r.snapshot
        copy_tick: int | None = None
        if job.node is not None:
            prov = self.conns.get(self.prov_dsn, "provider")
            tick = store_queue.get_tick(prov, self.cfg.queue_name, int(r.mark))
            snapshot = None if tick is None else tick.snapshot
            copy_tick = int(r.mark) if tick is None else None
        store_tables.mark_ok(conn, self.cfg.queue_name, table, snapshot, copy_tick,
                             (r.rows, r.bytes, r.seconds))  # fmt: skip
        as_of = "" if job.node is None else f" from node {job.node}, as of tick {r.mark}"
        log.info("%s: initial copy done (%d rows in %.1fs%s)", table, r.rows, r.seconds, as_of)

    def close(self) -> None:
        self.conns.close()


def release_copy_snapshots(local: Conn, prov: Conn, queue: str, tick_id: int) -> None:
    """Forgets copy snapshots no later batch can need: once the applied tick's snapshot has
    every transaction below the copy snapshot's xmax finished, every later event comes from a
    transaction the copy did not see."""
    snaps = store_tables.copy_snapshots(local, queue)
    if not snaps:
        return
    tick = store_queue.get_tick(prov, queue, tick_id)
    if tick is None:
        return
    for table, snap in snaps:
        if tick.snapshot.xmin >= snap.xmax:
            store_tables.set_skip_snapshot(local, queue, table, None)
