"""The tables and sequences a node replicates, and the initial copy the worker runs.

Tables, and their `merge_state` (londiste3's names):

    root:         add-table -> capture attached, 'ok'
    branch/leaf:  add-table -> NULL (needs its copy), or 'ok' with --expect-sync
                  worker    -> 'in-copy' -> 'ok' + custom_snapshot | 'failed' + copy_error
                  resync    -> NULL again

The worker copies between two batches (`copy_pending`): every table that needs a copy and that
its provider has 'ok', `parallel_copies` tables at a time, big tables in ctid ranges read in
parallel under one exported snapshot (`initial_copy.copy_tables`), while writes go on on the
provider. Replay waits for the copies; so every copy's snapshot is later than the tick the
node has applied, and the first batch after it continues from that tick. Events of
transactions visible in a table's copy snapshot are already in its rows: the decoder skips them
(`custom_snapshot`, reference §3.4), so the table joins the event stream with nothing missed
and nothing applied twice. With `copy_node` in its attributes (add-table/resync
--copy-node) a table is copied from that node of the cascade instead, as of that node's last
tick (docs/internals.md §6). One failing table is marked 'failed' with its error; the others
go on. The copy's figures (rows, bytes, estimate, time) are written to the table's row while
it runs, for `tables` and `status`.

Tables are copied largest first. Foreign keys to and from the copied tables, their plain
indexes and (into a table the copy empties) their keys are dropped before the copies
(TRUNCATE refuses a table another table references, and indexes build faster after the data)
and recorded in `dropped_ddl` in the same transaction, so a crash in between is repaired by
the next copy. As soon as a table's rows are in, its copy thread rebuilds its keys and
indexes (beside the other copies) and marks it 'ok'; a foreign key between two copied tables
is restored, and validated, by the later of the two: until then it is recorded with the one
still copying, never with a table that is 'ok'. What cannot be restored (the copied rows
break a key) stays recorded and fails its table. The copied tables' ANALYZE follows the
round. add-table and resync NOTIFY the worker, which LISTENs while idle, so a copy starts at
once rather than after loop_delay.

Sequences: a subscriber's worker reads its registered sequences from its provider every few
seconds and moves the local ones forward only (`sequences.sync`); a branch's own subscribers
read them from the branch. `sync-seqs --exact` sets the provider's exact values, for a
cut-over.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import psycopg
from psycopg import sql

from londiste_rs.cascade.node import NodeInfo, get_node_info, members, require_node
from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, TableError, UsageError
from londiste_rs.pg import ddl
from londiste_rs.pg.db import connect, describe, first_line
from londiste_rs.pg.ddl import SEQUENCE_KINDS, TableName, name_of
from londiste_rs.progress import Progress, ProgressPrinter
from londiste_rs.tables import initial_copy, sequences
from londiste_rs.tables.initial_copy import CopyFailed, CopyResult, SourceNotReady, copy_tables

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# ctid ranges per big table (each range one provider and one subscriber connection; tables
# under initial_copy.MIN_RANGE_BYTES per range are read in one piece).
RANGE_JOBS = 4
# How often a subscriber's worker moves its sequences up to its provider's.
SEQ_SYNC_INTERVAL = 2.0
SUBSCRIBERS = ("branch", "leaf")
# add-table and resync NOTIFY this channel (payload: the queue) when a table needs its copy;
# the worker LISTENs on it, so its idle loop_delay does not delay the copy.
TABLES_CHANNEL = "londiste_rs.tables"


# -- the registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class TableState:
    """One local table as `tables` shows it."""

    table_name: str
    dest_table: str | None
    merge_state: str | None
    skip_truncate: bool
    copy_rows: int | None
    copy_bytes: int | None
    copy_total_rows: int | None
    copy_seconds: float | None
    copy_error: str | None
    copy_node: str | None = None  # the node the initial copy reads from (None: the provider)

    @property
    def state(self) -> str:
        return self.merge_state or "needs-copy"

    def progress(self) -> Progress | None:
        """The copy's figures (rate and ETA derived), once a copy has started."""
        if self.copy_rows is None:
            return None
        return Progress(
            self.table_name,
            self.copy_rows,
            self.copy_bytes or 0,
            self.copy_total_rows,
            self.copy_seconds or 0.0,
            done=self.merge_state == "ok",
        )


def table_states(conn: Conn, queue: str) -> list[TableState]:
    rows = conn.execute(
        "select table_name, dest_table, merge_state, coalesce(table_attrs, ''), copy_rows,"
        " copy_bytes, copy_total_rows, copy_seconds, copy_error from londiste_rs.table_info"
        " where queue_name = %s and local order by table_name",
        [queue],
    ).fetchall()
    out = []
    for name, dest, state, text, rows_, bytes_, total, seconds, error in rows:
        attrs = _attrs(text)
        out.append(TableState(name, dest, state, attrs.get("skip_truncate") == "1", rows_,
                              bytes_, total, seconds, error, attrs.get("copy_node")))  # fmt: skip
    return out


def _attrs(text: str) -> dict[str, str]:
    return dict(parse_qsl(text))


def _local_tables(conn: Conn, queue: str) -> list[TableName]:
    return [name_of(t.table_name) for t in table_states(conn, queue)]


def _local_seqs(conn: Conn, queue: str) -> list[TableName]:
    rows = conn.execute(
        "select seq_name from londiste_rs.seq_info where queue_name = %s and local"
        " order by seq_name",
        [queue],
    ).fetchall()
    return [name_of(r[0]) for r in rows]


