"""A takeover's SQL (internals §10): the write fence on a queue's capture, the old root's final
tick, promoting a subscriber to the root and demoting the old root to a branch, the record of
the steps reached (`takeover_state`, one row per queue on each node taking part), and what a
resurrected old root never sent.

Each call is one statement (or one SQL function) on the caller's connection and transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from londiste_rs.store.queue import _one

Conn = psycopg.Connection[Any]

# The steps a takeover records, in order, on the new root's row (the old root's row goes
# through fenced, final-tick, demoted, done). A failover records tagged-dead and caught-up
# instead of fenced..applied; a resurrect records fenced, demoted, done.
STEPS = ("prepared", "fenced", "final-tick", "applied", "promoted", "demoted", "done")


@dataclass(frozen=True)
class TakeoverState:
    """This node's part in the last (or the running) takeover of its queue."""

    node_role: str  # 'new' (becoming / became the root) or 'old'
    mode: str  # 'switchover', 'failover' or 'resurrect'
    old_node: str
    new_node: str
    step: str
    last_tick: int | None
    started_at: datetime
    step_at: datetime
    timeline: list[tuple[str, float]]

    @property
    def finished(self) -> bool:
        return self.step == "done"


@dataclass(frozen=True)
class Fence:
    fenced: bool
    note: str | None


@dataclass(frozen=True)
class LostEvent:
    """An event of a resurrected old root's queue that the new root never got."""

    ev_id: int
    ev_time: datetime
    ev_txid: int
    ev_type: str
    table: str | None
    data: bytes | None
    old_key: bytes | None


def get_state(conn: Conn, queue: str) -> TakeoverState | None:
    row = conn.execute(
        "select node_role, mode, old_node, new_node, step, last_tick, started_at, step_at,"
        " timeline from londiste_rs.takeover_state where queue_name = %s",
        [queue],
    ).fetchone()
    if row is None:
        return None
    timeline = [(str(e), float(t)) for e, t in (row[8] or [])]
    role, mode, old, new, step, last_tick, started, step_at = row[:8]
    return TakeoverState(role, mode, old, new, step, last_tick, started, step_at, timeline)


def begin(
    conn: Conn, queue: str, role: str, mode: str, old: str, new: str, step: str, at: float
) -> None:
    """Starts this node's record of a takeover (a finished one before it is replaced)."""
    conn.execute(
        "insert into londiste_rs.takeover_state"
        " (queue_name, node_role, mode, old_node, new_node, step, timeline)"
        " values (%s, %s, %s, %s, %s, %s, %s::jsonb)"
        " on conflict (queue_name) do update set node_role = excluded.node_role,"
        " mode = excluded.mode, old_node = excluded.old_node, new_node = excluded.new_node,"
        " step = excluded.step, last_tick = null, started_at = now(), step_at = now(),"
        " timeline = excluded.timeline",
        [queue, role, mode, old, new, step, json.dumps([["started", at]])],
    )


def record(
    conn: Conn,
    queue: str,
    step: str | None,
    event: str | None = None,
    at: float | None = None,
    last_tick: int | None = None,
) -> None:
    """Records the step reached (None: unchanged), an event of the timeline at `at` (unix time
    on the host running the command) and the final tick, when given."""
    conn.execute(
        "update londiste_rs.takeover_state set step = coalesce(%s, step),"
        " step_at = case when %s::text is null then step_at else now() end,"
        " last_tick = coalesce(%s, last_tick),"
        " timeline = case when %s::text is null then timeline"
        "   else timeline || jsonb_build_array(jsonb_build_array(%s::text, %s::float8)) end"
        " where queue_name = %s",
        [step, step, last_tick, event, event, at, queue],
    )


def forget(conn: Conn, queue: str) -> None:
    conn.execute("delete from londiste_rs.takeover_state where queue_name = %s", [queue])


# -- the fence -----------------------------------------------------------------------------


def announce_fence(conn: Conn, queue: str, note: str) -> None:
    """Stores the note a coming fence's refusals carry, to be committed before the fence: the
    fence takes effect at once, before its own transaction commits, and a write refused in
    between reads the note last committed (an open queue never reads it)."""
    conn.execute(
        "update londiste_rs.queue set queue_fence_note = %s where queue_name = %s", [note, queue]
    )


def fence(conn: Conn, queue: str, note: str) -> None:
    """From now on (not transactional) the queue's capture refuses the application's writes
    with `note`; the queue is ticked externally only."""
    _one(conn, "select londiste_rs._fence_queue(%s, %s)", [queue, note])


def unfence(conn: Conn, queue: str) -> None:
    """The queue's capture takes the application's writes again, from now on (call it last)."""
    _one(conn, "select londiste_rs._unfence_queue(%s)", [queue])


def queue_fence(conn: Conn, queue: str) -> Fence | None:
    """The queue's fence, or None when this database has no such queue."""
    if not has_queue(conn, queue):
        return None
    row = conn.execute("select * from londiste_rs.queue_fence(%s)", [queue]).fetchone()
    return None if row is None else Fence(bool(row[0]), row[1])


def has_queue(conn: Conn, queue: str) -> bool:
    row = conn.execute(
        "select exists (select 1 from londiste_rs.queue where queue_name = %s)", [queue]
    ).fetchone()
    return bool(row and row[0])


def set_ticked_externally(conn: Conn, queue: str, external: bool) -> None:
    _one(
        conn,
        "select londiste_rs.set_queue_config(%s, 'external_ticker', %s)",
        [queue, "true" if external else "false"],
    )


