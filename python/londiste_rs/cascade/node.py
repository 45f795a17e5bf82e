"""Nodes of a cascade: creating root, branch and leaf nodes, reading a node's state, walking
the cascade, pausing, moving a node to another provider, dropping it.

Every change to a database happens in one transaction. Creating a subscriber touches two
databases: the provider's transaction (location + consumer) stays open until the local one
committed, so a failure on either side leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, NotInstalledError, UsageError
from londiste_rs.pg.db import connect, describe, first_line
from londiste_rs.store.schema import install, installed_version

log = logging.getLogger(__name__)

KINDS = ("root", "branch", "leaf")


@dataclass(frozen=True)
class NodeInfo:
    """This database's node of a queue and its worker's state (`get_node_info`)."""

    node_type: str
    node_name: str
    worker_name: str
    node_location: str | None
    provider_node: str | None
    provider_location: str | None
    last_tick_id: int | None
    last_tick_time: datetime | None
    last_apply_time: datetime | None
    paused: bool
    uptodate: bool
    cur_error: str | None
    error_time: datetime | None


def get_node_info(conn: psycopg.Connection[Any], queue: str) -> NodeInfo | None:
    """The node of `queue` in this database, or None (also when nothing is installed)."""
    if installed_version(conn) is None:
        return None
    with conn.cursor(row_factory=class_row(NodeInfo)) as cur:
        return cur.execute("select * from londiste_rs.get_node_info(%s)", [queue]).fetchone()


def require_node(
    conn: psycopg.Connection[Any], cfg: JobConfig, kinds: tuple[str, ...] = KINDS, verb: str = ""
) -> NodeInfo:
    """The local node, or a one-line error saying how to create it / which kind `verb` needs."""
    info = get_node_info(conn, cfg.queue_name)
    if info is None:
        raise NotInstalledError(
            f"{describe(cfg.db)} is not a node of queue {cfg.queue_name}; create it first with "
            f"'londiste-rs {cfg.path.name} create-root|create-branch|create-leaf NAME ...'"
        )
    if info.node_type not in kinds:
        raise UsageError(
            f"'{verb}' needs a {' or '.join(kinds)} node, but {info.node_name} is a "
            f"{info.node_type} of queue {cfg.queue_name}; run it with another node's config"
        )
    return info


def _check_new(conn: psycopg.Connection[Any], cfg: JobConfig, kind: str, name: str) -> bool:
    """False when this exact node exists already (create-* is then a no-op); raises when a
    different node of the queue is there."""
    info = get_node_info(conn, cfg.queue_name)
    if info is None:
        return True
    if info.node_type == kind and info.node_name == name:
        return False
    raise UsageError(
        f"{describe(cfg.db)} already is {info.node_type} node {info.node_name} of queue "
        f"{cfg.queue_name}; drop it first with 'londiste-rs {cfg.path.name} drop-node "
        f"{info.node_name}' or use another database"
    )


def create_root(cfg: JobConfig, name: str, location: str | None) -> bool:
    """Makes the config's database the root of its queue. Returns False if it already was."""
    location = location or cfg.public_node_location or cfg.db
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        if not _check_new(conn, cfg, "root", name):
            return False
        with conn.transaction():
            install(conn)
            conn.execute(
                "select londiste_rs.create_node(%s, 'root', %s, %s, %s)",
                [cfg.queue_name, name, cfg.consumer_name, location],
            )
            conn.execute(
                "select londiste_rs.set_consumer_completed(%s, null, null)", [cfg.queue_name]
            )
    return True


