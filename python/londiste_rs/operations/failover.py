"""takeover --dead-root: the root is gone, a subscriber becomes the root (londiste3's failover,
OPERATIONS-REFERENCE §1.3), each step recorded in `takeover_state` (rerun to complete):

1. pre-flight: the old root really cannot be reached (a reachable one is switched over
   instead, fenced: a failover of a live root would split the writes), this node's tables
   are `ok` and its worker runs.
2. prepared: this node armed as for a switchover (queue, capture fenced).
3. tagged-dead: the old root marked dead in every member's list that can be reached.
4. caught-up: when another subscriber of the old root (a branch) got further than this node,
   this node follows it until it has its last tick, as londiste3 does.
5. promoted: sequences moved at or past what every reachable sibling has and past the values
   of the columns that own them, then `failover_seq_gap` increments further (the dead root
   may have handed out values since this node last synced from it: londiste3 keeps its
   subscribers' sequences 10000 to 30000 ahead for the same reason); this node becomes the
   root at its last tick L, with a
   consumer `OLD.gravestone` registered at L (what `resurrect` reads later); its capture opens.
6. the old root's other subscribers move here, each at its own tick when this node's queue
   has it; one ahead of L holds writes this node never got and is named, not moved.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

from londiste_rs.cascade.walk import reach_members
from londiste_rs.errors import ConnectError, LondisteError, UsageError
from londiste_rs.operations.takeover import (
    CONNECT_TIMEOUT,
    POLL,
    Check,
    Report,
    Run,
    TakeoverRefused,
    arm_new_root,
    pause_if_asked,
    switch_provider,
)
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.location import trusted_location
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store import takeover as store_takeover
from londiste_rs.store.node import NodeInfo, get_node_info
from londiste_rs.store.tables import MergeState
from londiste_rs.tables import sequences

Conn = psycopg.Connection[Any]


def failover(run: Run, *, all_subscribers: bool, dry_run: bool, timeout: float) -> Report:
    report, queue, info = run.report, run.queue, run.info
    resuming = run.state is not None
    if info.node_type == "root" and not resuming:
        raise UsageError(f"{run.new_name} already is the root of queue {queue}")
    with contextlib.ExitStack() as stack:
        if not resuming or info.node_type != "root":
            report.checks = _preflight(run)
            failed = [c for c in report.checks if not c.ok]
            if dry_run:
                report.plan = _plan(run)
                return report
            if failed:
                raise TakeoverRefused([c.detail for c in failed])
        elif dry_run:
            step = run.state.step if run.state else "?"
            report.plan = [f"(resuming a failover stopped at step {step})"]
            return report
        conns, failed_members = reach_members(run.cfg, run.new, stack)
        conns.pop(run.old_name, None)
        if info.node_type != "root":
            arm_new_root(run, mode="failover")
            _tag_dead(run, conns)
            _catch_up(run, conns, timeout)
            last_tick = _promote(run, conns)
        else:
            last_tick = report.last_tick or run.refresh().last_tick_id or 0
        _move_siblings(run, conns, last_tick)
        for name, why in sorted(failed_members.items()):
            if name != run.old_name:
                report.notes.append(f"member {name} not reached ({why}): not changed")
    return run.finish()


def _siblings(run: Run, conns: dict[str, Conn]) -> list[tuple[str, Conn, NodeInfo]]:
    """The other nodes that followed the old root."""
    out = []
    for name, conn in sorted(conns.items()):
        if name in (run.new_name, run.old_name):
            continue
        sinfo = get_node_info(conn, run.queue)
        if sinfo is not None and sinfo.provider_node == run.old_name:
            out.append((name, conn, sinfo))
    return out


def _preflight(run: Run) -> list[Check]:
    queue, info = run.queue, run.info
    checks = []
    if info.node_type == "root":
        checks.append(Check("roles", True, f"{run.new_name} is the root already (resuming)"))
    elif info.provider_node != run.old_name:
        checks.append(Check("roles", False, (
            f"{run.new_name} follows {info.provider_node}, not {run.old_name}; a failover "
            f"promotes a subscriber of the dead root"
        )))  # fmt: skip
    else:
        checks.append(
            Check("roles", True, f"{run.new_name} is a {info.node_type} of {run.old_name}")
        )
    try:
        where = trusted_location(run.old_stored, run.cfg)
        with connect(where, autocommit=True, what=f"node {run.old_name}",
                     connect_timeout=CONNECT_TIMEOUT) as old:  # fmt: skip
            oinfo = get_node_info(old, queue)
        alive = oinfo is not None and oinfo.node_type == "root"
        checks.append(Check("old root", not alive, (
            f"{run.old_name} is reachable and still the root: switch over instead (takeover "
            f"{run.old_name} without --dead-root), which fences it first"
            if alive else f"{run.old_name} is reachable but no longer the root"
        )))  # fmt: skip
    except (ConnectError, LondisteError) as e:
        checks.append(Check("old root", True, f"{run.old_name} cannot be reached: {e}"))
    problems = [
        f"table {s.table_name} is {s.state} on {run.new_name}; a new root needs it ok "
        "(resync it after the failover, or remove-table it first)"
        for s in store_tables.table_states(run.new, queue)
        if s.merge_state is not MergeState.OK
    ]
    checks += [Check("tables", False, p) for p in problems] or [
        Check("tables", True, f"every table of {run.new_name} is ok")
    ]
    if info.paused:
        checks.append(Check("worker", False, f"the worker of {run.new_name} is paused; resume it"))
    else:
        checks.append(Check("worker", True, f"{run.new_name} applied tick {info.last_tick_id}"))
    return checks


def _plan(run: Run) -> list[str]:
    return [
        f"prepare {run.new_name}: its queue and capture (fenced until promoted)",
        f"tag {run.old_name} dead in every member's list that can be reached",
        f"catch up from the subscriber of {run.old_name} that got furthest, if one is ahead",
        "sequences at or past every reachable sibling's and their columns' values, then "
        f"failover_seq_gap ({run.cfg.failover_seq_gap}) further for what {run.old_name} may "
        "have handed out since",
        f"promote {run.new_name} at its last tick; consumer "
        f"{store_takeover.gravestone(run.old_name)} kept there for resurrect; writes accepted; "
        f"the ticker of {run.new_name}'s database ticks its queue from then on",
        f"move {run.old_name}'s other subscribers to {run.new_name} (those it knows and can "
        "serve; a node created after it is known to the dead root only: move it with "
        f"'change-provider --provider={run.new_name}')",
    ]


def _tag_dead(run: Run, conns: dict[str, Conn]) -> None:
    if run.state is not None and run.state.step not in ("started", "prepared"):
        return
    for name, conn in conns.items():
        try:
            store_node.register_location(conn, run.queue, run.old_name, run.old_stored, True)
        except psycopg.Error as e:
            run.report.notes.append(f"could not tag {run.old_name} dead on {name}: {first_line(e)}")
    run.event("tagged dead", "tagged-dead")


def _catch_up(run: Run, conns: dict[str, Conn], timeout: float) -> None:
    """Follows the sibling branch that got furthest until this node has its last tick."""
    if run.report.at("caught up") is not None:
        return
    have = run.refresh().last_tick_id or 0
    ahead = [
        (sinfo.last_tick_id or 0, name, conn)
        for name, conn, sinfo in _siblings(run, conns)
        if sinfo.node_type == "branch" and (sinfo.last_tick_id or 0) > have
    ]
    if ahead:
        target, name, conn = max(ahead)
        location = next(
            (m.location for m in store_node.members(run.new, run.queue) if m.name == name), None
        )
        if store_queue.get_tick(conn, run.queue, have) is None or location is None:
            run.report.notes.append(
                f"{name} is ahead (tick {target}) but its queue no longer has tick {have}: "
                "not caught up from it"
            )
        else:
            switch_provider(run.cfg, run.new, run.new_name, conn, name, location)
            deadline = time.monotonic() + timeout
            while (run.refresh().last_tick_id or 0) < target:
                if time.monotonic() > deadline:
                    raise LondisteError(
                        f"failover stopped: {run.new_name} did not catch up with {name} (tick "
                        f"{target}) within takeover_timeout {timeout:g}s; is its worker "
                        "running? run the takeover again to go on"
                    )
                time.sleep(POLL * 5)
            with contextlib.suppress(psycopg.Error):
                store_node.unregister_subscriber(conn, run.queue, run.new_name)
            run.report.notes.append(f"caught up from {name} up to tick {target}")
    run.event("caught up", "caught-up")


def _promote(run: Run, conns: dict[str, Conn]) -> int:
    new, queue = run.new, run.queue
    info = run.refresh()
    last_tick = info.last_tick_id or 0
    tick = store_queue.get_tick(new, queue, last_tick)
    event_seq = tick.event_seq if tick is not None else 0
    tick_time = tick.time if tick is not None else info.last_tick_time
    if tick_time is None:
        raise LondisteError(f"{run.new_name} has applied no tick yet; it cannot be the root")
    names = store_tables.seq_names(new, queue)
    if names:
        for name, conn, _ in _siblings(run, conns):
            there = [n for n in names if pgnames.exists(conn, pgnames.name_of(n))]
            try:
                sequences.sync(conn, new, there)
            except (LondisteError, psycopg.Error) as e:
                run.report.notes.append(f"sequences of {name} not read: {first_line(e)}")
        sequences.past_column_max(new, names)
        if run.cfg.failover_seq_gap:
            sequences.advance(new, names, run.cfg.failover_seq_gap)
    with new.transaction():
        store_takeover.promote(new, queue, last_tick, tick_time, event_seq)
        store_queue.register_consumer(
            new, queue, store_takeover.gravestone(run.old_name), last_tick
        )
        store_takeover.record(new, queue, None, last_tick=last_tick)
        store_takeover.unfence(new, queue)  # last: writes accepted from the commit on
    run.report.last_tick = last_tick
    run.refresh()
    run.event("promoted")
    pause_if_asked("promoted")
    return last_tick


def _move_siblings(run: Run, conns: dict[str, Conn], last_tick: int) -> None:
    where = run.info.node_location or run.cfg.db
    for name, conn, sinfo in _siblings(run, conns):
        at = sinfo.last_tick_id or 0
        if at > last_tick:
            run.report.notes.append(
                f"{name} is ahead of {run.new_name} (tick {at} > {last_tick}): it holds writes "
                f"of {run.old_name} that {run.new_name} never got; not moved: resync its "
                f"tables under {run.new_name} (drop-node {name}, create it again)"
            )
            continue
        try:
            tick = switch_provider(run.cfg, conn, name, run.new, run.new_name, where)
        except (LondisteError, psycopg.Error) as e:
            run.report.notes.append(f"{name} not moved: {first_line(e)}")
            continue
        run.event(f"moved {name}")
        run.report.notes.append(f"{name} follows {run.new_name} from tick {tick}")