def captured_tables(conn: Conn, queue: str) -> list[str]:
    """The tables (as SQL reads their names) with a capture trigger of the queue here."""
    rows = conn.execute(
        "select distinct t.tgrelid::regclass::text from pg_catalog.pg_trigger t"
        " join pg_catalog.pg_proc p on p.oid = t.tgfoid"
        " join londiste_rs.queue q on p.proname like '\\_capture\\_' || q.queue_id || '\\_%%'"
        " where p.pronamespace = 'londiste_rs'::regnamespace and q.queue_name = %s order by 1",
        [queue],
    ).fetchall()
    return [str(r[0]) for r in rows]


def capture_as(conn: Conn, queue: str, table: str, name: str) -> None:
    """Generates the capture function of `table` (already attached) again so that its events
    carry the global name `name` (a subscriber's table replicated under another local name)."""
    _one(
        conn,
        "select londiste_rs._capture_function(%s, %s::text::regclass, %s)",
        [queue, table, name],
    )


# -- the switch ------------------------------------------------------------------------------


def final_tick(conn: Conn, queue: str, note: str) -> int:
    """On the fenced old root: its tables refuse the application's statements with `note`
    (a statement trigger), the writers still in flight are waited for, the final tick made
    and recorded (the recorded one when run again). Lock waits follow the session's
    lock_timeout."""
    return int(_one(conn, "select londiste_rs.takeover_final_tick(%s, %s)", [queue, note]))


def fence_tables(conn: Conn, queue: str, note: str) -> int:
    """The statement trigger refusing the application's writes with `note` on every captured
    table of the queue (waits for their writers, under the session's lock_timeout)."""
    return int(_one(conn, "select londiste_rs._fence_tables(%s, %s)", [queue, note]))


def unfence_tables(conn: Conn, queue: str) -> int:
    """Removes those statement triggers."""
    return int(_one(conn, "select londiste_rs._unfence_tables(%s)", [queue]))


def promote(conn: Conn, queue: str, last_tick: int, tick_time: datetime, event_seq: int) -> None:
    """Makes this subscriber the root, as of tick `last_tick` (its capture stays fenced until
    `unfence`, which the caller runs last in the same transaction)."""
    _one(
        conn,
        "select londiste_rs.takeover_promote(%s, %s, %s, %s)",
        [queue, last_tick, tick_time, event_seq],
    )


def demote(
    conn: Conn, queue: str, new_root: str, last_tick: int, tick_time: datetime, note: str
) -> None:
    """Makes the fenced old root a branch of `new_root` from tick `last_tick`."""
    _one(
        conn,
        "select londiste_rs.takeover_demote(%s, %s, %s, %s, %s)",
        [queue, new_root, last_tick, tick_time, note],
    )


def lock_position(conn: Conn, queue: str) -> int | None:
    """This node's applied tick, its row locked until the transaction ends (an apply running
    now commits first; none commits until then)."""
    row = conn.execute(
        "select last_tick_id from londiste_rs.local_state where queue_name = %s for update",
        [queue],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


# -- resurrect -------------------------------------------------------------------------------


def await_writers(conn: Conn, queue: str) -> int:
    """Waits (in the caller's transaction, under its lock_timeout) until no transaction can
    still add a captured event to the fenced queue; returns the tables locked."""
    query = "select londiste_rs._await_writers((londiste_rs._queue(%s)).queue_id)"
    return int(_one(conn, query, [queue]))


def lost_events(conn: Conn, queue: str, tick_id: int) -> list[LostEvent]:
    rows = conn.execute(
        "select ev_id, ev_time, ev_txid::text::int8, ev_type, ev_extra1, ev_data, ev_extra2"
        " from londiste_rs.lost_events(%s, %s)",
        [queue, tick_id],
    ).fetchall()
    return [LostEvent(*r) for r in rows]


def forget_after_tick(conn: Conn, queue: str, tick_id: int) -> int:
    return int(_one(conn, "select londiste_rs.forget_after_tick(%s, %s)", [queue, tick_id]))


def gravestone(node: str) -> str:
    """The consumer a failover leaves on the new root at the last tick it got from the dead
    node `node` (londiste3's name), for `resurrect`."""
    return f"{node}.gravestone"


def consumer_tick(conn: Conn, queue: str, consumer: str) -> int | None:
    """The position of one consumer of the queue here, None when it is not registered."""
    row = conn.execute(
        "select last_tick from londiste_rs.get_consumer_info(%s, %s)", [queue, consumer]
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def supported(conn: Conn) -> bool:
    """Whether the schema here knows takeovers (installed by this version or later)."""
    row = conn.execute("select to_regclass('londiste_rs.takeover_state') is not null").fetchone()
    return bool(row and row[0])


def try_lock(conn: Conn, queue: str) -> bool:
    """One takeover of a queue at a time on a node: a session lock, released when the
    session ends (also when the command is killed)."""
    row = conn.execute(
        "select pg_try_advisory_lock(hashtext('londiste_rs.takeover'), hashtext(%s))", [queue]
    ).fetchone()
    return bool(row and row[0])


def subscriber_consumer(conn: Conn, queue: str, node: str) -> str | None:
    """The consumer through which subscriber `node` follows this provider."""
    row = conn.execute(
        "select consumer_name from londiste_rs.subscriber_info"
        " where queue_name = %s and subscriber_node = %s",
        [queue, node],
    ).fetchone()
    return None if row is None else str(row[0])