def create_subscriber(
    cfg: JobConfig, kind: str, name: str, location: str | None, provider: str | None
) -> bool:
    """Makes the config's database a branch or leaf following `provider` (a connect string).
    Returns False if it already was that node."""
    provider = provider or cfg.initial_provider_location
    if not provider:
        raise UsageError(f"create-{kind} needs --provider=CONNSTR (the node to follow)")
    location = location or cfg.public_node_location or cfg.db
    queue = cfg.queue_name
    with contextlib.ExitStack() as stack:
        local = stack.enter_context(connect(cfg.db, autocommit=True, what="node database"))
        prov = stack.enter_context(connect(provider, autocommit=True, what="provider"))
        pinfo = get_node_info(prov, queue)
        if pinfo is None:
            raise NotInstalledError(
                f"provider {describe(provider)} is not a node of queue {queue}; "
                "create the root there first (create-root), or fix --provider"
            )
        if pinfo.node_type == "leaf":
            raise UsageError(
                f"provider {pinfo.node_name} is a leaf and cannot have subscribers; "
                "give a root or branch as --provider"
            )
        if not _check_new(local, cfg, kind, name):
            return False
        # The root learns every member (as londiste3's create-branch/-leaf does), so drop-node
        # and takeover find them; its transaction commits last, after the provider's.
        root_location = None if pinfo.node_type == "root" else _find_root(cfg, provider)
        if root_location is not None:
            root = stack.enter_context(connect(root_location, autocommit=True, what="root"))
            stack.enter_context(root.transaction())
            root.execute(
                "select londiste_rs.register_location(%s, %s, %s)", [queue, name, location]
            )
        # Provider first, left uncommitted until the local side is in place.
        with prov.transaction():
            prov.execute(
                "select londiste_rs.register_location(%s, %s, %s)", [queue, name, location]
            )
            row = prov.execute(
                "select londiste_rs.register_subscriber(%s, %s, %s, null)",
                [queue, name, cfg.consumer_name],
            ).fetchone()
            assert row is not None
            tick = int(row[0])
            members = prov.execute(
                "select * from londiste_rs.get_queue_locations(%s)", [queue]
            ).fetchall()
            tick_row = prov.execute(
                "select tick_time, tick_event_seq from londiste_rs.tick t"
                " join londiste_rs.queue q on q.queue_id = t.tick_queue"
                " where q.queue_name = %s and t.tick_id = %s",
                [queue, tick],
            ).fetchone()
            with local.transaction():
                install(local)
                local.execute(
                    "select londiste_rs.create_node(%s, %s, %s, %s, %s, %s, %s)",
                    [queue, kind, name, cfg.consumer_name, location, pinfo.node_name, tick],
                )
                for member, member_location, dead in members:
                    if member != name:
                        local.execute(
                            "select londiste_rs.register_location(%s, %s, %s, %s)",
                            [queue, member, member_location, dead],
                        )
                if kind == "branch":
                    # The branch's queue follows the provider's tick ids (external ticks).
                    assert tick_row is not None
                    local.execute(
                        "select londiste_rs.set_queue_config(%s, 'external_ticker', 'true')",
                        [queue],
                    )
                    # (a new queue has a first tick of its own; only a later one is added)
                    if (provider_tick(local, queue) or 0) < tick:
                        local.execute(
                            "select londiste_rs.ticker(%s, %s, %s, %s)",
                            [queue, tick, tick_row[0], tick_row[1]],
                        )
    log.info("%s node %s follows %s from tick %s", kind, name, pinfo.node_name, tick)
    return True


def members(conn: psycopg.Connection[Any], queue: str) -> list[tuple[str, str, bool]]:
    return [
        (str(r[0]), str(r[1]), bool(r[2]))
        for r in conn.execute(
            "select * from londiste_rs.get_queue_locations(%s)", [queue]
        ).fetchall()
    ]


def location_of(conn: psycopg.Connection[Any], queue: str, node: str) -> str:
    for name, location, _dead in members(conn, queue):
        if name == node:
            return location
    raise UsageError(
        f"unknown node {node} in queue {queue}; 'londiste-rs CONFIG members' lists the nodes"
    )


def worker_running(cfg: JobConfig) -> bool:
    """Whether this node's worker runs as a daemon here (its pidfile names a live process)."""
    from londiste_rs.daemon import running_pid

    return cfg.pidfile is not None and running_pid(cfg.pidfile) is not None


def set_paused(cfg: JobConfig, paused: bool) -> NodeInfo:
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("branch", "leaf"), "pause" if paused else "resume")
        conn.execute("select londiste_rs.set_consumer_paused(%s, %s)", [cfg.queue_name, paused])
        return info


def _reach_members(
    cfg: JobConfig, local: psycopg.Connection[Any], stack: contextlib.ExitStack
) -> tuple[dict[str, psycopg.Connection[Any]], dict[str, str]]:
    """Every member of the cascade that can be found from this node: the member lists of every
    reachable member, followed transitively (a node knows its provider's list as of its
    creation, its provider knows it). Returns (name -> open connection, name -> why not)."""
    queue = cfg.queue_name
    info = get_node_info(local, queue)
    assert info is not None
    conns: dict[str, psycopg.Connection[Any]] = {info.node_name: local}
    failed: dict[str, str] = {}
    todo = [local]
    while todo:
        for member, location, _dead in members(todo.pop(), queue):
            if member in conns or member in failed:
                continue
            try:
                conn = stack.enter_context(
                    connect(location, autocommit=True, what=f"member {member}")
                )
                if get_node_info(conn, queue) is None:
                    raise NotInstalledError(f"{describe(location)} is not a node of {queue}")
            except (LondisteError, psycopg.Error) as e:
                failed[member] = first_line(e)
                continue
            conns[member] = conn
            todo.append(conn)
    return conns, failed


