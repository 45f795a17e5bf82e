"""The initial copy of a table: its rows on the provider, as of one snapshot, into the
subscriber's table, with binary COPY passed through block by block (no Python per row).

    provider                                           subscriber
    coordinator: BEGIN REPEATABLE READ; LOCK src ACCESS SHARE;
                 pg_export_snapshot(), pg_current_snapshot()
    range 0 ── COPY (SELECT cols FROM ONLY src WHERE ctid < '(b1,0)') TO STDOUT
                                                        ──► COPY dst (cols) FROM STDIN
    range 1 ── SET TRANSACTION SNAPSHOT; ... ctid in [b1, b2) ...
                                                        ──► its own connection
    ...

The returned snapshot (xmin, xmax, xip) is the one every range read under: events of
transactions visible in it are already in the copy (reference §3.4); the worker skips them.

Why ctid ranges and not primary-key ranges: a TID range scan (PostgreSQL 14+) reads exactly
its blocks sequentially, needs no index and no integer key, and cuts the table into equal
bytes whatever the key distribution; key ranges need an integer key, are uneven on skewed
keys and read through the index. The last range is open-ended, so rows in blocks past the
size read at snapshot time (none can be visible to the snapshot, but cheap to be sure) are
still copied.

Memory is bounded by the relay's block (256 KiB plus one row, rust/src/pq.rs) per range,
whatever the table's size.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql

from londiste_rs.errors import LondisteError, TableError
from londiste_rs.pg import libpq
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.deferred import defer_secondary, restore_secondary
from londiste_rs.pg.names import TableName
from londiste_rs.pg.snapshot import Snapshot
from londiste_rs.progress import Progress, ProgressCallback
from londiste_rs.tables.copy_plan import (
    import_snapshot,
    largest_first,
    snapshot_plan,
)

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# Below this many bytes per range a table is not worth more connections.
MIN_RANGE_BYTES = 32 << 20
PROGRESS_INTERVAL = 1.0


@dataclass(frozen=True)
class CopyResult:
    source: TableName
    dest: TableName
    columns: tuple[str, ...]
    rows: int
    bytes: int
    seconds: float
    ranges: int
    format: str  # 'binary', or 'text' when a column's binary form embeds type OIDs
    snapshot: Snapshot
    mark: Any = None  # what `at_snapshot` returned

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class SourceNotReady(TableError):
    """Raised by an `at_snapshot` check: the source cannot give a usable copy yet (nothing
    was copied; try again later)."""


class CopyFailed(TableError):
    """Some tables of `copy_tables` failed; the others were copied (`results`). `not_ready`:
    those of `errors` whose source was not ready (SourceNotReady)."""

    def __init__(
        self,
        message: str,
        results: list[CopyResult],
        errors: dict[str, str],
        not_ready: set[str] | None = None,
    ):
        super().__init__(message)
        self.results = results
        self.errors = errors
        self.not_ready = not_ready or set()


# -- one table -----------------------------------------------------------------------------


class Sessions:
    """Connections one copy thread keeps from one table to the next (`copy_tables`): the
    provider's snapshot connection, the subscriber's autocommit one and the first range's
    writer. Connecting costs a server process each, which shows over many small tables. A
    table whose copy fails closes the ones it used."""

    def __init__(self) -> None:
        self.idle: dict[str, Conn] = {}

    def take(self, role: str, make: Callable[[], Conn]) -> Conn:
        conn = self.idle.pop(role, None)
        return conn if conn is not None and not conn.closed else make()

    def keep(self, role: str, conn: Conn) -> None:
        self.idle[role] = conn

    def close(self) -> None:
        for conn in self.idle.values():
            conn.close()
        self.idle.clear()


class _Range:
    """One reader/writer pair; its byte and row counts, set when it finished, are read by the
    monitor."""

    def __init__(self, src: Conn, dst: Conn, copy_out: sql.Composed, copy_in: sql.Composed):
        self.src, self.dst = src, dst
        self.copy_out, self.copy_in = copy_out, copy_in
        self.commit = True  # False: the caller's transaction, the caller commits
        self.bytes = 0
        self.rows: int | None = None  # set when finished

    @property
    def pid(self) -> int:
        return self.dst.info.backend_pid

    def run(self, before: Callable[[Conn], None] | None) -> None:
        if self.src.pgconn.transaction_status != pq.TransactionStatus.INTRANS:
            raise psycopg.ProgrammingError("the copy's reader must be in its snapshot transaction")
        # an explicit transaction (else the caller's): a failed COPY then leaves the writer
        # 'idle in transaction (aborted)', which the monitor (`_load`) looks for
        with self.dst.transaction() if self.commit else contextlib.nullcontext():
            if before is not None:
                before(self.dst)
            copy_out, copy_in = self.copy_out.as_bytes(self.src), self.copy_in.as_bytes(self.dst)
            rows, self.bytes = libpq.copy_between(self.src, copy_out, self.dst, copy_in)
        self.rows = rows

    def stop_source(self) -> None:
        with contextlib.suppress(psycopg.Error, OSError):
            self.src.cancel_safe(timeout=5)

    def cancel(self) -> None:
        for conn in (self.src, self.dst):
            with contextlib.suppress(psycopg.Error, OSError):
                conn.cancel_safe(timeout=5)


def copy_table(
    src_dsn: str,
    dst_dsn: str,
    table: str | TableName,
    *,
    dest: str | TableName | None = None,
    jobs: int = 1,
    skip_truncate: bool = False,
    defer_indexes: bool = False,
    analyze: bool = True,
    progress: ProgressCallback | None = None,
    min_range_bytes: int = MIN_RANGE_BYTES,
    progress_interval: float = PROGRESS_INTERVAL,
    into: Conn | None = None,
    at_snapshot: Callable[[Conn, TableName], Any] | None = None,
    sessions: Sessions | None = None,
) -> CopyResult:
    """Copies the provider's `table` into the subscriber's `dest` (default: the same name).

    The target is emptied first (TRUNCATE ONLY) unless `skip_truncate`. A table larger than
    `min_range_bytes` per range is read in up to `jobs` ctid ranges in parallel, all under one
    exported snapshot, each range written through its own subscriber connection. With
    `defer_indexes`, the target's indexes and foreign keys (and its primary key and unique
    constraints, unless `skip_truncate` keeps old rows) are dropped first and recreated
    afterwards, also when the copy fails. Returns the rows copied and the snapshot
    they are as of. On failure nothing is left half-copied: a single range rolls back; several
    ranges (separate transactions) leave the target emptied again (unless `skip_truncate`).

    `into`: a subscriber connection whose open transaction receives the copy (one range, not
    committed), so the caller can commit the rows together with the table's new state and
    snapshot (ANALYZE is then the caller's). `dst_dsn` is then used only to watch progress.

    `sessions`: connections to take and, when the copy succeeds, to keep for the next table."""
    if into is not None and defer_indexes:
        raise ValueError("copy_table(into=...) cannot defer indexes in the caller's transaction")
    started = time.monotonic()
    cleanup: list[Conn] = []
    used: dict[str, Conn] = {}  # what goes back to `sessions`

    def session(role: str, make: Callable[[], Conn]) -> Conn:
        conn = sessions.take(role, make) if sessions is not None else make()
        cleanup.append(conn)
        used[role] = conn
        return conn

    try:
        coord = session("provider", lambda: connect(src_dsn, what="provider"))
        admin = session("subscriber", lambda: connect(dst_dsn, what="subscriber", autocommit=True))
        meta = into or admin
        source = pgnames.resolve_one(coord, table, where="the provider")
        target = pgnames.resolve_one(
            meta, dest if dest is not None else source, where="the subscriber"
        )
        # Text travels in the provider's encoding on every connection, so binary and text
        # COPY bytes mean the same on both ends whatever the two database encodings are.
        encoding = coord.info.parameter_status("server_encoding") or "UTF8"
        coord.execute("select set_config('client_encoding', %s, false)", [encoding])
        coord.commit()
        dst_partitioned = pgnames.relkind(meta, target) == "p"
        plan = snapshot_plan(coord, meta, source, target, 1 if into else jobs, min_range_bytes)
        mark = None if at_snapshot is None else at_snapshot(coord, source)

        if into is not None:
            into.execute("select set_config('client_encoding', %s, true)", [encoding])

        def writer(i: int) -> Conn:
            if into is not None:
                return into

            def make() -> Conn:
                return connect(dst_dsn, what="subscriber", client_encoding=encoding)

            if i == 0:  # (the provider's encoding: the same for every table of a round)
                return session(f"writer {encoding}", make)
            conn = make()
            cleanup.append(conn)
            return conn

        ranges: list[_Range] = []
        for i, where in enumerate(plan.wheres):
            reader = coord if i == 0 else import_snapshot(src_dsn, plan, encoding, cleanup)
            ranges.append(_Range(reader, writer(i), plan.copy_out(where), plan.copy_in()))
            ranges[-1].commit = into is None

        deferred = []
        if defer_indexes:
            deferred = defer_secondary(admin, target, keys=not skip_truncate)
        try:
            _load(admin, target, dst_partitioned, ranges, skip_truncate, progress,
                  progress_interval, str(source), plan.total, started)  # fmt: skip
        except BaseException:
            if deferred:
                try:
                    restore_secondary(admin, deferred)
                except LondisteError as e:
                    log.error("%s: after the failed copy: %s", target, e)
            raise
        if deferred:
            restore_secondary(admin, deferred)
        coord.commit()
        if analyze and into is None:  # the caller's rows are not committed yet
            try:
                admin.execute(sql.SQL("ANALYZE {}").format(target.ident))
            except psycopg.Error as e:
                log.warning("%s: ANALYZE after the copy failed: %s", target, first_line(e))
        rows = sum(r.rows or 0 for r in ranges)
        nbytes = sum(r.bytes for r in ranges)
        elapsed = time.monotonic() - started
        if progress is not None:
            progress(Progress(str(source), rows, nbytes, plan.total, elapsed, done=True))
        result = CopyResult(source, target, tuple(plan.names), rows, nbytes, elapsed,
                            len(ranges), "binary" if plan.binary else "text",
                            plan.snapshot, mark)  # fmt: skip
        log.info(
            "copied %s into %s: %d rows, %d bytes, %.2fs, %d range(s), snapshot %s",
            source, target, rows, nbytes, elapsed, len(ranges), plan.snapshot,
        )  # fmt: skip
        if sessions is not None:
            for role, conn in used.items():
                cleanup.remove(conn)
                sessions.keep(role, conn)
        return result
    except psycopg.errors.FeatureNotSupported as e:
        if "foreign key" not in str(e):
            raise TableError(f"copy of {table} failed: {first_line(e)}") from None
        raise TableError(
            f"copy of {table} failed: {first_line(e)}; copy with defer_indexes (drops and "
            "restores the foreign keys around the load) or empty the referencing tables first"
        ) from None
    except psycopg.Error as e:
        raise TableError(
            f"copy of {table} failed: {first_line(e)}; fix the cause and run the copy again"
        ) from None
    finally:
        for conn in reversed(cleanup):
            conn.close()


def _load(
    admin: Conn,
    target: TableName,
    partitioned: bool,
    ranges: list[_Range],
    skip_truncate: bool,
    progress: ProgressCallback | None,
    interval: float,
    label: str,
    total: int | None,
    started: float,
) -> None:
    """Runs the ranges, watching them every `interval` seconds on the subscriber: progress
    from pg_stat_progress_copy (exact row and byte counts of running COPYs, no parsing of
    the stream), and a target that failed (its source is then stopped at once)."""
    # TRUNCATE ONLY keeps inheritance children out of it; a partitioned table has no rows
    # of its own and refuses ONLY.
    truncate = sql.SQL("TRUNCATE {}{}").format(
        sql.SQL("" if partitioned else "ONLY "), target.ident
    )
    before: Callable[[Conn], None] | None = None
    if not skip_truncate:
        if len(ranges) == 1:
            # Same transaction as the COPY: a failure leaves the old rows in place.
            def before(conn: Conn) -> None:
                conn.execute(truncate)
        else:
            admin.execute(truncate)
    pool = ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix=f"copy-{label}")
    futures: list[Future[None]] = [pool.submit(r.run, before) for r in ranges]
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=interval, return_when=FIRST_EXCEPTION)
            if any(f.exception() for f in done):
                break
            if not pending:
                break
            running = [r for r in ranges if r.rows is None]
            pids = [r.pid for r in running]
            row = admin.execute(
                "select coalesce(sum(p.tuples_processed), 0)::int8,"
                " coalesce(sum(p.bytes_processed), 0)::int8,"
                " array(select a.pid::int8 from pg_stat_activity a where a.pid = any(%s)"
                "       and a.state = 'idle in transaction (aborted)')"
                " from pg_stat_progress_copy p where p.pid = any(%s)",
                [pids, pids],
            ).fetchone()
            assert row is not None
            # A target whose COPY failed takes no more rows, but libpq reports that only at
            # the COPY's end: stop reading its source now (the target's error is raised).
            for r in running:
                if r.pid in row[2]:
                    r.stop_source()
            if progress is not None:
                rows = sum(r.rows or 0 for r in ranges) + int(row[0])
                nbytes = sum(r.bytes for r in ranges) + int(row[1])
                progress(Progress(label, rows, nbytes, total, time.monotonic() - started))
    finally:
        # A failed range, or an interrupt here: stop the others instead of waiting for them.
        if any(not f.done() or f.exception() for f in futures):
            for r in ranges:
                r.cancel()
        pool.shutdown(wait=True)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        if len(ranges) > 1 and not skip_truncate:
            admin.execute(truncate)
        # The first error that is not the cancellation we caused.
        real = [e for e in errors if not isinstance(e, psycopg.errors.QueryCanceled)]
        raise (real or errors)[0]  # type: ignore[misc]


# -- several tables ------------------------------------------------------------------------


def copy_tables(
    src_dsn: str,
    dst_dsn: str,
    tables: Sequence[str | TableName | tuple[str | TableName, str | TableName]],
    *,
    parallel_copies: int = 1,
    jobs: int = 1,
    finish: Callable[[CopyResult], None] | None = None,
    **options: Any,
) -> list[CopyResult]:
    """Copies several tables, `parallel_copies` at a time, largest first (the longest copies
    start at once instead of forming a tail after the small ones), each with up to `jobs`
    ranges and its own snapshot (each table joins the event stream on its own). The order
    says nothing about foreign keys (several tables load at once): defer them. A (source,
    dest) pair copies into a differently named table. `finish(result)` runs in the copy's
    thread as soon as a table is copied (e.g. rebuilding its indexes while others copy); a
    LondisteError from it fails that table. Every table is attempted; if some fail,
    CopyFailed names them and carries the results of the others (in the order given)."""
    pairs = [t if isinstance(t, tuple) else (t, None) for t in tables]
    results: dict[int, CopyResult] = {}
    errors: dict[str, str] = {}
    not_ready: set[str] = set()
    lock = threading.Lock()
    mine = threading.local()  # each thread's Sessions
    every: list[Sessions] = []

    def sessions() -> Sessions:
        if not hasattr(mine, "sessions"):
            mine.sessions = Sessions()
            with lock:
                every.append(mine.sessions)
        s: Sessions = mine.sessions
        return s

    def one(i: int, src: str | TableName, dst: str | TableName | None) -> None:
        try:
            res = copy_table(src_dsn, dst_dsn, src, dest=dst, jobs=jobs, sessions=sessions(),
                             **options)  # fmt: skip
            if finish is not None:
                finish(res)
        except LondisteError as e:
            with lock:
                errors[str(src)] = str(e)
                if isinstance(e, SourceNotReady):
                    not_ready.add(str(src))
            return
        with lock:
            results[i] = res

    order = largest_first(src_dsn, [s for s, _ in pairs])
    try:
        with ThreadPoolExecutor(max_workers=max(1, parallel_copies)) as pool:
            for f in [pool.submit(one, i, *pairs[i]) for i in order]:
                f.result()
    finally:
        for s in every:
            s.close()
    ordered = [results[i] for i in sorted(results)]
    if errors:
        first = next(iter(errors.items()))
        raise CopyFailed(
            f"{len(errors)} of {len(pairs)} table copies failed, first {first[0]}: {first[1]}",
            ordered,
            errors,
            not_ready,
        )
    return ordered
