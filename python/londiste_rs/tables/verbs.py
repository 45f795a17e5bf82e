"""The table verbs: add-table, remove-table, resync, missing, wait-sync, tables.

On the root, add-table attaches capture and the table is 'ok' at once; on a branch or leaf a
table needs its initial copy (unless --expect-sync), which the node's worker runs
(tables/copy_round.py). Each verb changes its database in one transaction, except on the
root: there add-table and remove-table attach and detach capture one table per transaction,
each waiting for its table's lock no longer than the ini's lock_timeout (pg/locking.py), so
application writers never queue behind them for longer, and no lock on a table already done
is held while the next one waits. add-table warns (pg/trust.py) about tables whose owner,
another role, would run code as londiste-rs: a subscriber's triggers, rules and row level
security, a provider's row level security. Table states and who moves them: store/tables.py
and docs/internals.md.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, TableError, UsageError
from londiste_rs.pg import ddl
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.db import connect
from londiste_rs.pg.foreign_keys import ForeignKey, create_foreign_keys
from londiste_rs.pg.locking import LockBusy, lock_holders, with_lock_retries
from londiste_rs.pg.names import SEQUENCE_KINDS, TableName, name_of
from londiste_rs.pg.trust import foreign_code
from londiste_rs.progress import Progress
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import require_node
from londiste_rs.store.tables import MergeState, TableState
from londiste_rs.tables import sequences
from londiste_rs.tables.common import (
    SUBSCRIBERS,
    all_user,
    local_seqs,
    local_tables,
    node_for,
    provider_location,
)
from londiste_rs.tables.copy_source import (
    Holder,
    check_copy_node,
    found_copy_node,
    nearest_holders,
)
from londiste_rs.waiting import wait_for

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def table_list(cfg: JobConfig) -> list[TableState]:
    """The node's tables with their states and copy figures (`tables`)."""
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        require_node(conn, cfg, verb="tables")
        return store_tables.table_states(conn, cfg.queue_name)


def copy_progress(s: TableState) -> Progress | None:
    """The copy's figures (rate and ETA derived), once a copy has started."""
    if s.copy_rows is None:
        return None
    return Progress(s.table_name, s.copy_rows, s.copy_bytes or 0, s.copy_total_rows,
                    s.copy_seconds or 0.0, done=s.merge_state is MergeState.OK)  # fmt: skip


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
        info = node_for(cfg, conn, "add-table")
        have = set(local_tables(conn, queue))
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
                all_user(conn, pgnames.TABLE_KINDS)
                if all_
                else pgnames.resolve(conn, names, where=f"root {info.node_name}")
            )
            added: list[str] = []
            for t in wanted:
                if t in have:
                    continue
                attach = functools.partial(_attach, conn, queue, t)
                try:
                    with_lock_retries(conn, cfg.lock_timeout, attach, f"add-table {t}")
                except LockBusy as e:
                    raise TableError(_still_locked(conn, "add", t, e, added)) from None
                added.append(str(t))
            _warn(foreign_code(conn, [pgnames.quoted_name(name_of(t)) for t in added], False))
            return added
        sources = (("--copy-node", copy_node is not None), ("--find-copy-node", find_copy_node),
                   ("--expect-sync", expect_sync))  # fmt: skip
        chosen = [o for o, on in sources if on]
        if len(chosen) > 1:
            raise UsageError(
                f"{chosen[0]} and {chosen[1]} contradict each other (where the initial copy "
                "reads from, or no copy at all); use one of them"
            )
        with connect(provider_location(cfg, info), autocommit=True, what="provider") as prov:
            carried = local_tables(prov, queue)
            where = f"the tables provider {info.provider_node} replicates"
            upstream: dict[str, Holder] = {}
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
                        hits = pgnames.select([pattern], carried, where=where)
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
                        hits = pgnames.resolve(conn, [pattern], where=f"node {info.node_name}")
                    wanted += [h for h in hits if h not in wanted]
            wanted = [t for t in wanted if t not in have]
            if dest_table is not None and len(wanted) != 1:
                raise UsageError(
                    f"--dest-table needs exactly one new table, not {len(wanted)}; add the "
                    "others separately"
                )
            if dest_table is not None and (create or create_full):
                raise UsageError("--create cannot rename a table; create the --dest-table by hand")
            state = MergeState.OK if expect_sync else MergeState.NEEDS_COPY
            attr_map = {"skip_truncate": "1"} if skip_truncate else {}
            if copy_node is not None:
                check_copy_node(cfg, conn, info, copy_node, [str(t) for t in wanted])
            nodes = {str(t): copy_node for t in wanted}
            if find_copy_node:
                nodes = {str(t): found_copy_node(info, str(t), upstream) for t in wanted}

            def register_all() -> list[str]:
                """The tables registered (and created), in the caller's transaction; returns
                the local tables the worker will write."""
                fkeys: list[ForeignKey] = []
                targets = []
                for t in wanted:
                    if dest_table is not None:
                        dest: TableName | None = pgnames.resolve_one(
                            conn, dest_table, where=f"node {info.node_name}"
                        )
                    elif pgnames.exists(conn, t):
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
                    attrs = {**attr_map, **({"copy_node": node} if node else {})}
                    store_tables.register(
                        conn, queue, str(t), state, None if dest is None else str(dest), attrs
                    )
                    targets.append(pgnames.quoted_name(t if dest is None else dest))
                # after every table: a key may reference a table created after its own
                create_foreign_keys(conn, fkeys)
                if wanted and state is MergeState.NEEDS_COPY:
                    store_tables.notify_copy_needed(conn, queue)
                return targets

            try:
                targets = with_lock_retries(conn, cfg.lock_timeout, register_all, "add-table")
            except LockBusy as e:
                raise TableError(_still_locked(conn, "add", None, e, [])) from None
            _warn(foreign_code(conn, targets, True))
            return [str(t) for t in wanted]