def drop_node(cfg: JobConfig, name: str) -> dict[str, str]:
    """Drops node `name` of the config's queue; run with any member's config (the node's own,
    or another one's when the node is gone). Refuses while the node has subscribers. Drops it
    in its own database (node rows and, on a root or branch, its queue and capture triggers),
    then unsubscribes it and removes it from the location list of every member reachable
    (reference §1.2). Returns the members that could not be reached: name -> why."""
    queue = cfg.queue_name
    with contextlib.ExitStack() as stack:
        local = stack.enter_context(connect(cfg.db, autocommit=True, what="node database"))
        info = require_node(local, cfg, KINDS, "drop-node")
        conns, failed = _reach_members(cfg, local, stack)
        if name not in conns and name not in failed:
            raise UsageError(
                f"unknown node {name} in queue {queue}; 'londiste-rs {cfg.path.name} members' "
                "lists the nodes"
            )
        target = conns.get(name)
        subs: set[str] = set()
        if target is not None:
            subs.update(
                str(r[0])
                for r in target.execute(
                    "select subscriber_node from londiste_rs.subscriber_info where queue_name = %s",
                    [queue],
                ).fetchall()
            )
        for member, conn in conns.items():
            minfo = get_node_info(conn, queue)
            if minfo is not None and minfo.provider_node == name and member != name:
                subs.add(member)
        if subs:
            raise UsageError(
                f"node {name} still has subscribers ({', '.join(sorted(subs))}); move them "
                "with 'change-provider --provider=NODE' or drop them first"
            )
        if target is not None:
            with target.transaction():
                target.execute("select londiste_rs.drop_node(%s)", [queue])
        else:
            log.warning("node %s not reached (%s); removing it from the others", name, failed[name])
        unreached = {m: why for m, why in failed.items() if m != name}
        for member, conn in conns.items():
            if member == name:
                continue
            try:
                with conn.transaction():
                    conn.execute("select londiste_rs.unregister_subscriber(%s, %s)", [queue, name])
                    conn.execute("select londiste_rs.unregister_location(%s, %s)", [queue, name])
            except psycopg.Error as e:
                unreached[member] = first_line(e)
        log.info("node %s dropped (by %s)", name, info.node_name)
        return unreached


def provider_tick(conn: psycopg.Connection[Any], queue: str) -> int | None:
    """The last tick of the queue in this (root or branch) database."""
    row = conn.execute(
        "select max(t.tick_id) from londiste_rs.tick t join londiste_rs.queue q"
        " on q.queue_id = t.tick_queue where q.queue_name = %s",
        [queue],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def describe_error(e: BaseException) -> str:
    return first_line(e)


# -- the cascade ------------------------------------------------------------------------------
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


def _find_root(cfg: JobConfig, start: str) -> str:
    location = start
    for _ in range(32):
        with connect(location, autocommit=True, what="node") as conn:
            info = get_node_info(conn, cfg.queue_name)
            if info is None:
                raise NotInstalledError(
                    f"{describe(location)} is not a node of queue {cfg.queue_name}"
                )
            if info.node_type == "root" or not info.provider_location:
                return location
            location = info.provider_location
    raise UsageError(f"no root found above {describe(start)}; the provider chain loops")


def root_location(cfg: JobConfig) -> str:
    return _find_root(cfg, cfg.db)


def cascade_status(cfg: JobConfig) -> list[tuple[int, NodeStatus]]:
    """Every node reachable from the root, depth first, with its depth in the tree."""
    root = _find_root(cfg, cfg.db)
    out: list[tuple[int, NodeStatus]] = []
    root_tick: int | None = None

    def visit(location: str, name: str, provider: str | None, depth: int) -> None:
        nonlocal root_tick
        try:
            with connect(location, autocommit=True, what=f"node {name}") as conn:
                info = get_node_info(conn, cfg.queue_name)
                if info is None:
                    raise NotInstalledError("not a node of this queue")
                if info.node_type == "root":
                    root_tick = provider_tick(conn, cfg.queue_name)
                lag = conn.execute(
                    "select extract(epoch from now() - last_tick_time)::float8"
                    " from londiste_rs.local_state where queue_name = %s",
                    [cfg.queue_name],
                ).fetchone()
                counts = conn.execute(
                    "select count(*) filter (where merge_state = 'ok'),"
                    " count(*) filter (where merge_state is distinct from 'ok'),"
                    " count(*) filter (where merge_state = 'failed')"
                    " from londiste_rs.table_info where queue_name = %s and local",
                    [cfg.queue_name],
                ).fetchone()
                subs = conn.execute(
                    "select s.subscriber_node, l.node_location from londiste_rs.subscriber_info s"
                    " join londiste_rs.node_location l on l.queue_name = s.queue_name"
                    " and l.node_name = s.subscriber_node where s.queue_name = %s"
                    " order by 1",
                    [cfg.queue_name],
                ).fetchall()
        except (LondisteError, psycopg.Error) as e:
            out.append((depth, NodeStatus(name, "?", location, provider, None, None, None,
                                          False, True, None, 0, 0, first_line(e))))  # fmt: skip
            return
        assert counts is not None
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
                    lag_seconds=None if lag is None or lag[0] is None else float(lag[0]),
                    lag_ticks=ticks,
                    paused=info.paused,
                    uptodate=info.uptodate,
                    error=info.cur_error,
                    tables_ok=int(counts[0]),
                    tables_half=int(counts[1]),
                    tables_failed=int(counts[2]),
                ),
            )
        )
        for sub_name, sub_location in subs:
            visit(str(sub_location), str(sub_name), info.node_name, depth + 1)

    with connect(root, autocommit=True, what="root") as conn:
        info = get_node_info(conn, cfg.queue_name)
        assert info is not None
    visit(root, info.node_name, None, 0)
    return out


