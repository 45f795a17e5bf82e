"""The walks over a cascade: up the provider chain, and over every member that can be found.
Every verb that looks beyond its own node (create-branch, status, drop-node, --copy-node,
--find-copy-node) goes through these, so a walk is bounded and a loop is noticed in one
place. Every location a walk reads from a database is connected to only through
`pg.location.trusted_location` (its keys filtered, this machine's credentials added)."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import psycopg

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, NotInstalledError, UsageError
from londiste_rs.pg.db import connect, describe, first_line
from londiste_rs.pg.location import optional_trusted, trusted_location
from londiste_rs.store import node as store_node
from londiste_rs.store.node import NodeInfo

Conn = psycopg.Connection[Any]

# Nodes a walk visits at most: a cascade is a handful of levels deep; more means a loop.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Upstream:
    """One node up the provider chain: where it is (the connection string used), a connection
    open until the walk moves on, and its node info (None: not a node of the queue; the walk
    ends there)."""

    location: str
    conn: Conn
    info: NodeInfo | None


def walk_up(cfg: JobConfig, location: str | None) -> Generator[Upstream]:
    """The nodes up the provider chain from `location` (a connection string the operator
    gave, or a stored one passed through `trusted_location`), nearest first, to the root.
    Close the generator (contextlib.closing) to close the last connection when stopping
    early."""
    queue = cfg.queue_name
    seen: set[str] = set()
    while location and location not in seen and len(seen) < MAX_DEPTH:
        seen.add(location)
        with connect(location, autocommit=True, what="upstream node") as conn:
            info = store_node.get_node_info(conn, queue)
            yield Upstream(location, conn, info)
        location = None if info is None else optional_trusted(info.provider_location, cfg)


def find_root(cfg: JobConfig, start: str) -> str:
    """The connection string of the root above (or at) the node at `start`."""
    queue = cfg.queue_name
    with contextlib.closing(walk_up(cfg, start)) as chain:
        for up in chain:
            if up.info is None:
                raise NotInstalledError(f"{describe(up.location)} is not a node of queue {queue}")
            if up.info.node_type == "root" or not up.info.provider_location:
                return up.location
    raise UsageError(f"no root found above {describe(start)}; the provider chain loops")


def reach_members(
    cfg: JobConfig, local: Conn, stack: contextlib.ExitStack
) -> tuple[dict[str, Conn], dict[str, str]]:
    """Every member of the cascade that can be found from this node: the member lists of every
    reachable member, followed transitively (a node knows its provider's list as of its
    creation, its provider knows it). Returns (name -> open connection, name -> why not);
    the connections stay open until `stack` closes."""
    queue = cfg.queue_name
    info = store_node.get_node_info(local, queue)
    assert info is not None
    conns: dict[str, Conn] = {info.node_name: local}
    failed: dict[str, str] = {}
    todo = [local]
    while todo:
        for member in store_node.members(todo.pop(), queue):
            if member.name in conns or member.name in failed:
                continue
            try:
                location = trusted_location(member.location, cfg)
                conn = stack.enter_context(
                    connect(location, autocommit=True, what=f"member {member.name}")
                )
                if store_node.get_node_info(conn, queue) is None:
                    raise NotInstalledError(f"{describe(location)} is not a node of {queue}")
            except (LondisteError, psycopg.Error) as e:
                failed[member.name] = first_line(e)
                continue
            conns[member.name] = conn
            todo.append(conn)
    return conns, failed


def member_location(cfg: JobConfig, conn: Conn, info: NodeInfo, node: str) -> str | None:
    """The connection string (`trusted_location`) of `node`: from this node's member list,
    else those of the nodes upstream (a member created after this node is known to the
    root)."""
    queue = cfg.queue_name

    def listed(here: Conn) -> str | None:
        return next((m.location for m in store_node.members(here, queue) if m.name == node), None)

    where = listed(conn)
    if where is None:
        upstream = optional_trusted(info.provider_location, cfg)
        with contextlib.closing(walk_up(cfg, upstream)) as chain:
            for up in chain:
                where = listed(up.conn)
                if where is not None:
                    break
    return optional_trusted(where, cfg)
