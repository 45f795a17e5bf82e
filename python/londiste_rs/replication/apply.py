"""Applying a batch's changes on the subscriber: staging tables, set-based merge SQL, and the
exact-order fallback.

The worker hands us the batch's events as raw binary-COPY blocks; the Rust `BatchDecoder`
turns them into Steps (delete / update / insert / upsert / truncate, each a binary COPY payload
for one table). An insert step (keys the stream shows absent here) is COPYed straight into the
target table. The others are COPYed into a temp staging table with the target's own column
types, then merged with one statement: `DELETE ... USING`, `UPDATE ... FROM` (keys the stream
shows present here) or, in exact order, `INSERT ... ON CONFLICT (pk) DO UPDATE`. No Python runs
per row.

User triggers on the subscriber's tables fire as the merge statements run (we cannot set
`session_replication_role`, which needs superuser): row triggers see the batch's net change
per key (one INSERT or UPDATE of the final row, or one DELETE), not every intermediate event.
In exact order an ON CONFLICT upsert fires BEFORE INSERT triggers for every row and UPDATE
triggers for rows that existed. When a trigger raises, the batch is not applied and the worker
retries it.

A replayed TRUNCATE is `TRUNCATE ONLY` (as londiste3's): inheritance children are left alone,
and nothing cascades. Truncates that reach us back to back (the tables of one provider
`TRUNCATE a, b`) are one statement, so foreign keys between them hold. A table of the subscriber
that references a truncated one and is not truncated with it (a subscriber-only table) stops the
batch with an error naming it, instead of being emptied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from londiste_rs._native import Barrier, BatchDecoder, Step, StepKind
from londiste_rs.errors import TableError
from londiste_rs.pg import libpq
from londiste_rs.pg.catalog import FIRST_USER_OID, parents_first, type_map
from londiste_rs.pg.names import name_of, quoted_name
from londiste_rs.replication.table_plan import TablePlan
from londiste_rs.replication.writer import StepWriter

log = logging.getLogger(__name__)

# Set-based merging of a batch can fail where replaying the events in order would not: a
# unique value moving between rows, a row referencing a row of its own table. Those batches
# are re-applied in exact event order.
FALLBACK_ERRORS: tuple[type[psycopg.Error], ...] = (
    pgerrors.UniqueViolation,
    pgerrors.ForeignKeyViolation,
    pgerrors.ExclusionViolation,
    pgerrors.CardinalityViolation,
)

FEED_BYTES = 1 << 20


@dataclass
class ApplyStats:
    deletes: int = 0
    upserts: int = 0
    truncates: int = 0
    steps: int = 0
    exact_order: bool = False
    decoder: dict[str, int] = field(default_factory=dict)
    # barriers met: execute files run here, tables that got another plan mid-stream
    executed: list[str] = field(default_factory=list)
    replanned: bool = False
    other_events: list[tuple[int, str, str | None, bytes | None]] = field(default_factory=list)
    seconds: float = 0.0
    wait_seconds: float = 0.0  # waiting for the provider's events
    write_seconds: float = 0.0  # writing to the subscriber (COPY and merge statements)


# -- applying --------------------------------------------------------------------------------
TypeMap = dict[int, tuple[int, str, int | None]]


def make_type_map(conn: psycopg.Connection[Any], plans: list[TablePlan]) -> TypeMap:
    """The decoder's type map for these plans: the source's user-defined types, found on the
    subscriber (`conn`) by schema and name (`layout.type_map`)."""
    return type_map(conn, [p.source for p in plans])


def make_decoder(
    plans: list[TablePlan],
    chunk_bytes: int,
    exact_order: bool,
    types: TypeMap | None = None,
    barrier_types: Sequence[str] = (),
    shape_barriers: bool = False,
) -> BatchDecoder:
    dec = BatchDecoder(chunk_bytes=chunk_bytes, exact_order=exact_order,
                       barrier_types=barrier_types, shape_barriers=shape_barriers)  # fmt: skip
    for p in plans:
        dec.add_table(*decoder_spec(p), blocked=p.blocked and shape_barriers)
    dec.early_inserts([p.name for p in plans if p.early_inserts])
    if types:
        dec.set_type_map(types)
    return dec


def decoder_spec(
    p: TablePlan,
) -> tuple[str, int, list[int], list[int], list[int], Any, str | None, list[int]]:
    """The plan's add_table / replace_table arguments but `blocked`."""
    # built-in type OIDs are the same everywhere; user types' differ between nodes (0: skip)
    col_types = [c.type_oid if c.type_oid < FIRST_USER_OID else 0 for c in p.source.columns]
    return (p.name, p.ncols, p.key_cols, p.out_cols, p.walk_cols, p.skip_snapshot, p.shape,
            col_types)  # fmt: skip