def _node(cfg: JobConfig, conn: Conn, verb: str, kinds: tuple[str, ...] | None = None) -> NodeInfo:
    return require_node(conn, cfg, kinds or ("root", *SUBSCRIBERS), verb)


def _provider(info: NodeInfo) -> str:
    if not info.provider_location:
        raise LondisteError(
            f"provider {info.provider_node} has no known location; register it with change-provider"
        )
    return info.provider_location


def _all_user(conn: Conn, kinds: tuple[str, ...]) -> list[TableName]:
    try:
        return ddl.resolve(conn, ["*.*"], kinds=kinds)
    except TableError:  # nothing there
        return []


# -- add-table / remove-table / resync / missing -------------------------------------------


def add_tables(
    cfg: JobConfig,
    names: list[str],
    all_: bool = False,
    expect_sync: bool = False,
    *,
    create: bool = False,
    create_full: bool = False,
    dest_table: str | None = None,
    skip_truncate: bool = False,
    copy_node: str | None = None,
    find_copy_node: bool = False,
) -> list[str]:
    """Registers tables on the config's node (see the module doc), all in one transaction;
    returns the names added (tables already there are left as they are). `copy_node`: the
    initial copy reads from that node of the cascade instead of the provider;
    `find_copy_node`: from the nearest node up the provider chain that has the table (so
    the provider need not replicate it)."""
    if not names and not all_:
        raise UsageError("add-table needs table names or --all")
    if names and all_:
        raise UsageError("add-table takes table names or --all, not both")
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "add-table")
        have = set(_local_tables(conn, queue))
        if info.node_type == "root":
            used = [o for o, on in (("--create", create), ("--create-full", create_full),
                    ("--dest-table", dest_table), ("--skip-truncate", skip_truncate),
                    ("--expect-sync", expect_sync), ("--copy-node", copy_node),
                    ("--find-copy-node", find_copy_node)) if on]  # fmt: skip
            if used:
                raise UsageError(
                    f"{used[0]} is for a branch or leaf; on the root add-table only attaches "
                    "capture to existing tables"
                )
            wanted = (
                _all_user(conn, ddl.TABLE_KINDS)
                if all_
                else ddl.resolve(conn, names, where=f"root {info.node_name}")
            )
            added = []
            with conn.transaction():
                for t in wanted:
                    if t in have:
                        continue
                    conn.execute(
                        "select londiste_rs.capture_attach(%s, %s)", [queue, ddl.quoted_name(t)]
                    )
                    _register(conn, queue, t, "ok", None, "")
                    added.append(str(t))
            return added
        sources = (("--copy-node", copy_node is not None), ("--find-copy-node", find_copy_node),
                   ("--expect-sync", expect_sync))  # fmt: skip
        chosen = [o for o, on in sources if on]
        if len(chosen) > 1:
            raise UsageError(
                f"{chosen[0]} and {chosen[1]} contradict each other (where the initial copy "
                "reads from, or no copy at all); use one of them"
            )
        with connect(_provider(info), autocommit=True, what="provider") as prov:
            carried = _local_tables(prov, queue)
            where = f"the tables provider {info.provider_node} replicates"
            upstream: dict[str, _Holder] = {}
            if find_copy_node:
                upstream = nearest_holders(cfg, info)
                carried += [name_of(t) for t in upstream if name_of(t) not in carried]
                where = f"the tables of provider {info.provider_node} and the nodes above it"
            if all_:
                wanted = carried
            else:
                wanted = []
                for pattern in names:
                    try:
                        hits = ddl.select([pattern], carried, where=where)
                    except TableError:
                        if find_copy_node:
                            raise
                        if not expect_sync:
                            raise TableError(
                                f"table {pattern!r} is not replicated by provider "
                                f"{info.provider_node}; add it there first (add-table on the "
                                "root, then on each node down to this one), use "
                                "--find-copy-node to copy it from a node above the provider, "
                                "or --expect-sync if this node has its rows already"
                            ) from None
                        hits = ddl.resolve(conn, [pattern], where=f"node {info.node_name}")
                    wanted += [h for h in hits if h not in wanted]
            wanted = [t for t in wanted if t not in have]
            if dest_table is not None and len(wanted) != 1:
                raise UsageError(
                    f"--dest-table needs exactly one new table, not {len(wanted)}; add the "
                    "others separately"
                )
            if dest_table is not None and (create or create_full):
                raise UsageError("--create cannot rename a table; create the --dest-table by hand")
            state = "ok" if expect_sync else None
            attr_map = {"skip_truncate": "1"} if skip_truncate else {}
            if copy_node is not None:
                check_copy_node(cfg, conn, info, copy_node, [str(t) for t in wanted])
            nodes = {str(t): copy_node for t in wanted}
            if find_copy_node:
                nodes = {str(t): found_copy_node(info, str(t), upstream) for t in wanted}
            fkeys: list[ddl.ForeignKey] = []
            with conn.transaction():
                for t in wanted:
                    if dest_table is not None:
                        dest: TableName | None = ddl.resolve_one(
                            conn, dest_table, where=f"node {info.node_name}"
                        )
                    elif ddl.exists(conn, t):
                        dest = None
                    elif create or create_full:
                        holder = upstream.get(str(t))
                        if nodes[str(t)] and holder is not None:  # the provider may lack it
                            with connect(holder.location, autocommit=True,
                                         what=f"node {holder.node}") as there:  # fmt: skip
                                fkeys += _create(there, conn, t, create_full)
                        else:
                            fkeys += _create(prov, conn, t, create_full)
                        dest = None
                    else:
                        raise TableError(
                            f"table {t} does not exist in {conn.info.dbname}; create it with "
                            "the provider's columns, or add it with --create / --create-full"
                        )
                    node = nodes[str(t)]
                    attrs = urlencode({**attr_map, **({"copy_node": node} if node else {})})
                    _register(conn, queue, t, state, dest, attrs)
                # after every table: a key may reference a table created after its own
                ddl.create_foreign_keys(conn, fkeys)
                if wanted and state is None:
                    _notify(conn, queue)
            return [str(t) for t in wanted]