def _attach(conn: Conn, queue: str, table: TableName) -> None:
    """Captures one table on the root, in the caller's (short) transaction."""
    store_queue.capture_attach(conn, queue, pgnames.quoted_name(table))
    store_tables.register(conn, queue, str(table), MergeState.OK, None, {})


def _detach(conn: Conn, queue: str, table: TableName, root: bool) -> None:
    """Stops replicating one table, in the caller's (short) transaction."""
    if root and pgnames.exists(conn, table):
        store_queue.capture_detach(conn, queue, pgnames.quoted_name(table))
    store_tables.unregister(conn, queue, str(table))


def _still_locked(
    conn: Conn, verb: str, table: TableName | None, e: LockBusy, done: list[str]
) -> str:
    """The one line for a table (or, with None, the tables) whose lock could not be had:
    which table, who holds it, what was done before, and the fix."""
    holders = lock_holders(conn, pgnames.quoted_name(table)) if table is not None else ""
    what = f"table {table} is" if table is not None else "tables are"
    by = f" by {holders}" if holders else " by other transactions"
    before = ""
    if done:
        shown = ", ".join(done[:5]) + (f" and {len(done) - 5} more" if len(done) > 5 else "")
        before = f"; done before it, and kept: {shown}"
    verbed = "added" if verb == "add" else "removed"
    return (
        f"{verb}-table: {what} locked{by}; gave up after {e.tries} waits of lock_timeout "
        f"{e.timeout:g}s, so {'it is' if table is not None else 'they are'} not {verbed}"
        f"{before}; end those transactions (or raise lock_timeout in the ini) and run "
        f"{verb}-table again"
    )


def _warn(lines: list[str]) -> None:
    for line in lines:
        log.warning("%s", line)