class Barriers(Protocol):
    """What the apply does where the decoder stops (replication/barriers.py): it gets the
    barrier once every step before it is applied, and may run statements, replace plans in
    `by_name` and in the decoder (replace_table), then the decoder resumes."""

    barrier_types: Sequence[str]

    def reset(self) -> None:
        """A new pass over the stream begins (the exact-order retry)."""

    def on_barrier(
        self,
        conn: psycopg.Connection[Any],
        dec: BatchDecoder,
        barrier: Barrier,
        by_name: dict[str, TablePlan],
        stats: ApplyStats,
    ) -> None: ...


@dataclass
class _Staged:
    """Rows of a merge step staged but not merged yet: the steps of one pass cut for their
    size (`Step.more`) are staged one after the other and merged by one statement, so small
    steps (memory) cost no more statements (each may scan the table)."""

    open: bool = False
    rows: int = 0


def _apply_step(
    conn: psycopg.Connection[Any],
    by_name: dict[str, TablePlan],
    step: Step,
    stats: ApplyStats,
    staged: _Staged,
) -> None:
    kind, payload, encoding = step.kind, step.payload, step.encoding
    p = by_name[step.table]
    if kind == StepKind.TRUNCATE:  # (_apply_stream truncates; kept for a caller passing them here)
        _truncate(conn, [p], stats)
        return
    if encoding:
        # text in this payload is in the writer's client encoding; COPY converts from it
        conn.execute("select set_config('client_encoding', %s, true)", [encoding])
    if kind == StepKind.INSERT:
        # keys the stream shows absent here: straight into the table (a key that is there after
        # all raises UniqueViolation, and the batch is re-applied in exact order)
        assert p.insert_copy is not None
        with conn.cursor().copy(p.insert_copy) as cp:
            cp.write(payload)
    else:
        stage = p.delete_stage if kind == StepKind.DELETE else p.upsert_stage
        if not staged.open:  # else this goes on with the rows staged before
            conn.execute(sql.SQL("truncate {}").format(stage))
        with conn.cursor().copy(sql.SQL("copy {} from stdin (format binary)").format(stage)) as cp:
            cp.write(payload)
    if encoding:
        conn.execute("select set_config('client_encoding', 'UTF8', true)")
    rows = step.rows + staged.rows
    if kind != StepKind.INSERT and step.more:
        staged.open, staged.rows = True, rows
        return
    staged.open, staged.rows = False, 0
    if kind == StepKind.DELETE:
        assert p.delete_sql is not None
        conn.execute(p.delete_sql)
        stats.deletes += rows
        return
    if kind == StepKind.UPDATE and p.update_sql is not None:
        updated = conn.execute(p.update_sql).rowcount
        if updated < rows:
            # missing here (the subscriber was not in sync), or skipped by a trigger
            assert p.missing_sql is not None
            added = conn.execute(p.missing_sql).rowcount
            if added > 0:
                log.warning("%s: %d updated rows were missing here; inserted them", p.dest, added)
    elif kind != StepKind.INSERT:
        assert p.upsert_sql is not None
        conn.execute(p.upsert_sql)
    stats.upserts += rows


# Foreign keys from tables outside `names` (and their partitions) to tables inside.
_REFERENCING = """
with target as (
    select u.name::regclass::oid as oid from unnest(%(names)s::text[]) u(name)
), tree as (
    select oid from target
    union select p.relid from target, pg_partition_tree(target.oid) p
)
select k.conrelid::regclass::text, quote_ident(k.conname), k.confrelid::regclass::text
  from pg_constraint k
 where k.contype = 'f' and k.conparentid = 0
   and k.confrelid in (select oid from tree) and k.conrelid not in (select oid from tree)
 order by 1, 2
"""


def _truncate(conn: psycopg.Connection[Any], plans: list[TablePlan], stats: ApplyStats) -> None:
    """One `TRUNCATE ONLY a, ONLY b` of these tables (a partitioned one with its partitions).
    A table outside them that references one of them is not emptied: TableError naming it."""
    names = [quoted_name(name_of(p.dest)) for p in plans]
    refs = conn.execute(_REFERENCING, {"names": names}).fetchall()
    if refs:
        table, constraint, target = refs[0]
        raise TableError(
            f"cannot replay the provider's TRUNCATE of {target}: {table} references it "
            f"(foreign key {constraint}) and is not truncated with it, and TRUNCATE CASCADE "
            f"would empty it here; drop that key on the subscriber (ALTER TABLE {table} DROP "
            f"CONSTRAINT {constraint}) or replicate {table} too, and the worker goes on"
        )
    kinds = conn.execute(
        "select relkind::text from unnest(%s::text[]) with ordinality u(name, i)"
        " join pg_class c on c.oid = u.name::regclass order by u.i",
        [names],
    ).fetchall()
    conn.execute(
        sql.SQL("truncate {}").format(
            sql.SQL(", ").join(
                # ONLY a partitioned table is refused: its partitions are its rows
                p.target if kind[0] == "p" else sql.SQL("only {}").format(p.target)
                for p, kind in zip(plans, kinds, strict=True)
            )
        )
    )
    stats.truncates += len(plans)


