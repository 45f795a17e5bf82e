"""Nodes of a cascade: creating root, branch and leaf nodes, pausing, moving a node to another
provider, dropping it.

Every change to a database happens in one transaction. Creating a subscriber touches two
databases: the provider's transaction (location + consumer) stays open until the local one
committed, so a failure on either side leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from londiste_rs.cascade.walk import find_root, reach_members
from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, NotInstalledError, UsageError
from londiste_rs.pg.db import connect, describe, first_line
from londiste_rs.pg.location import for_storing, report_removed, trusted_location
from londiste_rs.pg.locking import LockBusy, with_lock_retries
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store.node import KINDS, NodeInfo, get_node_info, require_node
from londiste_rs.store.schema import install
from londiste_rs.waiting import wait_for

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# How long change-provider waits for a running worker to finish its batch and pause.
PAUSE_ACK_TIMEOUT = 30.0


def _check_new(conn: Conn, cfg: JobConfig, kind: str, name: str) -> bool:
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
    given = location or cfg.public_node_location or cfg.db
    location = for_storing(given)
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        if not _check_new(conn, cfg, "root", name):
            return False
        with conn.transaction():
            install(conn, lock_timeout=cfg.lock_timeout)
            store_node.create_node(conn, cfg.queue_name, "root", name, cfg.consumer_name, location)
            store_node.set_completed(conn, cfg.queue_name, None, None)
    report_removed(given, f"location of node {name}")
    return True


def create_subscriber(
    cfg: JobConfig, kind: str, name: str, location: str | None, provider: str | None
) -> bool:
    """Makes the config's database a branch or leaf following `provider` (a connect string).
    Returns False if it already was that node."""
    provider = provider or cfg.initial_provider_location
    if not provider:
        raise UsageError(f"create-{kind} needs --provider=CONNSTR (the node to follow)")
    given = location or cfg.public_node_location or cfg.db
    location = for_storing(given)
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
        root_location = None if pinfo.node_type == "root" else find_root(cfg, provider)
        if root_location is not None:
            root = stack.enter_context(connect(root_location, autocommit=True, what="root"))
            stack.enter_context(root.transaction())
            store_node.register_location(root, queue, name, location)
        # Provider first, left uncommitted until the local side is in place.
        with prov.transaction():
            store_node.register_location(prov, queue, name, location)
            tick_id = store_node.register_subscriber(prov, queue, name, cfg.consumer_name, None)
            members = store_node.members(prov, queue)
            tick = store_queue.get_tick(prov, queue, tick_id)
            with local.transaction():
                install(local, lock_timeout=cfg.lock_timeout)
                store_node.create_node(local, queue, kind, name, cfg.consumer_name, location,
                                       pinfo.node_name, tick_id)  # fmt: skip
                for m in members:
                    if m.name != name:
                        store_node.register_location(local, queue, m.name, m.location, m.dead)
                if kind == "branch":
                    # The branch's queue follows the provider's tick ids (external ticks).
                    assert tick is not None
                    store_queue.set_queue_config(local, queue, "external_ticker", "true")
                    # (a new queue has a first tick of its own; only a later one is added)
                    if (store_queue.last_tick_id(local, queue) or 0) < tick_id:
                        store_queue.external_tick(local, queue, tick)
    report_removed(given, f"location of node {name}")
    log.info("%s node %s follows %s from tick %s", kind, name, pinfo.node_name, tick_id)
    return True


def location_of(conn: Conn, queue: str, node: str) -> str:
    for m in store_node.members(conn, queue):
        if m.name == node:
            return m.location
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
        store_node.set_paused(conn, cfg.queue_name, paused)
        return info


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
        conns, failed = reach_members(cfg, local, stack)
        if name not in conns and name not in failed:
            raise UsageError(
                f"unknown node {name} in queue {queue}; 'londiste-rs {cfg.path.name} members' "
                "lists the nodes"
            )
        target = conns.get(name)
        subs: set[str] = set()
        if target is not None:
            subs.update(s for s, _ in store_node.subscribers(target, queue))
        for member, conn in conns.items():
            minfo = get_node_info(conn, queue)
            if minfo is not None and minfo.provider_node == name and member != name:
                subs.add(member)
        if subs:
            raise UsageError(
                f"node {name} still has subscribers ({', '.join(sorted(subs))}); move them "
                "with 'change-provider --provider=NODE' or drop them first"
            )
        if target is not None:  # on a root: drops capture triggers (table locks)
            _bounded(target, cfg, lambda: store_node.drop_node(target, queue), f"drop-node {name}")
        else:
            log.warning("node %s not reached (%s); removing it from the others", name, failed[name])
        unreached = {m: why for m, why in failed.items() if m != name}
        for member, conn in conns.items():
            if member == name:
                continue
            try:
                with conn.transaction():
                    store_node.unregister_subscriber(conn, queue, name)
                    store_node.unregister_location(conn, queue, name)
            except psycopg.Error as e:
                unreached[member] = first_line(e)
        log.info("node %s dropped (by %s)", name, info.node_name)
        return unreached


def _bounded(conn: Conn, cfg: JobConfig, work: Callable[[], object], what: str) -> None:
    """`work` in its own transaction, lock waits bounded by the ini's lock_timeout (retried
    a few times, pg/locking.py); one line naming the holders when the locks stay taken."""
    try:
        with_lock_retries(conn, cfg.lock_timeout, work, what)
    except LockBusy as e:
        raise LondisteError(
            f"{what}: tables stayed locked by other transactions ({e.tries} tries of "
            f"lock_timeout {e.timeout:g}s); nothing was changed; end the long transactions "
            "writing the replicated tables, or raise lock_timeout in the ini, and run it again"
        ) from None


def unregister_consumer(cfg: JobConfig, consumer: str, force: bool) -> str:
    """Removes `consumer` from this node's queue (root or branch): an orphan at once; the
    consumer of a live subscriber node only with `force`, together with its subscription
    (its worker stops with an error). Returns what was done, in one line."""
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("root", "branch"), "unregister-consumer")
        found = [c for c in store_node.consumers(conn, queue) if c.name == consumer]
        if not found:
            raise UsageError(
                f"queue {queue} of node {info.node_name} has no consumer {consumer}; 'status' "
                "lists the consumers of every root and branch"
            )
        users = [c.subscriber_node for c in found if c.subscriber_node is not None]
        live = [c.subscriber_node for c in found if c.subscriber_node and not c.node_dead]
        if live and not force:
            raise UsageError(
                f"consumer {consumer} is how subscriber node {live[0]} follows {info.node_name}; "
                f"drop or move that node (drop-node {live[0]}, change-provider), or add --force "
                "to unregister it anyway (its worker then stops with an error)"
            )
        with conn.transaction():
            for node in users:
                store_node.unregister_subscriber(conn, queue, node)
            store_queue.unregister_consumer(conn, queue, consumer)
    if users:
        return f"consumer {consumer} unregistered (subscriber {', '.join(users)} forgotten)"
    return f"consumer {consumer} unregistered"


def change_provider(cfg: JobConfig, new_provider: str) -> str:
    """Moves the local worker to another provider at its current tick (nothing lost or
    repeated: tick ids are the same on every node of the cascade). Returns the new provider."""
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("branch", "leaf"), "change-provider")
        # a connect string given here is the operator's; a node name's stored location is
        # used only as far as trusted_location takes it
        stored = new_provider if "=" in new_provider else location_of(conn, queue, new_provider)
        location = new_provider if stored is new_provider else trusted_location(stored, cfg)
        was_paused = info.paused
        store_node.set_paused(conn, queue, True)
        try:
            if worker_running(cfg):  # let it finish its batch and acknowledge the pause
                with contextlib.suppress(TimeoutError):
                    wait_for("the worker to pause", lambda: _paused(conn, queue),
                             timeout=PAUSE_ACK_TIMEOUT)  # fmt: skip
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
                head = store_queue.last_tick_id(prov, queue)
                if info.last_tick_id is None or head is None or head < info.last_tick_id:
                    raise UsageError(
                        f"{pinfo.node_name} is at tick {head}, behind this node's tick "
                        f"{info.last_tick_id}; wait until it caught up and try again"
                    )
                with prov.transaction():
                    store_node.register_location(
                        prov, queue, info.node_name, info.node_location or cfg.db
                    )
                    store_node.register_subscriber(
                        prov, queue, info.node_name, cfg.consumer_name, info.last_tick_id
                    )
                    with conn.transaction():
                        store_node.register_location(conn, queue, pinfo.node_name, stored)
                        store_node.change_provider(conn, queue, pinfo.node_name)
            report_removed(stored, f"location of node {pinfo.node_name}")
            if info.provider_location:
                try:
                    old_location = trusted_location(info.provider_location, cfg)
                    with connect(old_location, autocommit=True, what="old provider") as old:
                        store_node.unregister_subscriber(old, queue, info.node_name)
                except (LondisteError, psycopg.Error) as e:
                    log.warning("could not unsubscribe from %s: %s", info.provider_node, e)
            return pinfo.node_name
        finally:
            if not was_paused:
                store_node.set_paused(conn, queue, False)


def _paused(conn: Conn, queue: str) -> bool:
    cur = get_node_info(conn, queue)
    return cur is None or cur.uptodate


def wait_for_tick(cfg: JobConfig, upstream: str, timeout: float | None) -> int:
    """Waits until the local node has applied the upstream node's current last tick."""
    with connect(upstream, autocommit=True, what="upstream node") as conn:
        target = store_queue.last_tick_id(conn, cfg.queue_name)
    if target is None:
        return 0
    with connect(cfg.db, autocommit=True, what="node database") as conn:

        def reached() -> bool:
            info = require_node(conn, cfg, ("branch", "leaf"), "wait")
            return info.last_tick_id is not None and info.last_tick_id >= target

        try:
            limit = float("inf") if timeout is None else timeout
            wait_for(f"tick {target}", reached, timeout=limit, interval=0.2)
        except TimeoutError:
            info = require_node(conn, cfg, ("branch", "leaf"), "wait")
            raise LondisteError(
                f"node {info.node_name} is at tick {info.last_tick_id}, not yet at {target} "
                f"after {timeout:.0f}s; is its worker running?"
            ) from None
    return target


def root_location(cfg: JobConfig) -> str:
    return find_root(cfg, cfg.db)


def local_node(cfg: JobConfig, verb: str, kinds: tuple[str, ...] = KINDS) -> NodeInfo:
    """This node (the config's database), or the one-line error of `require_node`."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        return require_node(conn, cfg, kinds, verb)


def list_members(cfg: JobConfig) -> list[store_node.Member]:
    """The members of the cascade this node knows."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        require_node(conn, cfg, verb="members")
        return store_node.members(conn, cfg.queue_name)


def worker_acknowledged(cfg: JobConfig, timeout: float = 10.0) -> bool:
    """After pause/resume: whether a running worker took it up (it sets uptodate) in time."""
    if not worker_running(cfg):
        return False
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        try:
            wait_for("the worker to acknowledge", lambda: _paused(conn, cfg.queue_name),
                     timeout=timeout)  # fmt: skip
        except TimeoutError:
            return False
    return True