def _register(
    conn: Conn, queue: str, table: TableName, state: str | None, dest: TableName | None, attrs: str
) -> None:
    conn.execute(
        "insert into londiste_rs.table_info"
        " (queue_name, table_name, merge_state, dest_table, table_attrs)"
        " values (%s, %s, %s, %s, nullif(%s, ''))",
        [queue, str(table), state, None if dest is None else str(dest), attrs],
    )


def _notify(conn: Conn, queue: str) -> None:
    """Wakes the node's worker (at commit) for tables that need their copy."""
    conn.execute("select pg_notify(%s, %s)", [TABLES_CHANNEL, queue])


def _create(prov: Conn, conn: Conn, table: TableName, full: bool) -> list[ddl.ForeignKey]:
    """The provider's table created here, and the sequences behind its serial and identity
    columns moved to the provider's values. Returns its foreign keys (`full`), for the caller
    to create once every table is there."""
    plan = ddl.create_table(prov, conn, table, full=full)
    if not full or plan is None:
        return []
    rows = conn.execute(
        "select s from (select pg_get_serial_sequence(%s, attname) s from pg_attribute"
        "  where attrelid = %s::regclass and attnum > 0 and not attisdropped) x"
        " where s is not null",
        [ddl.quoted_name(table), ddl.quoted_name(table)],
    ).fetchall()
    owned = [str(r[0]) for r in rows]
    if owned:
        sequences.sync(prov, conn, owned)
    return plan.foreign_keys


def remove_tables(cfg: JobConfig, names: list[str], all_: bool) -> list[str]:
    """Stops replicating tables here (on the root: detaches capture); the tables stay."""
    if not names and not all_:
        raise UsageError("remove-table needs table names or --all")
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "remove-table")
        have = _local_tables(conn, queue)
        wanted = have if all_ else ddl.select(names, have, where=f"node {info.node_name}'s tables")
        with conn.transaction():
            for t in wanted:
                if info.node_type == "root" and ddl.exists(conn, t):
                    conn.execute(
                        "select londiste_rs.capture_detach(%s, %s)", [queue, ddl.quoted_name(t)]
                    )
                conn.execute(
                    "delete from londiste_rs.table_info where queue_name = %s and table_name = %s",
                    [queue, str(t)],
                )
        return [str(t) for t in wanted]


def resync(
    cfg: JobConfig,
    names: list[str],
    all_: bool,
    copy_node: str | None = None,
    find_copy_node: bool = False,
) -> list[str]:
    """Makes the worker copy tables again (also failed ones); `copy_node` (stored) changes
    the node the copy reads from (the provider's name: the provider again);
    `find_copy_node` chooses it per table as add-table's does."""
    if not names and not all_:
        raise UsageError("resync needs table names or --all")
    if copy_node is not None and find_copy_node:
        raise UsageError("--copy-node and --find-copy-node contradict each other; use one")
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "resync", SUBSCRIBERS)
        have = _local_tables(conn, queue)
        wanted = have if all_ else ddl.select(names, have, where=f"node {info.node_name}'s tables")
        if copy_node is not None:
            check_copy_node(cfg, conn, info, copy_node, [str(t) for t in wanted])
        nodes: dict[str, str | None] = {str(t): copy_node for t in wanted}
        if find_copy_node:
            upstream = nearest_holders(cfg, info)
            nodes = {str(t): found_copy_node(info, str(t), upstream) for t in wanted}
        with conn.transaction():
            rows = conn.execute(
                "select table_name, coalesce(table_attrs, '') from londiste_rs.table_info"
                " where queue_name = %s and table_name = any(%s)",
                [queue, [str(t) for t in wanted]],
            ).fetchall()
            for table, text in rows if copy_node is not None or find_copy_node else []:
                attrs = {k: v for k, v in _attrs(text).items() if k != "copy_node"}
                if nodes[str(table)] is not None:
                    attrs["copy_node"] = str(nodes[str(table)])
                conn.execute(
                    "update londiste_rs.table_info set table_attrs = %s"
                    " where queue_name = %s and table_name = %s",
                    [urlencode(attrs), queue, table],
                )
            conn.execute(
                "update londiste_rs.table_info set merge_state = null, custom_snapshot = null,"
                " copy_tick = null, copy_rows = null, copy_bytes = null, copy_total_rows = null,"
                " copy_seconds = null, copy_started = null, copy_error = null"
                " where queue_name = %s and table_name = any(%s)",
                [queue, [str(t) for t in wanted]],
            )
            _notify(conn, queue)
        return [str(t) for t in wanted]


def missing(cfg: JobConfig) -> list[tuple[str, str]]:
    """(kind, name) of what this node could replicate but does not: on the root, the tables and
    sequences of the database; on a branch or leaf, what its provider replicates."""
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "missing")
        have_t, have_s = set(_local_tables(conn, queue)), set(_local_seqs(conn, queue))
        if info.node_type == "root":
            tables = _all_user(conn, ddl.TABLE_KINDS)
            seqs = _all_user(conn, SEQUENCE_KINDS)
        else:
            with connect(_provider(info), autocommit=True, what="provider") as prov:
                tables, seqs = _local_tables(prov, queue), _local_seqs(prov, queue)
    return [("table", str(t)) for t in tables if t not in have_t] + [
        ("sequence", str(s)) for s in seqs if s not in have_s
    ]


