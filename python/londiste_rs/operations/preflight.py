"""The switchover's pre-flight (`takeover OLD`, operations/switchover.py runs it): the checks,
read only, the probe of NEW's worker with a fresh tick of OLD, and the plan `--dry-run`
prints."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from londiste_rs.operations.takeover import POLL, Check, Run
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.db import describe, first_line
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store.tables import MergeState

Conn = psycopg.Connection[Any]


def preflight(run: Run, max_lag: float) -> list[Check]:
    """The checks, read only: nothing changes on either node."""
    queue, new, old = run.queue, run.new, run.old_conn()
    info, oinfo = run.info, run.oinfo
    assert oinfo is not None
    checks: list[Check] = []
    kinds_ok = info.node_type in ("branch", "leaf") and info.provider_node == run.old_name
    if info.node_type == "root":
        detail = f"{run.new_name} already is the root of queue {queue}"
    elif info.provider_node != run.old_name:
        detail = (
            f"{run.new_name} follows {info.provider_node}, not {run.old_name}; move it under "
            f"{run.old_name} first (change-provider --provider={run.old_name})"
        )
    else:
        detail = f"{run.new_name} is a {info.node_type} following {run.old_name}"
    checks.append(Check("roles", kinds_ok and oinfo.node_type == "root", (
        detail if oinfo.node_type == "root"
        else f"{run.old_name} is a {oinfo.node_type}, not the root of queue {queue}"
    )))  # fmt: skip
    checks.append(Check("old root", True, f"{run.old_name} reachable ({describe(old.info.dsn)})"))

    states = store_tables.table_states(new, queue)
    problems = []
    for s in states:
        if s.merge_state is MergeState.FAILED:
            problems.append(
                f"table {s.table_name}: its copy failed ({s.copy_error}); fix it, then "
                f"'resync {s.table_name}' and wait until it is ok"
            )
        elif s.merge_state is not MergeState.OK:
            problems.append(
                f"table {s.table_name} is {s.state} on {run.new_name}; wait until it is ok "
                "('wait-sync')"
            )
    carried = store_tables.table_names(old, queue)
    have = {s.table_name for s in states}
    for t in carried:
        if t not in have:
            problems.append(
                f"table {t} is replicated by {run.old_name} but not by {run.new_name}; add it "
                f"on {run.new_name} (add-table {t}) or remove it on {run.old_name} (remove-table)"
            )
    ok_count = sum(1 for s in states if s.merge_state is MergeState.OK)
    checks += [Check("tables", False, p) for p in problems] or [
        Check("tables", True, f"{ok_count} tables, all ok; {run.old_name} carries no other")
    ]

    old_seqs = store_tables.seq_names(old, queue)
    new_seqs = set(store_tables.seq_names(new, queue))
    seq_problems = [
        f"sequence {s} is replicated by {run.old_name} but not by {run.new_name}; "
        f"add it on {run.new_name} (add-seq {s})"
        for s in old_seqs
        if s not in new_seqs
    ]
    seq_problems += [
        f"sequence {s} is registered on {run.new_name} but does not exist there; create it or "
        "remove-seq it"
        for s in sorted(new_seqs)
        if not pgnames.exists(new, pgnames.name_of(s))
    ]
    checks += [Check("sequences", False, p) for p in seq_problems] or [
        Check("sequences", True, f"{len(old_seqs)} sequences, all replicated on {run.new_name}")
    ]

    if info.paused:
        checks.append(Check("worker", False, f"the worker of {run.new_name} is paused; resume it"))
    elif info.cur_error:
        checks.append(Check("worker", False, (
            f"the worker of {run.new_name} reports: {first_line(Exception(info.cur_error))}; "
            "fix that first"
        )))  # fmt: skip
    else:
        checks.append(Check("worker", True, f"{run.new_name} applied tick {info.last_tick_id}"))

    head = store_queue.last_tick_id(old, queue)
    behind = 0 if head is None or info.last_tick_id is None else head - info.last_tick_id
    lag = store_node.lag_seconds(new, queue) if behind > 0 else 0.0
    lag = 0.0 if lag is None else lag
    checks.append(Check("lag", lag <= max_lag, (
        f"{run.new_name} is {lag:.1f}s ({behind} ticks) behind {run.old_name}"
        + ("" if lag <= max_lag else
           f", more than takeover_max_lag {max_lag:g}s; wait until it caught up "
           "(is its worker running?)")
    )))  # fmt: skip
    return checks


def probe(run: Run, max_lag: float) -> Check:
    """A fresh tick of OLD, applied by NEW within max_lag: its worker runs and keeps up."""
    old = run.old_conn()
    store_queue.force_tick(old, run.queue)
    tick = store_queue.ticker(old, run.queue) or store_queue.last_tick_id(old, run.queue)
    started = time.monotonic()
    deadline = started + max_lag
    while True:
        info = run.refresh()
        if tick is None or (info.last_tick_id or 0) >= tick:
            took = time.monotonic() - started
            return Check("lag", True, f"{run.new_name} applied a fresh tick of {run.old_name} "
                         f"in {took:.2f}s (bound: takeover_max_lag {max_lag:g}s)")  # fmt: skip
        if time.monotonic() > deadline:
            why = f" (its worker reports: {info.cur_error})" if info.cur_error else ""
            return Check("lag", False, (
                f"{run.new_name} did not apply a fresh tick {tick} of {run.old_name} within "
                f"takeover_max_lag {max_lag:g}s (it is at tick {info.last_tick_id}){why}; "
                f"is the worker of {run.new_name} running?"
            ))  # fmt: skip
        time.sleep(POLL * 5)


def plan(run: Run, all_subscribers: bool, timeout: float) -> list[str]:
    info, oinfo, queue = run.info, run.oinfo, run.queue
    assert oinfo is not None
    new, old = run.new_name, run.old_name
    tables = store_tables.table_states(run.new, queue)
    seqs = store_tables.seq_names(run.old_conn(), queue)
    others = [s for s, _ in store_node.subscribers(run.old_conn(), queue) if s != new]
    armed = "create its queue (a leaf has none), " if info.node_type == "leaf" else ""
    plan = [
        f"prepare {new}: {armed}attach capture to its {len(tables)} tables, fenced (writes "
        f"there are refused, naming the root {old}); bring the schema up to date on both",
        f"fence {old}: from this instant writes to its {len(tables)} replicated tables fail, "
        f"saying they go to {new} now",
        f"final tick on {old}, once the transactions writing there have ended (waits at most "
        f"lock_timeout {run.cfg.lock_timeout:g}s, else the fence is lifted)",
        f"wait until {new} has applied it (at most takeover_timeout {timeout:g}s, else the "
        "fence is lifted and nothing is changed)",
        f"sequences: {len(seqs)} on {new} moved at or past {old}'s values",
        f"promote {new}: root of queue {queue}, {old} its subscriber from the final tick; "
        f"{new} accepts writes (the end of the write downtime); from then on the ticker of "
        f"{new}'s database ticks its queue",
        f"{old} becomes a branch of {new}: it applies {new}'s writes, its capture stays fenced",
    ]
    if others:
        if all_subscribers:
            plan.append(f"move {old}'s subscribers {', '.join(others)} to {new}")
        else:
            plan.append(
                f"{old}'s subscribers {', '.join(others)} go on following {old} "
                f"(--all moves them to {new})"
            )
    return plan
