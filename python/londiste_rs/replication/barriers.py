"""What the worker does where its decoder stops in a batch's stream (docs/internals.md §4, §5).

- **EXECUTE_BEGIN** (the first event of a root's execute transaction): decides whether this
  node runs the file; if it does (or did), the rows that transaction's own statements
  changed on the root are left out: running the file here changes them here.
- **EXECUTE**: every step before it is applied already; the file runs here (or is skipped,
  saying why), is recorded in the same transaction, and every table gets a new plan for the
  local tables as they are now; decoding goes on with the rest of the stream.
- **shape**: a row its table's plan does not fit: the layout it was captured with becomes
  the table's plan (replication/shapes.py), or the table stops the batch with the fix.

All of it happens in the batch's one local transaction (exactly once, I1): a crash anywhere
leaves the node as it was before the batch. A statement that fails here stops the node
(paused, the statement and the error in `status`) until it is fixed and resumed, or the file
is skipped here (`execute --skip`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from londiste_rs._native import Barrier, BatchDecoder
from londiste_rs.errors import LondisteError
from londiste_rs.pg.catalog import TableLayout
from londiste_rs.replication.apply import ApplyStats, decoder_spec, make_type_map
from londiste_rs.replication.execute import (
    TRANSIENT,
    Decision,
    ExecFile,
    ExecuteFailed,
    StatementFailed,
    decide,
    own_rows,
    record,
    run,
)
from londiste_rs.replication.shapes import ShapeResolver
from londiste_rs.replication.table_plan import TablePlan, prepare_plan
from londiste_rs.store.execute import EXECUTE, EXECUTE_BEGIN

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


class StreamBarriers:
    """One apply's barriers (apply.Barriers). `provider`: the provider's layout of each
    table; `ini`: the node's config file name, for the fix a failed statement names."""

    barrier_types: Sequence[str] = (EXECUTE_BEGIN, EXECUTE)

    def __init__(self, conn: Conn, queue: str, provider: dict[str, TableLayout], ini: str):
        self.conn = conn
        self.queue = queue
        self.provider = provider
        self.ini = ini
        self.resolver = ShapeResolver(conn, provider)

    def reset(self) -> None:
        self.resolver = ShapeResolver(self.conn, self.provider)

    def on_barrier(
        self,
        conn: Conn,
        dec: BatchDecoder,
        barrier: Barrier,
        by_name: dict[str, TablePlan],
        stats: ApplyStats,
    ) -> None:
        if barrier.kind == "shape":
            assert barrier.table is not None
            plan = self.resolver.resolve(by_name[barrier.table], barrier)
            self._install(conn, dec, by_name, [plan])
            stats.replanned = True
        elif barrier.ev_type == EXECUTE_BEGIN:
            f = self._file(barrier)
            if self._decide(conn, f).covers_own_rows:
                dec.set_skip_events(own_rows(barrier.extra2))
        elif barrier.ev_type == EXECUTE:
            dec.set_skip_events([])
            self._execute(conn, dec, self._file(barrier), by_name, stats)

    def _file(self, b: Barrier) -> ExecFile:
        try:
            return ExecFile.from_event(b.extra1, b.data, b.extra2)
        except LondisteError as e:
            raise ExecuteFailed(
                f"execute {b.extra1}: event {b.ev_id}: {e}", b.extra1 or ""
            ) from None

    def _decide(self, conn: Conn, f: ExecFile) -> Decision:
        try:
            return decide(conn, self.queue, f)
        except LondisteError as e:  # attributes that match this node only in part
            raise self._failed(f, str(e)) from None

    def _failed(self, f: ExecFile, what: str) -> ExecuteFailed:
        what = what if what.startswith(f.name) else f"{f.name}: {what}"
        return ExecuteFailed(
            f"execute {what}; fix it here and run 'londiste-rs {self.ini} resume', or skip "
            f"the file on this node with 'londiste-rs {self.ini} execute --skip {f.name}'",
            f.name,
        )

    def _execute(
        self,
        conn: Conn,
        dec: BatchDecoder,
        f: ExecFile,
        by_name: dict[str, TablePlan],
        stats: ApplyStats,
    ) -> None:
        decision = self._decide(conn, f)
        if decision.action == "run":
            try:
                run(conn, self.queue, f)
            except StatementFailed as e:
                if isinstance(e.error, TRANSIENT):
                    raise e.error from None  # the batch is tried again as it is
                raise self._failed(f, str(e)) from None
            # the local tables may have other columns now: every table's plan again
            self.resolver.local_changed()
            plans = [self.resolver.default_plan(p) for p in by_name.values()]
            self._install(conn, dec, by_name, plans)
            stats.replanned = True
        elif decision.action == "not needed":
            record(conn, self.queue, f, "not needed")
        log.info("execute %s", decision.line)
        stats.executed.append(decision.line)

    def _install(
        self, conn: Conn, dec: BatchDecoder, by_name: dict[str, TablePlan], plans: list[TablePlan]
    ) -> None:
        """The plans take their tables' places: staging tables, decoder specs, type map."""
        with conn.transaction():
            for p in plans:
                prepare_plan(conn, p, by_name[p.name].slot)
        for p in plans:
            by_name[p.name] = p
            dec.replace_table(*decoder_spec(p), blocked=p.blocked)
        dec.set_type_map(make_type_map(conn, list(by_name.values())))