def wait_sync(
    cfg: JobConfig, timeout: float | None, report: Callable[[int, int], None] | None = None
) -> int:
    """Waits until every local table is 'ok'; returns how many there are. A failed copy ends
    the wait with its error (run resync after fixing it)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: tuple[int, int] | None = None
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        _node(cfg, conn, "wait-sync")
        while True:
            states = table_states(conn, cfg.queue_name)
            failed = [s for s in states if s.merge_state == "failed"]
            if failed:
                raise TableError(
                    f"copy of {failed[0].table_name} failed: {failed[0].copy_error}; fix it, "
                    f"then run resync {failed[0].table_name}"
                )
            ok = sum(s.merge_state == "ok" for s in states)
            if report is not None and shown != (ok, len(states)):
                shown = (ok, len(states))
                report(ok, len(states))
            if ok == len(states):
                return ok
            if deadline is not None and time.monotonic() > deadline:
                raise LondisteError(
                    f"{len(states) - ok} of {len(states)} tables not in sync after "
                    f"{timeout:g}s; is the worker running? (see 'tables')"
                )
            time.sleep(0.2)


# -- copies from another node (--copy-node) ------------------------------------------------

# How long a copy from a node behind this one holds this node's replay, waiting for that node
# to catch up, before the table is marked failed.
COPY_NODE_WAIT = 60.0


def _upstream(cfg: JobConfig, info: NodeInfo) -> Generator[tuple[str, Conn, NodeInfo | None]]:
    """The nodes up the provider chain, nearest first (the provider, its provider, ... the
    root): each one's location, a connection open until the walk moves on, and its node
    info (None: not a node of the queue; the walk ends there)."""
    seen: set[str] = set()
    location = info.provider_location
    while location and location not in seen and len(seen) < 32:
        seen.add(location)
        with connect(location, autocommit=True, what="upstream node") as conn:
            up = get_node_info(conn, cfg.queue_name)
            yield location, conn, up
        location = None if up is None else up.provider_location


def copy_node_location(cfg: JobConfig, conn: Conn, info: NodeInfo, node: str) -> str | None:
    """Where `node` is: this node's member list, else those of the nodes upstream (a member
    created after this node is known to the root)."""

    def listed(here: Conn) -> str | None:
        return next((w for n, w, _dead in members(here, cfg.queue_name) if n == node), None)

    where = listed(conn)
    if where is None:
        with contextlib.closing(_upstream(cfg, info)) as chain:  # closes the last connection
            for _location, up_conn, _up in chain:
                where = listed(up_conn)
                if where is not None:
                    break
    return where


@dataclass(frozen=True)
class _Holder:
    """The nearest node up the provider chain that replicates a table."""

    node: str
    node_type: str
    location: str


def nearest_holders(cfg: JobConfig, info: NodeInfo) -> dict[str, _Holder]:
    """For every table replicated by the provider or a node above it (up to the root): the
    nearest such node (`--find-copy-node`)."""
    found: dict[str, _Holder] = {}
    with contextlib.closing(_upstream(cfg, info)) as chain:
        for location, conn, up in chain:
            if up is None:
                break
            for t in _local_tables(conn, cfg.queue_name):
                found.setdefault(str(t), _Holder(up.node_name, up.node_type, location))
    return found


def found_copy_node(info: NodeInfo, table: str, upstream: dict[str, _Holder]) -> str | None:
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


@dataclass(frozen=True)
class _SourceTable:
    merge_state: str | None
    snapshot_pending: bool  # its own copy's snapshot is still in use: not yet as of a tick
    dest_table: str | None


def _source_tables(conn: Conn, queue: str, tables: list[str]) -> dict[str, _SourceTable]:
    rows = conn.execute(
        "select table_name, merge_state, custom_snapshot is not null or copy_tick is not null,"
        " dest_table from londiste_rs.table_info"
        " where queue_name = %s and local and table_name = any(%s)",
        [queue, tables],
    ).fetchall()
    return {str(r[0]): _SourceTable(r[1], bool(r[2]), r[3]) for r in rows}


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
    location = copy_node_location(cfg, conn, info, node)
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
        there = _source_tables(xconn, cfg.queue_name, tables)
    for t in tables:
        src = there.get(t)
        if src is None or src.merge_state != "ok":
            state = "not replicated" if src is None else (src.merge_state or "needs-copy")
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


def _at_tick(queue: str, node: str, since: int, names: dict[str, str]) -> Any:
    """The check run in a copy node's snapshot transaction: every table 'ok' and as of a tick
    (no copy snapshot of its own in use), the node at or past this node's tick `since`;
    returns the node's last tick, what the copied rows are as of."""

    def check(conn: Conn, source: TableName) -> int:
        table = names[str(source)]
        row = conn.execute(
            "select last_tick_id from londiste_rs.local_state where queue_name = %s", [queue]
        ).fetchone()
        src = _source_tables(conn, queue, [table]).get(table)
        if row is None or row[0] is None or src is None or src.merge_state != "ok":
            raise SourceNotReady(f"{table} is not ok on node {node}")
        if src.snapshot_pending:
            raise SourceNotReady(f"{table} on node {node} is not as of one tick yet")
        if int(row[0]) < since:
            raise SourceNotReady(f"node {node} is at tick {row[0]}, behind tick {since}")
        return int(row[0])

    return check


