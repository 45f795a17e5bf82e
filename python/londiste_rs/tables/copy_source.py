"""Initial copies read from another node of the cascade (`--copy-node`,
`--find-copy-node`) instead of the provider: finding the node, checking it can give the copy,
and the copy round's job for it (docs/internals.md §6).

Such a copy holds the node's rows as of its last applied tick T; the events of ticks <= T are
then skipped through the provider's tick T snapshot. A copy node behind this node holds
replay (this node must not apply past what the copy will hold) for at most COPY_NODE_WAIT.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from londiste_rs.cascade.walk import member_location, walk_up
from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, TableError, UsageError
from londiste_rs.pg.db import connect, describe
from londiste_rs.pg.names import TableName
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import NodeInfo, get_node_info
from londiste_rs.store.tables import MergeState
from londiste_rs.tables.common import provider_location
from londiste_rs.tables.initial_copy import SourceNotReady

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# How long a copy from a node behind this one holds this node's replay, waiting for that node
# to catch up, before the table is marked failed.
COPY_NODE_WAIT = 60.0


@dataclass(frozen=True)
class Holder:
    """The nearest node up the provider chain that replicates a table."""

    node: str
    node_type: str
    location: str


def nearest_holders(cfg: JobConfig, info: NodeInfo) -> dict[str, Holder]:
    """For every table replicated by the provider or a node above it (up to the root): the
    nearest such node (`--find-copy-node`)."""
    found: dict[str, Holder] = {}
    with contextlib.closing(walk_up(cfg, provider_location(cfg, info))) as chain:
        for up in chain:
            if up.info is None:
                break
            for t in store_tables.table_names(up.conn, cfg.queue_name):
                found.setdefault(t, Holder(up.info.node_name, up.info.node_type, up.location))
    return found


def found_copy_node(info: NodeInfo, table: str, upstream: dict[str, Holder]) -> str | None:
    """The --copy-node `--find-copy-node` chooses for `table`: None for the provider, else the
    nearest branch or leaf above it that has the table. Refuses (one line) when no node or
    only a root further up has it: a root's rows are not as of a tick of this queue."""
    holder = upstream.get(table)
    if holder is None:
        raise TableError(
            f"table {table} is not replicated by provider {info.provider_node} or any node "
            "above it; add it on the root first"
        )
    if holder.node == info.provider_node:
        return None
    if holder.node_type == "root":
        raise TableError(
            f"table {table} is replicated only by the root {holder.node}, which can give the "
            f"initial copy only to its own subscribers; add it on {info.provider_node} first"
        )
    return holder.node


def check_copy_node(
    cfg: JobConfig, conn: Conn, info: NodeInfo, node: str, tables: list[str]
) -> None:
    """Refuses (one line naming the fix) a --copy-node that cannot give these tables' copy:
    this node, an unknown node, a root that is not the provider (its rows are not as of a
    tick), a node that does not have every table 'ok'."""
    if node == info.node_name:
        raise UsageError(f"--copy-node={node} is this node; name another node of the cascade")
    if node == info.provider_node:
        return
    location = member_location(cfg, conn, info, node)
    if location is None:
        raise UsageError(
            f"unknown node {node} in queue {cfg.queue_name}; "
            f"'londiste-rs {cfg.path.name} members' lists the nodes"
        )
    with connect(location, autocommit=True, what=f"copy node {node}") as xconn:
        xinfo = get_node_info(xconn, cfg.queue_name)
        if xinfo is None:
            raise UsageError(
                f"copy node {node} ({describe(location)}) is not a node of queue "
                f"{cfg.queue_name}; choose another --copy-node"
            )
        if xinfo.node_type == "root":
            raise UsageError(
                f"--copy-node={node} is the root, whose rows are not as of one tick; copy from "
                f"the provider {info.provider_node} (leave out --copy-node) or from a branch "
                "or leaf"
            )
        there = store_tables.source_tables(xconn, cfg.queue_name, tables)
    for t in tables:
        src = there.get(t)
        if src is None or src.merge_state is not MergeState.OK:
            state = "not replicated" if src is None else src.merge_state.value
            raise TableError(
                f"table {t} is {state} on node {node}; add it there and wait for its copy "
                "(wait-sync), or choose another --copy-node"
            )


