"""The switchover of a live root (`takeover OLD`; operations/takeover.py has the steps and
the entry, operations/preflight.py the checks): NEW armed, OLD fenced, the final tick, NEW
promoted, OLD demoted and following it, `--all`, `--abort`."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from londiste_rs.errors import LondisteError, UsageError
from londiste_rs.operations import preflight
from londiste_rs.operations.takeover import (
    CONNECT_TIMEOUT,
    POLL,
    REVERSE_CHECK,
    Report,
    Run,
    TakeoverRefused,
    arm_new_root,
    note_branch,
    note_new_root,
    pause_if_asked,
    reach_old,
    switch_provider,
)
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.location import trusted_location
from londiste_rs.pg.locking import lock_holders, set_lock_timeout
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store import takeover as store_takeover
from londiste_rs.store.node import get_node_info
from londiste_rs.tables import sequences

Conn = psycopg.Connection[Any]


# -- switchover ---------------------------------------------------------------------------------


def switchover(
    run: Run, all_subscribers: bool, dry_run: bool, max_lag: float, timeout: float
) -> Report:
    report, queue = run.report, run.queue
    old = run.old_conn()
    oinfo = run.oinfo
    assert oinfo is not None
    resuming = run.state is not None
    promoted = run.info.node_type == "root"
    if promoted and not resuming:
        raise UsageError(
            f"{run.new_name} already is the root of queue {queue}; to move back, run the "
            f"takeover with the config of {run.old_name}"
        )
    if not resuming and oinfo.node_type != "root":
        raise UsageError(f"{run.old_name} is a leaf of queue {queue}; nothing to take over")
    if dry_run:
        report.checks = preflight.preflight(run, max_lag) if not resuming else []
        report.plan = preflight.plan(run, all_subscribers, timeout)
        if resuming and run.state is not None:
            report.plan.insert(0, f"(resuming a takeover stopped at step {run.state.step})")
        return report
    if not resuming:
        checks = preflight.preflight(run, max_lag)
        failed = [c for c in checks if not c.ok]
        if not failed:
            probe = preflight.probe(run, max_lag)
            checks = [c for c in checks if c.what != "lag"] + [probe]
            failed = [] if probe.ok else [probe]
        report.checks = checks
        if failed:
            raise TakeoverRefused([c.detail for c in failed])

    others = [s for s, _ in store_node.subscribers(old, queue) if s != run.new_name]
    if not promoted:
        arm_new_root(run)
        if not _old_demoted(run):
            _fence_old(run)
            last_tick = _final_tick(run)
            _wait_applied(run, last_tick, timeout)
            _sync_sequences(run)
            _promote(run, last_tick, others if all_subscribers else [])
    final = report.last_tick
    assert final is not None
    if not _old_demoted(run):
        _demote(run, final)
    if all_subscribers:
        for name in others:
            _move_subscriber(run, name, final)
    _check_reverse(run)
    return run.finish(old)


def _old_demoted(run: Run) -> bool:
    oinfo = get_node_info(run.old_conn(), run.queue)
    run.oinfo = oinfo
    return oinfo is not None and oinfo.node_type == "branch" and oinfo.provider_node == run.new_name


def _fence_old(run: Run) -> None:
    old, queue = run.old_conn(), run.queue
    note = note_new_root(queue, run.old_name, run.new_name, run.info.node_location)
    with old.transaction():
        store_takeover.announce_fence(old, queue, note)
    at = time.time()
    with old.transaction():
        st = store_takeover.get_state(old, queue)
        if st is None or st.finished or st.node_role != "old" or st.new_node != run.new_name:
            store_takeover.begin(
                old, queue, "old", "switchover", run.old_name, run.new_name, "fenced", at
            )
        store_takeover.fence(old, queue, note)
    if run.report.at("fence") is None:
        run.report.timeline.append(("fence", at))
        with run.new.transaction():
            store_takeover.record(run.new, queue, "fenced", "fence", at)
    else:
        with run.new.transaction():
            store_takeover.record(run.new, queue, "fenced")
    with old.transaction():
        store_takeover.record(old, queue, None, "fence", at)
    pause_if_asked("fenced")


def _final_tick(run: Run) -> int:
    """The final tick on OLD once its writers in flight ended, within lock_timeout; else the
    fence is lifted and the takeover stops with the sessions that held it up."""
    old, queue, cfg = run.old_conn(), run.queue, run.cfg
    note = note_new_root(queue, run.old_name, run.new_name, run.info.node_location)
    deadline = time.monotonic() + cfg.lock_timeout
    tick = None
    while tick is None:
        left = deadline - time.monotonic()
        try:
            with old.transaction():
                set_lock_timeout(old, max(left, 0.05))
                tick = store_takeover.final_tick(old, queue, note)
        except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected) as e:
            if time.monotonic() < deadline and isinstance(e, pgerrors.DeadlockDetected):
                continue
            holders = _holders(old, queue)
            _lift_fence(run)
            raise LondisteError(
                f"takeover stopped: transactions on {run.old_name} still writing its replicated "
                f"tables did not end within lock_timeout {cfg.lock_timeout:g}s"
                f"{' (' + holders + ')' if holders else ''}; the fence was lifted, "
                f"{run.old_name} takes writes again; end them and run the takeover again"
            ) from None
    run.report.last_tick = tick
    with old.transaction():
        store_takeover.record(old, queue, None, "final tick", time.time())
    if run.report.at("final tick") is None:
        run.event("final tick", "final-tick", last_tick=tick)
    return tick


def _holders(conn: Conn, queue: str) -> str:
    found = [lock_holders(conn, t) for t in store_takeover.captured_tables(conn, queue)]
    return ", ".join(dict.fromkeys(h for h in found if h))


def _lift_fence(run: Run) -> None:
    """Back to before the takeover on OLD: it takes writes and ticks again (NEW stays a
    subscriber, armed: its capture stays fenced)."""
    old, queue = run.old_conn(), run.queue
    with old.transaction():
        set_lock_timeout(old, run.cfg.lock_timeout)
        store_takeover.forget(old, queue)
        store_takeover.set_ticked_externally(old, queue, False)
        store_takeover.unfence_tables(old, queue)
        store_takeover.unfence(old, queue)
    with run.new.transaction():
        store_takeover.forget(run.new, queue)


def _wait_applied(run: Run, last_tick: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = run.refresh()
        if (info.last_tick_id or 0) >= last_tick:
            break
        if time.monotonic() > deadline:
            why = f"; its worker reports: {info.cur_error}" if info.cur_error else ""
            _lift_fence(run)
            raise LondisteError(
                f"takeover stopped: {run.new_name} did not apply the final tick {last_tick} of "
                f"{run.old_name} within takeover_timeout {timeout:g}s (it is at tick "
                f"{info.last_tick_id}){why}; the fence was lifted, {run.old_name} takes writes "
                "again; check the worker and run the takeover again"
            )
        time.sleep(POLL)
    if run.report.at("applied") is None:
        run.event("applied", "applied")


def _sync_sequences(run: Run) -> None:
    """NEW's sequences at or past OLD's (forward only; OLD is fenced, its sequences are read
    after the final tick)."""
    names = store_tables.seq_names(run.old_conn(), run.queue)
    if names:
        sequences.sync(run.old_conn(), run.new, names)


def _promote(run: Run, last_tick: int, moving: list[str]) -> None:
    old, new, queue = run.old_conn(), run.new, run.queue
    oinfo = run.oinfo
    assert oinfo is not None
    tick = store_queue.get_tick(old, queue, last_tick)
    if tick is None:
        raise LondisteError(f"tick {last_tick} is gone from {run.old_name}; cannot promote")
    consumers = {name: _consumer_of(old, queue, name) for name in moving}
    with new.transaction():
        store_takeover.promote(new, queue, last_tick, tick.time, tick.event_seq)
        store_node.register_subscriber(new, queue, run.old_name, oinfo.worker_name, last_tick)
        for name, (consumer, location) in consumers.items():
            if consumer is None or location is None:
                continue
            store_node.register_location(new, queue, name, location)
            store_node.register_subscriber(new, queue, name, consumer, last_tick)
        store_takeover.unfence(new, queue)  # last: NEW accepts writes from its commit on
    run.info = run.refresh()
    run.event("promoted")
    pause_if_asked("promoted")


def _consumer_of(conn: Conn, queue: str, node: str) -> tuple[str | None, str | None]:
    """The consumer through which `node` follows this provider, and its stored location."""
    consumer = store_takeover.subscriber_consumer(conn, queue, node)
    location = next((m.location for m in store_node.members(conn, queue) if m.name == node), None)
    return consumer, location


def _demote(run: Run, last_tick: int) -> None:
    old, queue = run.old_conn(), run.queue
    tick = store_queue.get_tick(old, queue, last_tick)
    if tick is None:
        raise LondisteError(f"tick {last_tick} is gone from {run.old_name}; cannot demote it")
    note = note_branch(queue, run.old_name, run.new_name, run.info.node_location)
    at = time.time()
    with old.transaction():
        store_takeover.demote(old, queue, run.new_name, last_tick, tick.time, note)
        store_node.unregister_subscriber(old, queue, run.new_name)
        store_takeover.record(old, queue, None, "reverse link", at)
    run.event("reverse link", "demoted")


def _move_subscriber(run: Run, name: str, last_tick: int) -> None:
    """Moves one other subscriber of OLD to NEW at its own position (>= the final tick:
    waited for, bounded)."""
    stored = next((m.location for m in store_node.members(run.old_conn(), run.queue)
                   if m.name == name), None)  # fmt: skip
    if stored is None:
        run.report.notes.append(f"{name} is not in {run.old_name}'s member list: not moved")
        return
    try:
        with connect(trusted_location(stored, run.cfg), autocommit=True, what=f"node {name}",
                     connect_timeout=CONNECT_TIMEOUT) as conn:  # fmt: skip
            moved = switch_provider(
                run.cfg, conn, name, run.new, run.new_name, run.info.node_location or run.cfg.db,
                min_tick=last_tick, timeout=run.cfg.takeover_timeout,
            )  # fmt: skip
    except (LondisteError, psycopg.Error) as e:
        run.report.notes.append(f"{name} not moved: {first_line(e)}; it goes on following "
                                f"{run.old_name}")  # fmt: skip
        return
    with contextlib.suppress(psycopg.Error):
        store_node.unregister_subscriber(run.old_conn(), run.queue, name)
    run.event(f"moved {name}")
    run.report.notes.append(f"{name} follows {run.new_name} from tick {moved}")


def _check_reverse(run: Run) -> None:
    """A tick of NEW applied by OLD: the way back works (else a note: start OLD's worker)."""
    if run.report.at("reverse applied") is not None:
        return
    new, queue = run.new, run.queue
    store_queue.force_tick(new, queue)
    tick = store_queue.ticker(new, queue) or store_queue.last_tick_id(new, queue)
    deadline = time.monotonic() + REVERSE_CHECK
    while tick is not None:
        oinfo = get_node_info(run.old_conn(), queue)
        if oinfo is not None and (oinfo.last_tick_id or 0) >= tick:
            run.event("reverse applied")
            run.report.notes.append(f"{run.old_name} applied tick {tick} of {run.new_name}")
            return
        if time.monotonic() > deadline:
            run.report.notes.append(
                f"{run.old_name} has not applied tick {tick} of {run.new_name} within "
                f"{REVERSE_CHECK:g}s: start its worker ('londiste-rs OLD.ini worker') so it "
                f"follows {run.new_name}"
            )
            return
        time.sleep(0.05)


# -- abort ---------------------------------------------------------------------------------------


def abort(run: Run) -> Report:
    """Lifts OLD's fence of a takeover that did not promote NEW yet."""
    report = run.report
    if run.state is None:
        raise UsageError(f"no takeover of {run.old_name} by {run.new_name} is in progress")
    if run.info.node_type == "root":
        raise UsageError(
            f"{run.new_name} is the root already (step {run.state.step}); complete the takeover "
            f"by running it again, then take over back from {run.old_name} if needed"
        )
    if run.state.mode == "branch":
        raise UsageError(
            f"a takeover of branch {run.old_name} changes providers only, there is no fence to "
            "lift: run it again to complete it"
        )
    if run.state.mode == "failover":
        with run.new.transaction():
            store_takeover.forget(run.new, run.queue)
        report.notes.append(
            f"failover aborted: {run.new_name} stays a {run.info.node_type} (its capture stays "
            f"fenced); members that were told {run.old_name} is dead still say so"
        )
        report.complete = True
        return report
    with contextlib.ExitStack() as stack:
        run.old, run.oinfo = reach_old(run, stack)
        st = store_takeover.get_state(run.old, run.queue)
        if st is not None and st.node_role == "old" and st.new_node == run.new_name:
            _lift_fence(run)
        else:
            with run.new.transaction():
                store_takeover.forget(run.new, run.queue)
    report.notes.append(
        f"takeover aborted: {run.old_name} takes writes again; {run.new_name} stays a "
        f"{run.info.node_type} following it (its capture stays fenced)"
    )
    report.complete = True
    return report