def wait_for_tick(cfg: JobConfig, upstream: str, timeout: float | None) -> int:
    """Waits until the local node has applied the upstream node's current last tick."""
    import time

    with connect(upstream, autocommit=True, what="upstream node") as conn:
        target = provider_tick(conn, cfg.queue_name)
    if target is None:
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        while True:
            info = require_node(conn, cfg, ("branch", "leaf"), "wait")
            if info.last_tick_id is not None and info.last_tick_id >= target:
                return target
            if deadline is not None and time.monotonic() > deadline:
                raise LondisteError(
                    f"node {info.node_name} is at tick {info.last_tick_id}, not yet at {target} "
                    f"after {timeout:.0f}s; is its worker running?"
                )
            time.sleep(0.2)


def change_provider(cfg: JobConfig, new_provider: str) -> str:
    """Moves the local worker to another provider at its current tick (nothing lost or
    repeated: tick ids are the same on every node of the cascade). Returns the new provider."""
    import time

    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("branch", "leaf"), "change-provider")
        location = new_provider if "=" in new_provider else location_of(conn, queue, new_provider)
        was_paused = info.paused
        conn.execute("select londiste_rs.set_consumer_paused(%s, true)", [queue])
        try:
            # let a running worker finish its batch and acknowledge the pause
            deadline = time.monotonic() + (30 if worker_running(cfg) else 0)
            while time.monotonic() < deadline:
                cur = get_node_info(conn, queue)
                if cur is None or cur.uptodate:
                    break
                time.sleep(0.1)
            info = require_node(conn, cfg, ("branch", "leaf"), "change-provider")
            with connect(location, autocommit=True, what="new provider") as prov:
                pinfo = get_node_info(prov, queue)
                if pinfo is None or pinfo.node_type == "leaf":
                    raise UsageError(
                        f"{new_provider} is not a root or branch of queue {queue}; "
                        "give a root or branch node"
                    )
                if pinfo.node_name == info.provider_node:
                    return pinfo.node_name
                head = provider_tick(prov, queue)
                if info.last_tick_id is None or head is None or head < info.last_tick_id:
                    raise UsageError(
                        f"{pinfo.node_name} is at tick {head}, behind this node's tick "
                        f"{info.last_tick_id}; wait until it caught up and try again"
                    )
                with prov.transaction():
                    prov.execute(
                        "select londiste_rs.register_location(%s, %s, %s)",
                        [queue, info.node_name, info.node_location or cfg.db],
                    )
                    prov.execute(
                        "select londiste_rs.register_subscriber(%s, %s, %s, %s)",
                        [queue, info.node_name, cfg.consumer_name, info.last_tick_id],
                    )
                    with conn.transaction():
                        conn.execute(
                            "select londiste_rs.register_location(%s, %s, %s)",
                            [queue, pinfo.node_name, location],
                        )
                        conn.execute(
                            "select londiste_rs.change_consumer_provider(%s, %s)",
                            [queue, pinfo.node_name],
                        )
            if info.provider_location:
                try:
                    with connect(
                        info.provider_location, autocommit=True, what="old provider"
                    ) as old:
                        old.execute(
                            "select londiste_rs.unregister_subscriber(%s, %s)",
                            [queue, info.node_name],
                        )
                except (LondisteError, psycopg.Error) as e:
                    log.warning("could not unsubscribe from %s: %s", info.provider_node, e)
            return pinfo.node_name
        finally:
            if not was_paused:
                conn.execute("select londiste_rs.set_consumer_paused(%s, false)", [queue])
