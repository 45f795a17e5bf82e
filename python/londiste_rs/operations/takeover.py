"""takeover: a subscriber becomes the root of its queue and the old root follows it (londiste3's
`takeover`, OPERATIONS-REFERENCE §1.3), with a pre-flight, a write fence that needs no
superuser, exact sequences, a measured downtime and a way back. Run with the NEW node's config:

    londiste-rs NEW.ini takeover OLD [--all] [--dead-root] [--dry-run] [--abort]

Switchover (OLD alive), each step recorded in `takeover_state` on both nodes (internals §10):

1. pre-flight, nothing changed: NEW follows OLD, every table of NEW is `ok` and OLD carries
   none NEW lacks, sequences registered on both, NEW's worker runs and applies a fresh tick of
   OLD within `takeover_max_lag`. Refused with one line per problem.
2. prepared: NEW is armed: its queue (a leaf gets one), capture attached to its tables, but
   fenced (its writes are refused, saying the root is OLD); the schema on both is up to date.
3. fenced: OLD's capture refuses the application's writes from this instant, saying where
   writes go now (no superuser: the capture trigger's error path, internals §10).
4. final-tick: on OLD, a statement trigger refusing the application's writes goes on its
   tables (so no key check can fail before the refusal; creating it waits for the
   transactions still writing), the event tables are locked as londiste3's demote_root step 2
   does, then one last tick.
5. applied: NEW's worker has applied it (else, after `takeover_timeout`, the fence is lifted
   again: OLD takes writes, nothing changed).
6. promoted: NEW's sequences at or past OLD's; in one transaction NEW becomes the root, OLD
   its subscriber at the final tick, and last NEW's capture opens: NEW accepts writes.
7. demoted: OLD becomes a branch of NEW (reverse replication, its capture stays fenced), then
   (`--all`) OLD's other subscribers move to NEW; done.

Killed at any step, the rows say where it stopped (`status`), and the same command completes
it; `--abort` lifts OLD's fence instead while NEW is not promoted. `--dead-root`: OLD is gone
(operations/failover.py); `resurrect` later re-attaches it (operations/resurrect.py). OLD a
branch (`--dead-branch` when gone): provider changes only (operations/branch.py). This module
holds the entry, what every kind shares and arming NEW; the switchover's steps are in
operations/switchover.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from londiste_rs.config import JobConfig
from londiste_rs.errors import ConnectError, LondisteError, NotInstalledError, UsageError
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.db import connect, describe
from londiste_rs.pg.location import trusted_location
from londiste_rs.pg.locking import LockBusy, with_lock_retries
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store import takeover as store_takeover
from londiste_rs.store.node import NodeInfo, get_node_info, require_node
from londiste_rs.store.schema import install
from londiste_rs.store.takeover import TakeoverState

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# How often the switch looks whether NEW has applied the final tick (the write downtime
# includes up to one interval).
POLL = 0.01
# After the switch: how long to wait for OLD to apply a tick of NEW (the reverse link works).
REVERSE_CHECK = 15.0
# The connect timeout for reaching OLD (a server that is gone should not hang the command).
CONNECT_TIMEOUT = 10
# A test hook: with LONDISTE_RS_TAKEOVER_PAUSE_AT=STEP the command stops for good once STEP is
# recorded (the fault tests kill it -9 there, from outside, and run it again).
PAUSE_ENV = "LONDISTE_RS_TAKEOVER_PAUSE_AT"


class TakeoverRefused(UsageError):
    """The pre-flight found problems: `problems` holds one line each (the fix included)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Check:
    """One pre-flight check: what was looked at, whether it passed, what was found."""

    what: str
    ok: bool
    detail: str


@dataclass
class Report:
    """What a takeover did (or, with `dry_run`, would do)."""

    queue: str
    mode: str
    old: str
    new: str
    checks: list[Check] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    timeline: list[tuple[str, float]] = field(default_factory=list)
    last_tick: int | None = None
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    complete: bool = False

    def at(self, event: str) -> float | None:
        return next((t for e, t in self.timeline if e == event), None)

    @property
    def downtime(self) -> float | None:
        """Seconds from the fence on OLD to NEW accepting writes (a switchover)."""
        start, end = self.at("fence"), self.at("promoted")
        return None if start is None or end is None else end - start