@dataclass
class _Job:
    """Tables copied from one source: the provider, or a copy node."""

    dsn: str
    label: str
    tables: list[str]
    sources: dict[str, str]  # global name -> the name on the source (its dest_table)
    node: str | None = None  # the copy node


def _copy_node_job(
    cfg: JobConfig,
    local: Conn,
    info: NodeInfo,
    node: str,
    tables: list[str],
    waits: CopyWaits,
    failed: dict[str, str],
) -> tuple[_Job | None, bool]:
    """Those of `tables` the copy node `node` can give now, and whether replay must wait for
    it (it is behind this node: once this node applies further, that copy would miss events)."""
    queue = cfg.queue_name
    since = info.last_tick_id or 0
    location = copy_node_location(cfg, local, info, node)
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
            there = _source_tables(xconn, queue, tables)
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
        if src is None or src.merge_state != "ok" or src.snapshot_pending:
            state = "not replicated" if src is None else (src.merge_state or "needs-copy")
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
    job = _Job(location, f"node {node}", ready, sources, node) if ready else None
    return job, hold


# -- the initial copy ----------------------------------------------------------------------


def pending_copies(conn: Conn, queue: str) -> list[str]:
    """Tables that need a copy ('in-copy' here means a copy a crash interrupted)."""
    return [
        t.table_name
        for t in table_states(conn, queue)
        if t.merge_state is None or t.merge_state == "in-copy"
    ]


class _Recorder:
    """A progress callback writing each table's figures to its row (its own connection; the
    copy threads call it) and showing them (bars on a terminal, log lines otherwise)."""

    def __init__(self, dsn: str, queue: str):
        self.dsn, self.queue = dsn, queue
        self.lock = threading.Lock()
        self.conn: Conn | None = None
        self.show = ProgressPrinter()

    def __call__(self, p: Progress) -> None:
        self.show(p)
        with self.lock:
            try:
                if self.conn is None:
                    self.conn = connect(self.dsn, autocommit=True, what="node database")
                self.conn.execute(
                    "update londiste_rs.table_info set copy_rows = %s, copy_bytes = %s,"
                    " copy_total_rows = %s, copy_seconds = %s"
                    " where queue_name = %s and table_name = %s",
                    [p.rows, p.bytes, p.total_rows, p.elapsed, self.queue, p.table],
                )
            except (LondisteError, psycopg.Error) as e:  # figures only: never fail the copy
                log.warning("cannot record the copy progress of %s: %s", p.table, first_line(e))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def copy_pending(
    cfg: JobConfig,
    local: Conn,
    prov: Conn,
    info: NodeInfo,
    tables: list[str],
    waits: CopyWaits | None = None,
) -> tuple[bool, bool]:
    """Copies those of `tables` whose source has them 'ok' (see the module doc): the
    provider, or the table's copy node. Returns (whether any table was copied or failed,
    whether replay must wait for a copy node that is behind). Each table copied ends 'ok'
    with the snapshot of what it holds, or 'failed' with its error."""
    queue = cfg.queue_name
    waits = waits if waits is not None else CopyWaits()
    prov_dsn = _provider(info)
    states = {s.table_name: s for s in table_states(local, queue)}
    by_node: dict[str, list[str]] = {}
    for t in tables:
        node = states[t].copy_node
        if node is not None and node != info.provider_node:
            by_node.setdefault(node, []).append(t)
    from_provider = [t for t in tables if not any(t in ts for ts in by_node.values())]
    ready_there = {
        str(r[0])
        for r in prov.execute(
            "select table_name from londiste_rs.table_info"
            " where queue_name = %s and local and merge_state = 'ok' and table_name = any(%s)",
            [queue, from_provider],
        ).fetchall()
    }
    jobs: list[_Job] = []
    ready = [t for t in from_provider if t in ready_there]
    if ready:
        jobs.append(_Job(prov_dsn, f"provider {info.provider_node}", ready, {t: t for t in ready}))
    failed: dict[str, str] = {}
    hold = False
    for node, ts in by_node.items():
        job, held = _copy_node_job(cfg, local, info, node, ts, waits, failed)
        hold = hold or held
        if job is not None:
            jobs.append(job)
    ready = [t for j in jobs for t in j.tables]
    if not ready and not failed:
        return False, hold
    local.execute(
        "update londiste_rs.table_info set merge_state = 'in-copy', copy_started = now(),"
        " copy_rows = 0, copy_bytes = 0, copy_total_rows = null, copy_seconds = 0,"
        " copy_error = null, custom_snapshot = null, copy_tick = null"
        " where queue_name = %s and table_name = any(%s)",
        [queue, ready],
    )
    _defer(local, queue, ready, states, failed)
    round_ = _Round(cfg, prov_dsn, {t: states[t].dest_table or t for t in ready})
    recorder = _Recorder(cfg.db, queue)
    done: list[tuple[_Job, str, CopyResult]] = []
    not_ready: list[str] = []
    try:
        for job in jobs:
            back = {str(name_of(job.sources[t])): t for t in job.tables}
            hook = (
                None
                if job.node is None
                else _at_tick(queue, job.node, info.last_tick_id or 0, back)
            )
            for skip in (False, True):
                group = [t for t in job.tables if t not in failed
                         and states[t].skip_truncate == skip]  # fmt: skip
                if not group:
                    continue
                log.info("initial copy of %s from %s", ", ".join(group), job.label)
                pairs = [(name_of(job.sources[t]), name_of(states[t].dest_table or t))
                         for t in group]  # fmt: skip
                try:
                    results = copy_tables(
                        job.dsn, cfg.db, pairs, parallel_copies=cfg.parallel_copies,
                        jobs=RANGE_JOBS, min_range_bytes=initial_copy.MIN_RANGE_BYTES,
                        skip_truncate=skip, progress=recorder, at_snapshot=hook,
                        analyze=False, finish=functools.partial(round_.finish, job, back),
                    )  # fmt: skip
                except CopyFailed as e:
                    results = e.results
                    for src, error in e.errors.items():
                        if src in e.not_ready:
                            not_ready.append(back[src])
                            waits.note(back[src], f"{back[src]}: copy waits: {error}")
                        else:
                            failed[back[src]] = error
                done += [(job, back[str(r.source)], r) for r in results]
    finally:
        recorder.close()
        round_.close()
        # the tables no copy thread finished (failed, not ready, interrupted), with the foreign
        # keys handed to them
        failed.update(_restore(local, queue, [t for t in ready if t not in round_.finished]))
    for _job, table, r in done:  # after 'ok' is committed: replay need not wait for it
        waits.done(table)
        try:
            local.execute(sql.SQL("ANALYZE {}").format(r.dest.ident))
        except psycopg.Error as e:
            log.warning("%s: ANALYZE after the copy failed: %s", r.dest, first_line(e))
    for table in not_ready:
        local.execute(
            "update londiste_rs.table_info set merge_state = null, copy_started = null"
            " where queue_name = %s and table_name = %s",
            [queue, table],
        )
    for table, error in failed.items():
        local.execute(
            "update londiste_rs.table_info set merge_state = 'failed', copy_error = %s"
            " where queue_name = %s and table_name = %s",
            [error, queue, table],
        )
        waits.done(table)
        log.error("%s: initial copy failed: %s", table, error)
    return len(not_ready) < len(ready) or bool(failed), hold