def read_copy(conn: psycopg.Connection[Any], query: sql.Composed) -> Iterator[bytes]:
    """The data of `COPY (...) TO STDOUT (FORMAT binary)` in chunks of about FEED_BYTES, read
    ahead in Rust (no Python per row) while the previous chunks are applied."""
    return libpq.read_copy(conn, query.as_bytes(conn), FEED_BYTES)


def _apply_stream(
    conn: psycopg.Connection[Any],
    plans: list[TablePlan],
    blocks: Iterator[bytes | bytearray | memoryview],
    chunk_bytes: int,
    exact_order: bool,
    stats: ApplyStats,
    types: TypeMap | None,
    barriers: Barriers | None = None,
) -> None:
    by_name = {p.name: p for p in plans}
    if barriers is None:
        dec = make_decoder(plans, chunk_bytes, exact_order, types)
    else:
        barriers.reset()
        dec = make_decoder(plans, chunk_bytes, exact_order, types, barriers.barrier_types, True)
    truncates: list[TablePlan] = []  # back-to-back truncate steps, not run yet
    staged = _Staged()
    # the writes run on a thread of their own while the next steps are made and the next
    # input decoded, but an exact-order step's (replication/writer.py)
    writer = StepWriter(threaded=not exact_order)

    def write(step: Step) -> None:
        t = time.monotonic()
        _apply_step(conn, by_name, step, stats, staged)
        stats.write_seconds += time.monotonic() - t

    def truncate(plans: list[TablePlan]) -> None:
        t = time.monotonic()
        _truncate(conn, plans, stats)
        stats.write_seconds += time.monotonic() - t

    def apply_drained(last: bool = False) -> None:
        # one step at a time: memory holds the coalesced rows and the steps being written,
        # not every step
        while (step := dec.next_step()) is not None:
            stats.steps += 1  # (counted here: the writer's thread counts rows)
            if step.kind == StepKind.TRUNCATE:
                plan = by_name[step.table]
                if all(p is not plan for p in truncates):
                    truncates.append(plan)
                continue
            if truncates:
                writer.submit(partial(truncate, truncates.copy()))
                truncates.clear()
            writer.submit(partial(write, step))
        if last and truncates:
            writer.submit(partial(truncate, truncates.copy()))
            truncates.clear()

    try:
        t = time.monotonic()
        # `read_copy`'s chunks are FEED_BYTES or more (but the last): the decoder's fixed
        # cost per call stays small and it decodes them without the GIL
        for block in blocks:
            stats.wait_seconds += time.monotonic() - t
            dec.feed(block)
            while barriers is not None and (barrier := dec.barrier()) is not None:
                apply_drained(last=True)  # everything before the barrier, truncates too
                writer.wait()
                barriers.on_barrier(conn, dec, barrier, by_name, stats)
                dec.resume()
            if dec.pending_bytes() >= chunk_bytes:
                apply_drained()
            t = time.monotonic()
        dec.finish()
        apply_drained(last=True)
        writer.wait()
    finally:
        writer.close()  # after a failure: nothing runs on `conn` past this
        # a failed apply ends the provider's COPY now, before the fallback reads it again
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
    assert not staged.open, "a step cut for its size came last"
    stats.decoder = dec.stats()
    stats.other_events = dec.other_events()


def apply_events(
    conn: psycopg.Connection[Any],
    plans: list[TablePlan],
    fetch: Callable[[], Iterator[bytes | bytearray | memoryview]],
    chunk_bytes: int,
    types: TypeMap | None = None,
    barriers: Barriers | None = None,
) -> ApplyStats:
    """Applies the events `fetch()` streams, inside the caller's transaction on `conn`:
    set-based first; on a constraint violation, rolled back to a savepoint and re-applied in
    exact event order (`fetch` is called again). `types`: the type map (`make_type_map`).
    `barriers`: what to do where the decoder stops (EXECUTE events, rows of another shape);
    without it such rows are refused."""
    started = time.monotonic()
    stats = ApplyStats()
    try:
        with conn.transaction():
            _apply_stream(conn, plans, fetch(), chunk_bytes, False, stats, types, barriers)
    except FALLBACK_ERRORS as e:
        log.warning(
            "set-based apply failed (%s); re-applying the batch in exact event order",
            str(e).splitlines()[0],
        )
        stats = ApplyStats(exact_order=True)
        with conn.transaction():
            _apply_stream(conn, plans, fetch(), chunk_bytes, True, stats, types, barriers)
    stats.seconds = time.monotonic() - started
    return stats


def order_parents_first(conn: psycopg.Connection[Any], plans: list[TablePlan]) -> list[TablePlan]:
    """Plans sorted so that a table referenced by a foreign key comes before the tables
    referencing it (the decoder upserts in this order and deletes in reverse)."""
    by_dest = {p.dest: p for p in plans}
    return [by_dest[d] for d in parents_first(conn, list(by_dest))]
