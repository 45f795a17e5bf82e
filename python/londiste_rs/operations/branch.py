"""takeover of a branch (londiste3's takeover_nonroot: provider changes only, no fence, as a
branch takes no application writes). NEW, a branch following the branch OLD, takes OLD's place
under OLD's provider P; with `--all` OLD's other subscribers follow NEW; a live OLD follows NEW
(the way back). `--dead-branch`: OLD is gone; P is found as the member that lists OLD as its
subscriber, OLD is tagged dead and its consumer on P dropped (it would hold back rotation).

Each move is `switch_provider` (nothing lost or repeated: the moving node's position row is
locked while it registers on the new provider and switches); every step is recorded in
`takeover_state` (mode 'branch'), and running the command again completes it.

1. paused: a live OLD's worker paused (its position stays put), NEW caught up with it;
2. moved: NEW follows P from its tick;
3. subscribers (`--all`, and always for a dead OLD): each follows NEW once NEW has its tick;
4. reversed: a live OLD follows NEW, and is resumed.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

from londiste_rs.cascade.walk import reach_members
from londiste_rs.errors import ConnectError, LondisteError, UsageError
from londiste_rs.operations.takeover import (
    POLL,
    Report,
    Run,
    pause_if_asked,
    switch_provider,
)
from londiste_rs.pg.db import first_line
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import takeover as store_takeover
from londiste_rs.store.node import NodeInfo, get_node_info
from londiste_rs.store.schema import install

Conn = psycopg.Connection[Any]

# How long a live OLD's worker may take to acknowledge its pause.
PAUSE_ACK = 10.0


def branch_takeover(
    run: Run, *, dead: bool, all_subscribers: bool, dry_run: bool, timeout: float
) -> Report:
    report, queue, info = run.report, run.queue, run.info
    if info.node_type != "branch":
        raise UsageError(
            f"{run.new_name} is a {info.node_type}: only a branch can take a branch's place "
            f"(its subscribers follow a queue)"
        )
    with contextlib.ExitStack() as stack:
        conns, failed = reach_members(run.cfg, run.new, stack)
        old = conns.get(run.old_name)
        if old is None and not dead:
            raise ConnectError(
                f"node {run.old_name} cannot be reached ({failed.get(run.old_name, '?')}); if it "
                "is gone for good, take over with --dead-branch"
            )
        if old is not None and dead:
            raise UsageError(
                f"node {run.old_name} is reachable: take over without --dead-branch (it then "
                f"follows {run.new_name})"
            )
        oinfo = None if old is None else get_node_info(old, queue)
        provider = _provider_of(run, conns, oinfo)
        if provider is None:
            raise LondisteError(
                f"the provider of {run.old_name} was not found among the members that can be "
                f"reached ({', '.join(sorted(failed)) or 'none failed'})"
            )
        pname, pconn = provider
        moved_already = info.provider_node == pname
        if not moved_already and info.provider_node != run.old_name:
            raise UsageError(
                f"{run.new_name} follows {info.provider_node}, not {run.old_name}; move it under "
                f"{run.old_name} first (change-provider --provider={run.old_name})"
            )
        others = [
            name
            for name, conn in sorted(conns.items())
            if name not in (run.new_name, run.old_name)
            and (minfo := get_node_info(conn, queue)) is not None
            and minfo.provider_node == run.old_name
        ]
        moving = others if (all_subscribers or dead) else []
        if dry_run:
            report.plan = _plan(run, pname, dead, moving, others)
            return report
        if run.state is None:
            with run.new.transaction():
                store_takeover.begin(
                    run.new, queue, "new", "branch", run.old_name, run.new_name, "started",
                    time.time(),
                )  # fmt: skip
            run.state = store_takeover.get_state(run.new, queue)
        install(run.new, lock_timeout=run.cfg.lock_timeout)
        if dead:
            _tag_dead(run, conns)
        elif old is not None and oinfo is not None and not moved_already:
            _pause_and_catch_up(run, old, oinfo, timeout)
        if not moved_already:
            where = _location(run.new, queue, pname)
            switch_provider(run.cfg, run.new, run.new_name, pconn, pname, where)
            if old is not None:
                with contextlib.suppress(psycopg.Error):
                    store_node.unregister_subscriber(old, queue, run.new_name)
            run.event(f"follows {pname}", "moved")
        if dead:  # (after NEW registered on P: its consumer holds the ticks NEW needs)
            with contextlib.suppress(psycopg.Error):
                store_node.unregister_subscriber(pconn, queue, run.old_name)
        run.refresh()
        for name in moving:
            _move(run, conns[name], name, timeout)
        if old is not None:
            oinfo = get_node_info(old, queue)
            if oinfo is not None and oinfo.provider_node != run.new_name:
                where = run.info.node_location or run.cfg.db
                switch_provider(run.cfg, old, run.old_name, run.new, run.new_name, where)
                with contextlib.suppress(psycopg.Error):
                    store_node.unregister_subscriber(pconn, queue, run.old_name)
                run.event(f"{run.old_name} follows {run.new_name}", "reversed")
            store_node.set_paused(old, queue, False)
        for name, why in sorted(failed.items()):
            if name != run.old_name:
                report.notes.append(f"member {name} not reached ({why})")
    return run.finish()


def _provider_of(
    run: Run, conns: dict[str, Conn], oinfo: NodeInfo | None
) -> tuple[str, Conn] | None:
    """OLD's provider: from OLD itself, else the member that lists OLD as its subscriber."""
    if oinfo is not None and oinfo.provider_node in conns:
        return oinfo.provider_node, conns[oinfo.provider_node]
    for name, conn in sorted(conns.items()):
        if name in (run.old_name, run.new_name):
            continue
        if store_takeover.subscriber_consumer(conn, run.queue, run.old_name) is not None:
            return name, conn
    return None