def tick_snapshot(prov: Conn, queue: str, tick_id: int) -> str | None:
    """The provider's snapshot of tick `tick_id` (None: no such tick there yet)."""
    row = prov.execute(
        "select t.tick_snapshot::text from londiste_rs.tick t"
        " join londiste_rs.queue q on q.queue_id = t.tick_queue"
        " where q.queue_name = %s and t.tick_id = %s",
        [queue, tick_id],
    ).fetchone()
    return None if row is None else str(row[0])


def _defer(
    local: Conn, queue: str, ready: list[str], states: dict[str, TableState], failed: dict[str, str]
) -> None:
    """Drops the foreign keys and plain indexes of the tables about to be copied, one table
    at a time (a foreign key between two of them is dropped once), recording them."""
    for t in ready:
        try:
            with local.transaction():  # dropped and recorded at once: a crash loses neither
                # also the keys, into a table the copy empties: built once after the data
                # instead of maintained row by row (a key the rows break fails the table then)
                items = ddl.defer_secondary(
                    local, name_of(states[t].dest_table or t), keys=not states[t].skip_truncate
                )
                if items:
                    _record_dropped(local, queue, t, items)
        except LondisteError as e:
            failed[t] = str(e)


# Every statement on `dropped_ddl` changes only its own items (copy threads write the same
# rows), never writing back a list read before.


def _record_dropped(conn: Conn, queue: str, table: str, items: list[ddl.Deferred]) -> None:
    conn.execute(
        "update londiste_rs.table_info set dropped_ddl"
        " = coalesce(dropped_ddl, '[]'::jsonb) || %s::jsonb"
        " where queue_name = %s and table_name = %s",
        [json.dumps([vars(i) for i in items]), queue, table],
    )


def _forget_dropped(conn: Conn, queue: str, table: str, items: list[ddl.Deferred]) -> None:
    conn.execute(
        "update londiste_rs.table_info set dropped_ddl = (select jsonb_agg(e)"
        "  from jsonb_array_elements(dropped_ddl) e where e->>'restore' <> all(%s))"
        " where queue_name = %s and table_name = %s",
        [[i.restore for i in items], queue, table],
    )


def _dropped(conn: Conn, queue: str, tables: list[str]) -> list[tuple[str, ddl.Deferred]]:
    rows = conn.execute(
        "select table_name, dropped_ddl from londiste_rs.table_info"
        " where queue_name = %s and table_name = any(%s) and dropped_ddl is not null",
        [queue, tables],
    ).fetchall()
    return [(str(t), ddl.Deferred(**i)) for t, lst in rows for i in lst]


def _restore(
    conn: Conn, queue: str, tables: list[str], kinds: tuple[str, ...] = ("key", "index", "fkey")
) -> dict[str, str]:
    """Brings back what `_defer` (also a crashed earlier copy) dropped for these tables, of
    these kinds. Returns the tables something could not be restored for, with the error: they
    are not in sync (e.g. the copied rows break the table's key); what failed stays in
    `dropped_ddl`, so their resync tries it again."""
    items = [(t, i) for t, i in _dropped(conn, queue, tables) if i.kind in kinds]
    errors: dict[str, str] = {}
    for table, item in sorted(items, key=lambda ti: ddl.RESTORE_ORDER[ti[1].kind]):
        try:
            with conn.transaction():  # restored and forgotten at once: a crash repeats neither
                ddl.restore_secondary(conn, [item])
                _forget_dropped(conn, queue, table, [item])
        except LondisteError as e:
            errors.setdefault(
                table, f"after the copy: {e}; fix the rows or the definition, then resync {table}"
            )
    return errors


