"""`status`: every node of the cascade, walked down from the root, with its lag, position,
errors and table counts, and on a root or branch every consumer of its queue (orphans too:
a consumer no subscriber node uses holds back rotation). A node that cannot be reached is
shown as such; the walk goes on.

Per node also (issue 16): whether its worker is alive (its heartbeat), when it last applied,
the age of its queue's last tick and the events waiting, and `problems`: what needs attention,
one line each with the likely cause and fix (cascade/health.py); `status` exits non-zero when
any node has one."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from londiste_rs.cascade import health
from londiste_rs.cascade.walk import find_root
from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, NotInstalledError
from londiste_rs.pg.db import connect, describe, first_line
from londiste_rs.pg.location import for_storing, trusted_location
from londiste_rs.progress import Progress
from londiste_rs.store import health as store_health
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store import takeover as store_takeover
from londiste_rs.store.node import get_node_info
from londiste_rs.tables.verbs import copy_progress


@dataclass(frozen=True)
class NodeStatus:
    """One node as `status` shows it."""

    name: str
    node_type: str
    location: str
    provider: str | None
    last_tick_id: int | None
    lag_seconds: float | None
    lag_ticks: int | None
    paused: bool
    uptodate: bool
    error: str | None
    tables_ok: int
    tables_half: int
    unreachable: str | None = None
    tables_failed: int = 0  # of tables_half: their initial copy failed
    consumers: tuple[store_node.Consumer, ...] = ()  # of its queue (root, branch)
    # issue 16: None when it cannot be told (unreachable, or a schema older than heartbeats)
    worker_alive: bool | None = None
    worker: store_health.Heartbeat | None = None  # its last heartbeat
    last_apply_seconds: float | None = None  # since it last applied (a root: recorded a tick)
    error_seconds: float | None = None  # since `error` was recorded
    ticks: store_health.QueueTicks | None = None  # its queue's (root, branch)
    problems: tuple[str, ...] = ()  # what needs attention, one line each with its fix
    # a takeover stopped half-way (its step, what to run), or None
    takeover: str | None = None
    # the note its capture refuses the application's writes with (fenced), or None
    fence: str | None = None
    # its tables' initial copies not finished yet (figures, rate, ETA), for `status --watch`
    copies: tuple[Progress, ...] = ()


def _problems(
    info: store_node.NodeInfo,
    known: bool,
    beat: store_health.Heartbeat | None,
    ticks: store_health.QueueTicks | None,
    failed: int,
    consumers: tuple[store_node.Consumer, ...],
    error_seconds: float | None,
    start: str,
) -> tuple[str, ...]:
    found = [
        health.worker_finding(beat, start) if known else None,
        health.ticker_finding(ticks),
    ]
    if info.cur_error:
        when = "" if error_seconds is None else f", {health.ago(error_seconds)} ago"
        found.append(f"the worker's last error{when} (it tries again until the cause is "
                     f"fixed; its log has more): {info.cur_error}")  # fmt: skip
    if failed:
        found.append(f"{failed} table copies failed (see 'tables'; fix, then resync)")
    found += [
        f"consumer {c.name} is read by no subscriber node and holds back the rotation of the "
        f"event tables: drop it with 'unregister-consumer {c.name}' (with this node's config)"
        for c in consumers
        if c.subscriber_node is None
    ]
    return tuple(f for f in found if f)


def cascade_status(cfg: JobConfig) -> list[tuple[int, NodeStatus]]:
    """Every node reachable from the root, depth first, with its depth in the tree."""
    queue = cfg.queue_name
    root = find_root(cfg, cfg.db)
    out: list[tuple[int, NodeStatus]] = []
    root_tick: int | None = None
    seen: set[str] = set()  # during a takeover the old root and the new one list each other

    def visit(where: str, location: str, name: str, provider: str | None, depth: int) -> None:
        """`where`: the connection string used; `location`: the one shown (no password)."""
        nonlocal root_tick
        try:
            with connect(where, autocommit=True, what=f"node {name}") as conn:
                info = get_node_info(conn, queue)
                if info is None:
                    raise NotInstalledError("not a node of this queue")
                if info.node_type == "root":
                    root_tick = store_queue.last_tick_id(conn, queue)
                lag = store_node.lag_seconds(conn, queue)
                ok, half, failed = store_tables.state_counts(conn, queue)
                subs = store_node.subscribers(conn, queue)
                consumers = tuple(store_node.consumers(conn, queue))
                known = store_health.has_heartbeats(conn)
                beat = store_health.heartbeat(conn, queue) if known else None
                qticks = store_health.queue_ticks(conn, queue)
                apply_age, error_age = store_health.local_ages(conn, queue)
                takeover, fence = _takeover(conn, queue)
                copies = tuple(
                    p
                    for s in store_tables.table_states(conn, queue)
                    if s.merge_state.wants_copy and (p := copy_progress(s)) is not None
                )
        except (LondisteError, psycopg.Error) as e:
            why = first_line(e)
            out.append((depth, NodeStatus(name, "?", location, provider, None, None, None,
                                          False, True, None, 0, 0, why,
                                          problems=(f"cannot be reached: {why}",))))  # fmt: skip
            return
        ini = cfg.path.name if describe(where) == describe(cfg.db) else f"<{name}'s job file>"
        start = f"'londiste-rs {ini} -d worker'"
        ticks = (
            None
            if root_tick is None or info.last_tick_id is None
            else root_tick - info.last_tick_id
        )
        out.append(
            (
                depth,
                NodeStatus(
                    name=info.node_name,
                    node_type=info.node_type,
                    location=location,
                    provider=info.provider_node,
                    last_tick_id=info.last_tick_id,
                    lag_seconds=lag,
                    lag_ticks=ticks,
                    paused=info.paused,
                    uptodate=info.uptodate,
                    error=info.cur_error,
                    tables_ok=ok,
                    tables_half=half,
                    tables_failed=failed,
                    consumers=consumers,
                    worker_alive=health.worker_alive(beat) if known else None,
                    worker=beat,
                    last_apply_seconds=apply_age,
                    error_seconds=error_age,
                    ticks=qticks,
                    problems=_problems(
                        info, known, beat, qticks, failed, consumers, error_age, start
                    )
                    + ((f"a takeover stopped half-way: {takeover}",) if takeover else ()),
                    takeover=takeover,
                    fence=fence,
                    copies=copies,
                ),
            )
        )
        seen.add(info.node_name)
        for sub_name, sub_location in subs:
            if sub_name in seen:
                continue
            if sub_location is not None:
                try:
                    sub_where = trusted_location(sub_location, cfg)
                except LondisteError as e:
                    out.append((depth + 1, NodeStatus(sub_name, "?", sub_location,
                                info.node_name, None, None, None, False, True, None, 0, 0,
                                str(e), problems=(f"cannot be reached: {e}",))))  # fmt: skip
                    continue
                visit(sub_where, sub_location, sub_name, info.node_name, depth + 1)

    with connect(root, autocommit=True, what="root") as conn:
        info = get_node_info(conn, queue)
        assert info is not None
    visit(root, for_storing(root), info.node_name, None, 0)
    return out


def _takeover(conn: store_node.Conn, queue: str) -> tuple[str | None, str | None]:
    """(what a takeover stopped half-way needs, the fence note) of the node, for status."""
    if not store_takeover.supported(conn):
        return None, None
    fence = store_takeover.queue_fence(conn, queue)
    note = fence.note or "fenced" if fence is not None and fence.fenced else None
    st = store_takeover.get_state(conn, queue)
    if st is None or st.finished:
        return None, note
    verb = "takeover --dead-root" if st.mode == "failover" else "takeover"
    if st.mode == "resurrect":
        todo = f"run 'resurrect' with {st.old_node}'s config to complete it"
    elif st.step in ("promoted", "demoted") or st.mode == "branch":
        todo = f"run '{verb} {st.old_node}' with {st.new_node}'s config to complete it"
    else:
        todo = (
            f"run '{verb} {st.old_node}' with {st.new_node}'s config to complete it, or add "
            "--abort to cancel it"
        )
    side = "becoming the root" if st.node_role == "new" else "being taken over"
    what = (
        f"{'takeover of branch' if st.mode == 'branch' else st.mode} of {st.old_node} by "
        f"{st.new_node} is at step {st.step} (this node is "
        f"{side}; since {st.step_at:%Y-%m-%d %H:%M:%S}); if its command stopped, {todo}"
    )
    return what, note