@dataclass
class CopyWaits:
    """The worker's memory of copies waiting for their copy node: since when each has been
    holding replay (the node is behind this one), and which waits were logged."""

    behind: dict[str, float] = field(default_factory=dict)
    noted: set[str] = field(default_factory=set)

    def note(self, table: str, message: str) -> None:
        if table not in self.noted:
            self.noted.add(table)
            log.info("%s", message)

    def done(self, table: str) -> None:
        self.behind.pop(table, None)
        self.noted.discard(table)


def at_tick(queue: str, node: str, since: int, names: dict[str, str]) -> Any:
    """The check run in a copy node's snapshot transaction: every table 'ok' and as of a tick
    (no copy snapshot of its own in use), the node at or past this node's tick `since`;
    returns the node's last tick, what the copied rows are as of."""

    def check(conn: Conn, source: TableName) -> int:
        table = names[str(source)]
        there = get_node_info(conn, queue)
        tick = None if there is None else there.last_tick_id
        src = store_tables.source_tables(conn, queue, [table]).get(table)
        if tick is None or src is None or src.merge_state is not MergeState.OK:
            raise SourceNotReady(f"{table} is not ok on node {node}")
        if src.snapshot_pending:
            raise SourceNotReady(f"{table} on node {node} is not as of one tick yet")
        if tick < since:
            raise SourceNotReady(f"node {node} is at tick {tick}, behind tick {since}")
        return tick

    return check


@dataclass
class CopyJob:
    """Tables copied from one source: the provider, or a copy node."""

    dsn: str
    label: str
    tables: list[str]
    sources: dict[str, str]  # global name -> the name on the source (its dest_table)
    node: str | None = None  # the copy node


def copy_node_job(
    cfg: JobConfig,
    local: Conn,
    info: NodeInfo,
    node: str,
    tables: list[str],
    waits: CopyWaits,
    failed: dict[str, str],
) -> tuple[CopyJob | None, bool]:
    """Those of `tables` the copy node `node` can give now, and whether replay must wait for
    it (it is behind this node: once this node applies further, that copy would miss events)."""
    queue = cfg.queue_name
    since = info.last_tick_id or 0
    location = member_location(cfg, local, info, node)
    if location is None:
        for t in tables:
            failed[t] = (
                f"copy node {node} is not a known node of queue {queue}; "
                f"resync {t} --copy-node=ANOTHER (or ={info.provider_node}, the provider)"
            )
        return None, False
    try:
        with connect(location, autocommit=True, what=f"copy node {node}") as xconn:
            xinfo = get_node_info(xconn, queue)
            there = store_tables.source_tables(xconn, queue, tables)
    except LondisteError as e:
        for t in tables:
            waits.note(t, f"{t}: copy node {node} not reachable ({e}); its copy waits")
        return None, False
    if xinfo is None or xinfo.node_type == "root":
        why = "not a node of the queue" if xinfo is None else "the root (not as of a tick)"
        for t in tables:
            failed[t] = (
                f"copy node {node} is {why}; resync {t} --copy-node=ANOTHER "
                f"(or ={info.provider_node}, the provider)"
            )
        return None, False
    ready: list[str] = []
    hold = False
    for t in tables:
        src = there.get(t)
        if src is None or src.merge_state is not MergeState.OK or src.snapshot_pending:
            state = "not replicated" if src is None else src.merge_state.value
            if src is not None and src.snapshot_pending:
                state = "ok, but its own copy is not as of one tick yet"
            waits.note(t, f"{t}: copy waits for node {node}, where it is {state}")
            continue
        if (xinfo.last_tick_id or 0) < since:
            started = waits.behind.setdefault(t, time.monotonic())
            if time.monotonic() - started > COPY_NODE_WAIT:
                failed[t] = (
                    f"copy node {node} stayed at tick {xinfo.last_tick_id}, behind this node's "
                    f"tick {since}, for {COPY_NODE_WAIT:g}s; start its worker and resync {t}, "
                    f"or resync {t} --copy-node=ANOTHER (or ={info.provider_node})"
                )
                continue
            waits.note(
                t,
                f"{t}: copy node {node} is at tick {xinfo.last_tick_id}, behind this node's "
                f"tick {since}; replay waits for it (up to {COPY_NODE_WAIT:g}s)",
            )
            hold = True
            continue
        waits.behind.pop(t, None)
        ready.append(t)
    sources = {t: there[t].dest_table or t for t in ready}
    job = CopyJob(location, f"node {node}", ready, sources, node) if ready else None
    return job, hold