def _create(prov: Conn, conn: Conn, table: TableName, full: bool) -> list[ForeignKey]:
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
        [pgnames.quoted_name(table), pgnames.quoted_name(table)],
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
        info = node_for(cfg, conn, "remove-table")
        have = local_tables(conn, queue)
        wanted = (
            have if all_ else pgnames.select(names, have, where=f"node {info.node_name}'s tables")
        )
        if info.node_type != "root":  # no capture triggers: one transaction
            detach_all = functools.partial(_detach_all, conn, queue, wanted)
            try:
                with_lock_retries(conn, cfg.lock_timeout, detach_all, "remove-table")
            except LockBusy as e:
                raise TableError(_still_locked(conn, "remove", None, e, [])) from None
            return [str(t) for t in wanted]
        removed: list[str] = []
        for t in wanted:
            detach = functools.partial(_detach, conn, queue, t, True)
            try:
                with_lock_retries(conn, cfg.lock_timeout, detach, f"remove-table {t}")
            except LockBusy as e:
                raise TableError(_still_locked(conn, "remove", t, e, removed)) from None
            removed.append(str(t))
        return removed


def _detach_all(conn: Conn, queue: str, tables: list[TableName]) -> None:
    for t in tables:
        _detach(conn, queue, t, False)


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
        info = node_for(cfg, conn, "resync", SUBSCRIBERS)
        have = local_tables(conn, queue)
        wanted = (
            have if all_ else pgnames.select(names, have, where=f"node {info.node_name}'s tables")
        )
        if copy_node is not None:
            check_copy_node(cfg, conn, info, copy_node, [str(t) for t in wanted])
        nodes: dict[str, str | None] = {str(t): copy_node for t in wanted}
        if find_copy_node:
            upstream = nearest_holders(cfg, info)
            nodes = {str(t): found_copy_node(info, str(t), upstream) for t in wanted}
        with conn.transaction():
            if copy_node is not None or find_copy_node:
                store_tables.set_copy_node(conn, queue, nodes)
            store_tables.reset_for_resync(conn, queue, [str(t) for t in wanted])
            store_tables.notify_copy_needed(conn, queue)
        return [str(t) for t in wanted]


def missing(cfg: JobConfig) -> list[tuple[str, str]]:
    """(kind, name) of what this node could replicate but does not: on the root, the tables and
    sequences of the database; on a branch or leaf, what its provider replicates."""
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = node_for(cfg, conn, "missing")
        have_t, have_s = set(local_tables(conn, queue)), set(local_seqs(conn, queue))
        if info.node_type == "root":
            tables = all_user(conn, pgnames.TABLE_KINDS)
            seqs = all_user(conn, SEQUENCE_KINDS)
        else:
            with connect(provider_location(cfg, info), autocommit=True, what="provider") as prov:
                tables, seqs = local_tables(prov, queue), local_seqs(prov, queue)
    return [("table", str(t)) for t in tables if t not in have_t] + [
        ("sequence", str(s)) for s in seqs if s not in have_s
    ]


def wait_sync(
    cfg: JobConfig, timeout: float | None, report: Callable[[int, int], None] | None = None
) -> int:
    """Waits until every local table is 'ok'; returns how many there are. A failed copy ends
    the wait with its error (run resync after fixing it)."""
    shown: tuple[int, int] | None = None
    counts = (0, 0)
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        node_for(cfg, conn, "wait-sync")

        def in_sync() -> bool:
            nonlocal shown, counts
            states = store_tables.table_states(conn, cfg.queue_name)
            failed = [s for s in states if s.merge_state is MergeState.FAILED]
            if failed:
                raise TableError(
                    f"copy of {failed[0].table_name} failed: {failed[0].copy_error}; fix it, "
                    f"then run resync {failed[0].table_name}"
                )
            counts = (sum(s.merge_state is MergeState.OK for s in states), len(states))
            if report is not None and shown != counts:
                shown = counts
                report(*counts)
            return counts[0] == counts[1]

        try:
            wait_for("the tables", in_sync, float("inf") if timeout is None else timeout, 0.2)
        except TimeoutError:
            ok, total = counts
            raise LondisteError(
                f"{total - ok} of {total} tables not in sync after {timeout:g}s; "
                "is the worker running? (see 'tables')"
            ) from None
    return counts[0]