@dataclass
class Run:
    """One takeover's connections and what is known of both nodes."""

    cfg: JobConfig
    new: Conn
    info: NodeInfo
    old_name: str
    old_stored: str
    report: Report
    old: Conn | None = None
    oinfo: NodeInfo | None = None
    state: TakeoverState | None = None

    @property
    def queue(self) -> str:
        return self.cfg.queue_name

    @property
    def new_name(self) -> str:
        return self.info.node_name

    def refresh(self) -> NodeInfo:
        self.info = require_node(self.new, self.cfg, verb="takeover")
        return self.info

    def old_conn(self) -> Conn:
        assert self.old is not None
        return self.old

    def event(self, name: str, step: str | None = None, **extra: Any) -> float:
        """Records an event of the timeline (now) on NEW, and the step reached."""
        at = time.time()
        self.report.timeline.append((name, at))
        with self.new.transaction():
            store_takeover.record(self.new, self.queue, step, name, at, **extra)
        if step is not None:
            pause_if_asked(step)
        return at

    def finish(self, *also: Conn) -> Report:
        """Records the takeover done on NEW (and on each of `also`): the report, complete."""
        at = time.time()
        for conn in (self.new, *also):
            with conn.transaction():
                store_takeover.record(conn, self.queue, "done", "done", at)
        self.report.timeline.append(("done", at))
        self.report.complete = True
        return self.report


def pause_if_asked(step: str) -> None:
    if os.environ.get(PAUSE_ENV) == step:
        log.warning("takeover stopped after step %s (%s)", step, PAUSE_ENV)
        print(f"takeover paused after step {step}", flush=True)
        while True:
            signal.pause()


# -- notes: what a fenced node's refusals say --------------------------------------------------


def note_new_root(queue: str, old: str, new: str, where: str | None) -> str:
    at = f" ({describe(where)})" if where else ""
    return (
        f"node {old} handed the writes of queue {queue} to node {new} (takeover); "
        f"write to {new}{at}"
    )


def note_branch(queue: str, me: str, root: str, where: str | None) -> str:
    at = f" ({describe(where)})" if where else ""
    return f"node {me} follows the root of queue {queue}; write to the root {root}{at}"


# -- entry ---------------------------------------------------------------------------------------


def takeover(
    cfg: JobConfig,
    old_name: str,
    *,
    all_subscribers: bool = False,
    dead_root: bool = False,
    dead_branch: bool = False,
    dry_run: bool = False,
    abort: bool = False,
    max_lag: float | None = None,
    timeout: float | None = None,
) -> Report:
    """Runs (or, with `dry_run`, plans) the takeover of `old_name` by the config's node."""
    queue = cfg.queue_name
    max_lag = cfg.takeover_max_lag if max_lag is None else max_lag
    timeout = cfg.takeover_timeout if timeout is None else timeout
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(connect(cfg.db, autocommit=True, what="node database"))
        info = require_node(new, cfg, verb="takeover")
        if old_name == info.node_name:
            raise UsageError(
                f"takeover names the node to take over, not this one ({info.node_name}); "
                "run it with the config of the node that becomes the root"
            )
        state = _state(new, queue)
        running = state is not None and state.node_role == "new" and not state.finished
        if running and state is not None and state.old_node != old_name:
            raise UsageError(
                f"a takeover of {state.old_node} by {info.node_name} stopped at step "
                f"{state.step}; complete it with 'takeover {state.old_node}' or cancel it with "
                f"'takeover {state.old_node} --abort' first"
            )
        stored = _member_location(new, queue, old_name)
        mode = "failover" if dead_root else (state.mode if running and state else "switchover")
        mode = "branch" if dead_branch else mode
        switching = running and state is not None and state.mode != "failover"
        if switching and dead_root and info.node_type != "root":
            running = False  # OLD died during a switchover: fail over afresh
        report = Report(queue, mode, old_name, info.node_name, dry_run=dry_run)
        run = Run(cfg, new, info, old_name, stored, report, state=state if running else None)
        if running and state is not None:
            report.resumed_from = state.step
            report.timeline = list(state.timeline)
            report.last_tick = state.last_tick
        if not dry_run and not _lock(new, queue):
            raise LondisteError(
                f"another takeover of queue {queue} is running on {info.node_name} now; "
                "let it finish ('status' shows its step)"
            )
        if abort:
            from londiste_rs.operations.switchover import abort as abort_takeover

            return abort_takeover(run)
        if mode == "failover":
            from londiste_rs.operations.failover import failover

            return failover(run, all_subscribers=True, dry_run=dry_run, timeout=timeout)
        if mode != "branch":
            run.old, run.oinfo = reach_old(run, stack)
            if run.state is None and run.oinfo.node_type == "branch":
                mode = report.mode = "branch"
        if mode == "branch":
            from londiste_rs.operations.branch import branch_takeover

            return branch_takeover(run, dead=dead_branch, all_subscribers=all_subscribers,
                                   dry_run=dry_run, timeout=timeout)  # fmt: skip
        from londiste_rs.operations.switchover import switchover

        return switchover(run, all_subscribers, dry_run, max_lag, timeout)


def _lock(conn: Conn, queue: str) -> bool:
    """The takeover lock of the queue on NEW; a killed command's session may take a moment to
    end, so a few seconds are waited for it."""
    deadline = time.monotonic() + 5
    while not store_takeover.try_lock(conn, queue):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _state(conn: Conn, queue: str) -> TakeoverState | None:
    if not store_takeover.supported(conn):
        return None
    return store_takeover.get_state(conn, queue)