def _hand_over(conn: Conn, queue: str, table: str, waiting: dict[str, str]) -> None:
    """Moves the foreign keys recorded with `table` whose other end is still to be copied
    (`waiting`: local name -> table) to that table's record: restored once it is copied, and
    never left recorded with a table that is 'ok' (nothing would restore them)."""
    moves: dict[str, list[ddl.Deferred]] = {}
    for _, item in _dropped(conn, queue, [table]):
        ends = [waiting[e] for e in (item.table, item.references) if e in waiting]
        if item.kind == "fkey" and ends:
            moves.setdefault(ends[0], []).append(item)
    if not moves:
        return
    with conn.transaction():
        for other, items in moves.items():
            _record_dropped(conn, queue, other, items)
            _forget_dropped(conn, queue, table, items)
            log.debug("%s: foreign keys %s wait for the copy of %s",
                      table, ", ".join(i.name for i in items), other)  # fmt: skip


class _ThreadConns:
    """One autocommit connection per thread and database, opened when first needed (psycopg
    connections are not shared between threads)."""

    def __init__(self) -> None:
        self.mine = threading.local()
        self.lock = threading.Lock()
        self.opened: list[Conn] = []

    def get(self, dsn: str, what: str) -> Conn:
        conns: dict[str, Conn] = vars(self.mine).setdefault("conns", {})
        if dsn not in conns:
            conns[dsn] = connect(dsn, autocommit=True, what=what)
            with self.lock:
                self.opened.append(conns[dsn])
        return conns[dsn]

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


class _Round:
    """What the copy threads of one `copy_pending` round share: the tables their foreign keys
    wait for (not copied yet, or copied with keys that could not be rebuilt), those whose
    copy thread finished, and the threads' connections."""

    def __init__(self, cfg: JobConfig, prov_dsn: str, local_names: dict[str, str]):
        self.cfg, self.prov_dsn = cfg, prov_dsn
        self.local_names = local_names  # table -> the local table it is copied into
        self.waiting = set(local_names)
        self.finished: set[str] = set()
        self.lock = threading.Lock()
        self.conns = _ThreadConns()

    def finish(self, job: _Job, back: dict[str, str], r: CopyResult) -> None:
        """Runs in the copy's thread as soon as a table's rows are in, so the table is usable
        while others copy: its keys and indexes rebuilt, its foreign keys too once the table
        at their other end is copied (until then recorded with that table), then 'ok' with its
        copy snapshot. Raises TableError (the table fails) when something cannot be restored."""
        table, queue = back[str(r.source)], self.cfg.queue_name
        conn = self.conns.get(self.cfg.db, "node database")
        errors = _restore(conn, queue, [table], ("key", "index"))
        with self.lock:  # a foreign key between two tables is restored by the later one
            self.finished.add(table)
            if not errors:  # else its foreign keys (on its keys, maybe) stay with it
                self.waiting.discard(table)
                _hand_over(conn, queue, table, {self.local_names[t]: t for t in self.waiting})
        errors = {**_restore(conn, queue, [table], ("fkey",)), **errors}
        if errors:
            raise TableError(errors[table])
        self._ok(conn, job, table, r)

    def _ok(self, conn: Conn, job: _Job, table: str, r: CopyResult) -> None:
        # a copy node's rows are as of its tick r.mark: skip what the provider's snapshot of
        # that tick shows, or (no such tick there yet) keep the tick for the worker
        snapshot: str | None = str(r.snapshot)
        copy_tick: int | None = None
        if job.node is not None:
            prov = self.conns.get(self.prov_dsn, "provider")
            snapshot = tick_snapshot(prov, self.cfg.queue_name, int(r.mark))
            copy_tick = int(r.mark) if snapshot is None else None
        conn.execute(
            "update londiste_rs.table_info set merge_state = 'ok', custom_snapshot = %s,"
            " copy_tick = %s, copy_rows = %s, copy_bytes = %s, copy_seconds = %s"
            " where queue_name = %s and table_name = %s",
            [snapshot, copy_tick, r.rows, r.bytes, r.seconds, self.cfg.queue_name, table],
        )
        as_of = "" if job.node is None else f" from node {job.node}, as of tick {r.mark}"
        log.info("%s: initial copy done (%d rows in %.1fs%s)", table, r.rows, r.seconds, as_of)

    def close(self) -> None:
        self.conns.close()


def release_copy_snapshots(local: Conn, prov: Conn, queue: str, tick_id: int) -> None:
    """Forgets copy snapshots no later batch can need: once the applied tick's snapshot has
    every transaction below the copy snapshot's xmax finished, every later event comes from a
    transaction the copy did not see."""
    snaps = local.execute(
        "select table_name, custom_snapshot::text from londiste_rs.table_info"
        " where queue_name = %s and custom_snapshot is not null",
        [queue],
    ).fetchall()
    if not snaps:
        return
    row = prov.execute(
        "select pg_snapshot_xmin(t.tick_snapshot)::text from londiste_rs.tick t"
        " join londiste_rs.queue q on q.queue_id = t.tick_queue"
        " where q.queue_name = %s and t.tick_id = %s",
        [queue, tick_id],
    ).fetchone()
    if row is None:
        return
    tick_xmin = int(row[0])
    for table, snap in snaps:
        if tick_xmin >= int(str(snap).split(":")[1]):
            local.execute(
                "update londiste_rs.table_info set custom_snapshot = null"
                " where queue_name = %s and table_name = %s",
                [queue, table],
            )


