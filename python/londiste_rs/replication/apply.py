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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from londiste_rs._native import Barrier, BatchDecoder, Step, StepKind
from londiste_rs.errors import LondisteError, TableError
from londiste_rs.pg import libpq
from londiste_rs.pg.catalog import FIRST_USER_OID, TableLayout, parents_first, type_map
from londiste_rs.pg.names import name_of, quoted_name

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
class TablePlan:
    """How one replicated table is applied: the source row layout (from the provider's
    catalog, `layout.table_layout`) mapped onto the local target table."""

    name: str  # global name, as in ev_extra1
    source: TableLayout  # the provider's layout (its types feed the type map)
    dest: str  # the local table's name
    target: sql.Composable  # the local table, quoted
    ncols: int  # fields in a full-row payload
    key_cols: list[int]  # source indices of the key, in key order
    out_cols: list[int]  # source indices written to the upsert staging table
    key_names: list[str]
    out_names: list[str]
    identity_always: bool
    # non-key GENERATED ALWAYS identity columns: an UPDATE cannot set them (see _upsert_sql)
    fixed_names: list[str] = field(default_factory=list)
    walk_cols: list[int] = field(default_factory=list)
    skip_snapshot: tuple[int, int, list[int]] | None = None
    # the source's shape as capture writes it (ev_extra3): events of another shape are refused
    shape: str | None = None
    # with barriers (replication/barriers.py): the provider's layout cannot be applied here
    # (`problem` says why); every row of the table stops the decoder until another plan fits
    blocked: bool = False
    problem: LondisteError | None = None
    # which layout the source is: "provider" (its catalog now) or one found for a shape
    candidate: str = "provider"
    slot: int = -1  # numbers its staging tables
    upsert_stage: sql.Identifier = field(default_factory=lambda: sql.Identifier(""))
    delete_stage: sql.Identifier = field(default_factory=lambda: sql.Identifier(""))
    upsert_sql: sql.Composed | None = None
    delete_sql: sql.Composed | None = None
    # None: the table's update steps use upsert_sql (see prepare_staging)
    update_sql: sql.Composed | None = None
    missing_sql: sql.Composed | None = None
    insert_copy: sql.Composed | None = None


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


# -- catalog ---------------------------------------------------------------------------------
def plan_table(name: str, target: str, source: TableLayout, local: TableLayout) -> TablePlan:
    """Maps the source layout onto the local table by column name; refuses mismatched types."""
    mine = {c.name: c for c in local.columns}
    key_cols = list(source.key_cols)
    out_cols: list[int] = []
    for i, col in enumerate(source.columns):
        here = mine.get(col.name)
        if here is None:
            if i in key_cols:
                raise TableError(f"table {target} has no key column {col.name}; add it")
            log.warning("%s: column %s is not on the subscriber; ignored", target, col.name)
            continue
        if here.type_name != col.type_name:
            raise TableError(
                f"table {target}: column {col.name} is {here.type_name} here but "
                f"{col.type_name} on the provider; make the types equal"
            )
        if not here.generated:  # generated columns are computed here
            out_cols.append(i)
    names = [c.name for c in source.columns]
    out_set = {names[i] for i in out_cols}
    key_set = {names[i] for i in key_cols}
    return TablePlan(
        name=name,
        source=source,
        dest=target,
        target=name_of(target).ident,
        ncols=source.ncols,
        key_cols=key_cols,
        out_cols=out_cols,
        key_names=[names[i] for i in key_cols],
        out_names=[names[i] for i in out_cols],
        identity_always=any(c.identity_always for c in local.columns),
        fixed_names=[
            c.name
            for c in local.columns
            if c.identity_always and c.name in out_set and c.name not in key_set
        ],
        # values that embed user-defined type OIDs get the subscriber's (the type map)
        walk_cols=[i for i in source.walk_cols if i in out_cols],
    )


# -- staging and merge SQL -------------------------------------------------------------------
def prepare_staging(conn: psycopg.Connection[Any], plans: list[TablePlan]) -> None:
    """Creates this session's staging tables (committed, emptied at every commit) and the
    merge statements."""
    with conn.transaction():
        for n, p in enumerate(plans):
            prepare_plan(conn, p, n)


def prepare_plan(conn: psycopg.Connection[Any], p: TablePlan, slot: int) -> None:
    """One plan's staging tables (number `slot`, replacing any of that number: a plan that
    takes another's place mid-stream reuses its slot) and merge statements."""
    p.slot = slot
    p.upsert_stage = sql.Identifier(f"_lrs_upsert_{slot}")
    p.delete_stage = sql.Identifier(f"_lrs_delete_{slot}")
    for stage, cols in ((p.upsert_stage, p.out_names), (p.delete_stage, p.key_names)):
        conn.execute(sql.SQL("drop table if exists pg_temp.{}").format(stage))
        conn.execute(
            sql.SQL(
                "create temp table {} on commit delete rows as select {} from {} with no data"
            ).format(stage, _idents(cols), p.target)
        )
    p.upsert_sql = _upsert_sql(p)
    p.update_sql, p.missing_sql = _update_sql(p)
    p.insert_copy = sql.SQL("copy {} ({}) from stdin (format binary)").format(
        p.target, _idents(p.out_names)
    )
    p.delete_sql = sql.SQL("delete from {t} using {s} where {cond}").format(
        t=p.target, s=p.delete_stage, cond=_key_match(p, p.delete_stage)
    )