def _member_location(conn: Conn, queue: str, node: str) -> str:
    for m in store_node.members(conn, queue):
        if m.name == node:
            return m.location
    raise UsageError(
        f"unknown node {node} in queue {queue}; 'londiste-rs CONFIG members' lists the nodes"
    )


def reach_old(run: Run, stack: contextlib.ExitStack) -> tuple[Conn, NodeInfo]:
    where = trusted_location(run.old_stored, run.cfg)
    try:
        old = stack.enter_context(
            connect(where, autocommit=True, what=f"node {run.old_name}",
                    connect_timeout=CONNECT_TIMEOUT)
        )  # fmt: skip
    except ConnectError as e:
        hint = (
            f"; it stays fenced; run the takeover again when it is back, so it follows "
            f"{run.new_name}"
            if run.info.node_type == "root"
            else "; if it is gone for good, take over with --dead-root (a root) or --dead-branch"
            " (a branch)"
        )
        raise ConnectError(f"{e}{hint}") from None
    oinfo = get_node_info(old, run.queue)
    if oinfo is None:
        raise NotInstalledError(
            f"{describe(where)} (node {run.old_name}) is not a node of queue {run.queue}"
        )
    return old, oinfo


def arm_new_root(run: Run, mode: str = "switchover") -> None:
    """NEW armed, its capture fenced; the schema up to date on NEW and (a switchover) on OLD,
    whose capture functions are generated again with the fence's error path."""
    cfg, new, queue = run.cfg, run.new, run.queue
    install(new, lock_timeout=cfg.lock_timeout)
    if run.old is not None:
        install(run.old, lock_timeout=cfg.lock_timeout)
    tables = store_tables.table_states(new, queue)
    note = note_branch(queue, run.new_name, run.old_name, run.old_stored)

    def arm() -> None:
        if run.old is not None:  # NEW knows every member OLD knows (it will be the root)
            known = {m.name for m in store_node.members(new, queue)}
            for m in store_node.members(run.old, queue):
                if m.name not in known:
                    store_node.register_location(new, queue, m.name, m.location, m.dead)
        if not store_takeover.has_queue(new, queue):
            store_queue.create_queue(new, queue)
        store_takeover.fence(new, queue, note)
        store_takeover.unfence_tables(new, queue)  # an old root's refusals (taking over back)
        captured = set(store_takeover.captured_tables(new, queue))
        for s in tables:
            target = s.dest_table or s.table_name
            if pgnames.quoted_name(pgnames.name_of(target)) in captured:
                continue
            store_queue.capture_attach(new, queue, target)
            if s.dest_table and s.dest_table != s.table_name:
                store_takeover.capture_as(new, queue, target, s.table_name)
        if run.state is None:
            store_takeover.begin(
                new, queue, "new", mode, run.old_name, run.new_name, "prepared", time.time()
            )
            run.state = store_takeover.get_state(new, queue)

    try:
        with_lock_retries(new, cfg.lock_timeout, arm, "takeover: capture on the new root")
    except LockBusy as e:
        raise LondisteError(
            f"takeover: the tables of {run.new_name} stayed locked by other transactions "
            f"({e.tries} tries of lock_timeout {e.timeout:g}s) while capture was attached; "
            "nothing was switched; end them and run it again"
        ) from None
    if run.report.at("prepared") is None:
        run.event("prepared", "prepared")


def switch_provider(
    cfg: JobConfig,
    conn: Conn,
    name: str,
    provider: Conn,
    provider_name: str,
    provider_location: str,
    *,
    min_tick: int | None = None,
    timeout: float = 30.0,
) -> int:
    """Node `name` (its connection `conn`) follows `provider` from its own tick on, nothing
    lost or repeated: its position row is locked while it registers on the provider and
    switches (an apply running meanwhile commits first). With `min_tick`, waits (bounded) until
    the node has reached it first. Returns the tick it follows from."""
    queue = cfg.queue_name
    deadline = time.monotonic() + timeout
    while min_tick is not None:
        info = get_node_info(conn, queue)
        if info is None:
            raise NotInstalledError(f"node {name} is not a node of queue {queue}")
        if (info.last_tick_id or 0) >= min_tick:
            break
        if time.monotonic() > deadline:
            raise LondisteError(
                f"{name} did not reach tick {min_tick} within {timeout:g}s (at "
                f"{info.last_tick_id}); is its worker running?"
            )
        time.sleep(0.1)
    with conn.transaction():
        tick = store_takeover.lock_position(conn, queue)
        if tick is None:
            raise LondisteError(f"{name} has no position in queue {queue}")
        info = get_node_info(conn, queue)
        assert info is not None
        with provider.transaction():
            store_node.register_location(provider, queue, name, info.node_location or "")
            store_node.register_subscriber(provider, queue, name, info.worker_name, tick)
        store_node.register_location(conn, queue, provider_name, provider_location)
        store_node.change_provider(conn, queue, provider_name)
    return tick