def parents_first(conn: Conn, tables: list[str]) -> list[str]:
    """`tables` sorted so that a table referenced by a foreign key comes before the tables
    referencing it (a cycle keeps the given order for its members)."""
    oids = [
        int(conn.execute("select %s::regclass::oid::int8", [t]).fetchone()[0])  # type: ignore[index]
        for t in tables
    ]
    edges = conn.execute(
        "select conrelid::int8, confrelid::int8 from pg_constraint"
        " where contype = 'f' and conrelid = any(%s) and confrelid = any(%s)"
        " and conrelid <> confrelid",
        [oids, oids],
    ).fetchall()
    parents: dict[int, set[int]] = {o: set() for o in oids}
    for child, parent in edges:
        parents[child].add(parent)
    done: list[int] = []
    while len(done) < len(oids):
        ready = [o for o in oids if o not in done and parents[o] <= set(done)]
        done.extend(ready or [o for o in oids if o not in done])
    by_oid = dict(zip(oids, tables, strict=True))
    return [by_oid[o] for o in done]


# -- sequences -----------------------------------------------------------------------------


def add_seqs(cfg: JobConfig, names: list[str], all_: bool, create: bool = False) -> list[str]:
    """Registers sequences: on the root any of the database's; on a branch or leaf those its
    provider replicates (created here with --create), moved up to the provider's value."""
    if not names and not all_:
        raise UsageError("add-seq needs sequence names or --all")
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "add-seq")
        have = set(_local_seqs(conn, queue))
        if info.node_type == "root":
            if create:
                raise UsageError("--create is for a branch or leaf; the root's sequences exist")
            wanted = (
                _all_user(conn, SEQUENCE_KINDS)
                if all_
                else ddl.resolve(conn, names, kinds=SEQUENCE_KINDS, where=f"root {info.node_name}")
            )
            wanted = [s for s in wanted if s not in have]
            with conn.transaction():
                for s in wanted:
                    _register_seq(conn, queue, s)
            return [str(s) for s in wanted]
        with connect(_provider(info), autocommit=True, what="provider") as prov:
            carried = _local_seqs(prov, queue)
            where = f"the sequences provider {info.provider_node} replicates (add them there first)"
            wanted = carried if all_ else ddl.select(names, carried, what="sequence", where=where)
            wanted = [s for s in wanted if s not in have]
            with conn.transaction():
                for s in wanted:
                    if not ddl.exists(conn, s):
                        if not create:
                            raise TableError(
                                f"sequence {s} does not exist in {conn.info.dbname}; create it "
                                "or add it with --create"
                            )
                        ddl.create_sequence(prov, conn, s)
                    _register_seq(conn, queue, s)
                if wanted:
                    sequences.sync(prov, conn, wanted)
            return [str(s) for s in wanted]


def _register_seq(conn: Conn, queue: str, seq: TableName) -> None:
    conn.execute(
        "insert into londiste_rs.seq_info (queue_name, seq_name) values (%s, %s)",
        [queue, str(seq)],
    )


def remove_seqs(cfg: JobConfig, names: list[str], all_: bool) -> list[str]:
    if not names and not all_:
        raise UsageError("remove-seq needs sequence names or --all")
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "remove-seq")
        have = _local_seqs(conn, cfg.queue_name)
        wanted = (
            have
            if all_
            else ddl.select(
                names, have, what="sequence", where=f"node {info.node_name}'s sequences"
            )
        )
        conn.execute(
            "delete from londiste_rs.seq_info where queue_name = %s and seq_name = any(%s)",
            [cfg.queue_name, [str(s) for s in wanted]],
        )
        return [str(s) for s in wanted]


@dataclass(frozen=True)
class SeqState:
    seq_name: str
    local_value: int | None  # what nextval() returns next here
    provider_value: int | None  # ... on the provider (None on a root or when unreachable)


def seq_states(cfg: JobConfig) -> list[SeqState]:
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "seqs")
        names = _local_seqs(conn, cfg.queue_name)
        here = _read_seqs(conn, names)
        there: dict[TableName, int | None] = {}
        if info.node_type != "root" and names:
            with connect(_provider(info), autocommit=True, what="provider") as prov:
                there = _read_seqs(prov, names)
    return [SeqState(str(n), here.get(n), there.get(n)) for n in names]


def _read_seqs(conn: Conn, names: Iterable[TableName]) -> dict[TableName, int | None]:
    present = [n for n in names if ddl.exists(conn, n)]
    return {n: s.next_value for n, s in sequences.read(conn, present).items()}


def sync_seqs(cfg: JobConfig, names: list[str], exact: bool) -> list[sequences.SeqSync]:
    """Moves this node's sequences (all, or those named) to its provider's values: forward
    only, or with `exact` to the provider's exact state (a cut-over, with writes stopped)."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = _node(cfg, conn, "sync-seqs", SUBSCRIBERS)
        have = _local_seqs(conn, cfg.queue_name)
        wanted = (
            ddl.select(names, have, what="sequence", where="this node's sequences")
            if (names)
            else have
        )
        if not wanted:
            return []
        with connect(_provider(info), autocommit=True, what="provider") as prov:
            done = sequences.sync(prov, conn, wanted, exact=exact)
        _store_seq_values(conn, cfg.queue_name, done)
        return done


def sync_sequences(local: Conn, prov: Conn, queue: str) -> None:
    """The worker's periodic forward-only sync of the node's sequences."""
    names = _local_seqs(local, queue)
    if names:
        _store_seq_values(local, queue, sequences.sync(prov, local, names))


def _store_seq_values(conn: Conn, queue: str, done: list[sequences.SeqSync]) -> None:
    for s in done:
        conn.execute(
            "update londiste_rs.seq_info set last_value = %s"
            " where queue_name = %s and seq_name = %s",
            [s.provider, queue, str(s.name)],
        )