def _location(conn: Conn, queue: str, node: str) -> str:
    where = next((m.location for m in store_node.members(conn, queue) if m.name == node), None)
    if where is None:
        raise LondisteError(f"node {node} is not in the member list here; cannot follow it")
    return where


def _plan(run: Run, provider: str, dead: bool, moving: list[str], others: list[str]) -> list[str]:
    new, old = run.new_name, run.old_name
    plan = []
    if dead:
        plan.append(f"tag {old} dead in every member's list; drop its consumer on {provider}")
    else:
        plan.append(f"pause {old}'s worker; wait until {new} has {old}'s last tick")
    plan.append(f"{new} follows {provider} from its tick")
    if moving:
        plan.append(f"{', '.join(moving)} follow {new} (each once {new} has its tick)")
    elif others:
        plan.append(f"{old}'s subscribers {', '.join(others)} stay (--all moves them)")
    if not dead:
        plan.append(f"{old} follows {new}, and is resumed")
    return plan


def _tag_dead(run: Run, conns: dict[str, Conn]) -> None:
    where = _location(run.new, run.queue, run.old_name)
    for name, conn in conns.items():
        try:
            store_node.register_location(conn, run.queue, run.old_name, where, True)
        except psycopg.Error as e:
            run.report.notes.append(f"could not tag {run.old_name} dead on {name}: {first_line(e)}")


def _pause_and_catch_up(run: Run, old: Conn, oinfo: NodeInfo, timeout: float) -> None:
    queue = run.queue
    store_node.set_paused(old, queue, True)
    deadline = time.monotonic() + PAUSE_ACK
    while time.monotonic() < deadline:
        now = get_node_info(old, queue)
        if now is None or now.uptodate:
            break
        time.sleep(POLL * 5)
    target = (get_node_info(old, queue) or oinfo).last_tick_id or 0
    deadline = time.monotonic() + timeout
    while (run.refresh().last_tick_id or 0) < target:
        if time.monotonic() > deadline:
            store_node.set_paused(old, queue, False)
            raise LondisteError(
                f"takeover stopped: {run.new_name} did not catch up with {run.old_name} (tick "
                f"{target}) within takeover_timeout {timeout:g}s; {run.old_name} was resumed; "
                "is the worker of the new node running?"
            )
        time.sleep(POLL * 5)
    run.event(f"{run.new_name} caught up with {run.old_name}", "paused")


def _move(run: Run, conn: Conn, name: str, timeout: float) -> None:
    """Subscriber `name` of OLD follows NEW once NEW's queue has its tick."""
    sinfo = get_node_info(conn, run.queue)
    if sinfo is None or sinfo.provider_node == run.new_name:
        return
    need = sinfo.last_tick_id or 0
    deadline = time.monotonic() + timeout
    while (store_queue.last_tick_id(run.new, run.queue) or 0) < need:
        if time.monotonic() > deadline:
            run.report.notes.append(
                f"{name} not moved: {run.new_name} has not reached its tick {need} within "
                f"{timeout:g}s; run the takeover again"
            )
            return
        time.sleep(POLL * 5)
    where = run.info.node_location or run.cfg.db
    try:
        tick = switch_provider(run.cfg, conn, name, run.new, run.new_name, where)
    except (LondisteError, psycopg.Error) as e:
        run.report.notes.append(f"{name} not moved: {first_line(e)}")
        return
    run.event(f"moved {name}")
    pause_if_asked("subscribers")
    run.report.notes.append(f"{name} follows {run.new_name} from tick {tick}")