def _idents(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _upsert_sql(p: TablePlan) -> sql.Composed:
    """`INSERT ... ON CONFLICT (key) DO UPDATE`. PostgreSQL refuses to UPDATE a non-key
    GENERATED ALWAYS identity column to a value, so rows whose such value changed on the
    provider (`SET col = DEFAULT` there) are deleted first and re-inserted with OVERRIDING
    SYSTEM VALUE; for all other rows it is a plain update."""
    rest = [c for c in p.out_names if c not in p.key_names and c not in p.fixed_names]
    action = (
        sql.SQL("do update set ")
        + sql.SQL(", ").join(
            sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in rest
        )
        if rest
        else sql.SQL("do nothing")
    )
    upsert = _insert_from_stage(p, action)
    if not p.fixed_names:
        return upsert
    changed = sql.SQL("delete from {t} using {s} where {keys} and ({a}) is distinct from ({b})")
    reinsert = changed.format(
        t=p.target,
        s=p.upsert_stage,
        keys=_key_match(p, p.upsert_stage),
        a=sql.SQL(", ").join(
            sql.SQL("{}.{}").format(p.target, sql.Identifier(c)) for c in p.fixed_names
        ),
        b=sql.SQL(", ").join(
            sql.SQL("{}.{}").format(p.upsert_stage, sql.Identifier(c)) for c in p.fixed_names
        ),
    )
    return reinsert + sql.SQL("; ") + upsert


def _insert_from_stage(p: TablePlan, on_conflict: sql.Composable) -> sql.Composed:
    """INSERT of the upsert staging table's rows, with the given ON CONFLICT (key) action."""
    return sql.SQL(
        "insert into {t} ({cols}) {override} select {cols} from {s} on conflict ({keys}) {act}"
    ).format(
        t=p.target,
        cols=_idents(p.out_names),
        override=sql.SQL("overriding system value" if p.identity_always else ""),
        s=p.upsert_stage,
        keys=_idents(p.key_names),
        act=on_conflict,
    )


def _update_sql(p: TablePlan) -> tuple[sql.Composed | None, sql.Composed | None]:
    """`UPDATE ... FROM` the staging table, for rows known to exist, and the insert of any that
    turn out to be missing (a subscriber that was not in sync). None when the upsert is needed
    anyway: no non-key columns, or non-key GENERATED ALWAYS identity columns (`_upsert_sql`)."""
    rest = [c for c in p.out_names if c not in p.key_names]
    if not rest or p.fixed_names:
        return None, None
    update = sql.SQL("update {t} set {sets} from {s} where {keys}").format(
        t=p.target,
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = {s}.{c}").format(c=sql.Identifier(c), s=p.upsert_stage) for c in rest
        ),
        s=p.upsert_stage,
        keys=_key_match(p, p.upsert_stage),
    )
    missing = _insert_from_stage(p, sql.SQL("do nothing"))
    return update, missing


def _key_match(p: TablePlan, stage: sql.Identifier) -> sql.Composed:
    return sql.SQL(" and ").join(
        sql.SQL("{t}.{c} = {s}.{c}").format(t=p.target, s=stage, c=sql.Identifier(c))
        for c in p.key_names
    )


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


def _apply_step(
    conn: psycopg.Connection[Any],
    by_name: dict[str, TablePlan],
    step: Step,
    stats: ApplyStats,
) -> None:
    kind, payload, rows, encoding = step.kind, step.payload, step.rows, step.encoding
    p = by_name[step.table]
    stats.steps += 1
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
        conn.execute(sql.SQL("truncate {}").format(stage))
        with conn.cursor().copy(sql.SQL("copy {} from stdin (format binary)").format(stage)) as cp:
            cp.write(payload)
    if encoding:
        conn.execute("select set_config('client_encoding', 'UTF8', true)")
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

    def apply_drained(last: bool = False) -> None:
        t = time.monotonic()
        for step in dec.drain():
            if step.kind == StepKind.TRUNCATE:
                plan = by_name[step.table]
                if all(p is not plan for p in truncates):
                    truncates.append(plan)
                stats.steps += 1
                continue
            if truncates:
                _truncate(conn, truncates, stats)
                truncates.clear()
            _apply_step(conn, by_name, step, stats)
        if last and truncates:
            _truncate(conn, truncates, stats)
            truncates.clear()
        stats.write_seconds += time.monotonic() - t

    try:
        t = time.monotonic()
        # `read_copy`'s chunks are FEED_BYTES or more (but the last): the decoder's fixed
        # cost per call stays small and it decodes them without the GIL
        for block in blocks:
            stats.wait_seconds += time.monotonic() - t
            dec.feed(block)
            while barriers is not None and (barrier := dec.barrier()) is not None:
                apply_drained(last=True)  # everything before the barrier, truncates too
                barriers.on_barrier(conn, dec, barrier, by_name, stats)
                dec.resume()
            if dec.pending_bytes() >= chunk_bytes:
                apply_drained()
            t = time.monotonic()
    finally:
        # a failed apply ends the provider's COPY now, before the fallback reads it again
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
    dec.finish()
    apply_drained(last=True)
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
