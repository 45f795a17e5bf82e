"""The table registry (minimal add-table) and the initial copy of a table added on a subscriber.

On a root, `add-table` attaches the capture trigger (`capture_attach`) and registers the table
as 'ok'. On a branch or leaf it registers the table with state NULL (needs its copy), or 'ok'
with `--expect-sync`; the worker then copies it between two batches (`copy_pending`): binary
COPY out of the provider under one snapshot, into the emptied local table, in the worker's
transaction. That snapshot is stored with the table (`custom_snapshot`): events of
transactions visible in it are already in the copy, and the decoder skips them (reference §3.4).
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.config import JobConfig
from londiste_rs.db import connect
from londiste_rs.errors import TableError
from londiste_rs.node import require_node

log = logging.getLogger(__name__)

# Every ordinary or partitioned table outside the system schemas and ours, by global name.
_USER_TABLES = """
select quote_ident(n.nspname) || '.' || quote_ident(c.relname)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and not c.relispartition
  and n.nspname not in ('pg_catalog', 'information_schema', 'londiste_rs')
  and n.nspname not like 'pg\\_%%'
order by 1
"""


def global_name(conn: psycopg.Connection[Any], table: str) -> str | None:
    """`schema.table` quoted as ev_extra1 has it; `public` when no schema is given."""
    name = table if "." in table else f"public.{table}"
    try:
        row = conn.execute(
            "select quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
            " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where c.oid = to_regclass(%s)",
            [name],
        ).fetchone()
    except psycopg.errors.InvalidName:
        return None
    return None if row is None else str(row[0])


def _expand(candidates: list[str], patterns: list[str]) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        full = pat if "." in pat else f"public.{pat}"
        hits = [c for c in candidates if fnmatch.fnmatchcase(c.replace('"', ""), full)]
        out.extend(h for h in hits if h not in out)
    return out


def registered(conn: psycopg.Connection[Any], queue: str) -> list[tuple[str, str | None]]:
    """(table, merge_state) of the queue's local tables."""
    return [
        (str(r[0]), r[1])
        for r in conn.execute(
            "select table_name, merge_state from londiste_rs.table_info"
            " where queue_name = %s and local order by table_name",
            [queue],
        ).fetchall()
    ]


def add_tables(cfg: JobConfig, names: list[str], all_: bool, expect_sync: bool) -> list[str]:
    """Registers tables on the config's node (see the module doc); returns the names added."""
    if not names and not all_:
        raise TableError("add-table needs table names or --all")
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, verb="add-table")
        if info.node_type == "root":
            candidates = [str(r[0]) for r in conn.execute(_USER_TABLES).fetchall()]
        else:
            assert info.provider_location is not None
            with connect(info.provider_location, autocommit=True, what="provider") as prov:
                candidates = [t for t, _ in registered(prov, queue)]
        wanted = candidates if all_ else _wanted(conn, info.node_type, candidates, names)
        have = {t for t, _ in registered(conn, queue)}
        added: list[str] = []
        with conn.transaction():
            for table in wanted:
                if table in have:
                    continue
                if global_name(conn, table) is None:
                    raise TableError(
                        f"table {table} does not exist in {conn.info.dbname}; create it "
                        "(same columns as on the provider) and run add-table again"
                    )
                if info.node_type == "root":
                    conn.execute("select londiste_rs.capture_attach(%s, %s)", [queue, table])
                state = "ok" if info.node_type == "root" or expect_sync else None
                conn.execute(
                    "insert into londiste_rs.table_info (queue_name, table_name, merge_state)"
                    " values (%s, %s, %s)",
                    [queue, table, state],
                )
                added.append(table)
        return added


def _wanted(
    conn: psycopg.Connection[Any], kind: str, candidates: list[str], names: list[str]
) -> list[str]:
    out: list[str] = []
    for name in names:
        if "*" in name or "?" in name:
            out += [t for t in _expand(candidates, [name]) if t not in out]
            continue
        g = global_name(conn, name)
        if g is None:
            raise TableError(
                f"table {name} does not exist in {conn.info.dbname}; check the name or create it"
            )
        if kind != "root" and g not in candidates:
            raise TableError(
                f"table {g} is not replicated by the provider; add it there first "
                f"(add-table on the provider)"
            )
        if g not in out:
            out.append(g)
    return out


# -- the initial copy --------------------------------------------------------------------------
def pending_copies(conn: psycopg.Connection[Any], queue: str) -> list[str]:
    return [t for t, state in registered(conn, queue) if state is None]


def copy_pending(
    local: psycopg.Connection[Any], prov: psycopg.Connection[Any], queue: str, tables: list[str]
) -> None:
    """Copies `tables` from the provider under one snapshot, inside the caller's transaction
    on `local`, and marks them 'ok' with that snapshot (the caller commits with its tick)."""
    with prov.transaction():
        prov.execute("set transaction isolation level repeatable read, read only")
        snap = prov.execute("select pg_current_snapshot()::text").fetchone()
        assert snap is not None
        tables = parents_first(local, tables)
        targets = sql.SQL(", ").join(_ident(t) for t in tables)
        local.execute(sql.SQL("truncate {}").format(targets))
        for table in tables:
            cols = [
                str(r[0])
                for r in local.execute(
                    "select attname from pg_attribute where attrelid = %s::regclass"
                    " and attnum > 0 and not attisdropped and attgenerated = ''"
                    " order by attnum",
                    [table],
                ).fetchall()
            ]
            collist = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            rows = 0
            with (
                prov.cursor().copy(
                    sql.SQL("copy (select {} from only {}) to stdout (format binary)").format(
                        collist, _ident(table)
                    )
                ) as out,
                local.cursor().copy(
                    sql.SQL("copy {} ({}) from stdin (format binary)").format(
                        _ident(table), collist
                    )
                ) as inp,
            ):
                for block in out:
                    inp.write(block)
                    rows += 1
            local.execute(
                "update londiste_rs.table_info set merge_state = 'ok', custom_snapshot = %s"
                " where queue_name = %s and table_name = %s",
                [snap[0], queue, table],
            )
            log.info("%s: initial copy done", table)


def _ident(table: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in split_name(table))


def split_name(name: str) -> list[str]:
    """'schema.table' (either part possibly double-quoted) -> its unquoted parts."""
    parts: list[str] = []
    cur, quoted, i = "", False, 0
    while i < len(name):
        ch = name[i]
        if ch == '"':
            if quoted and i + 1 < len(name) and name[i + 1] == '"':
                cur += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    return parts


def release_copy_snapshots(
    local: psycopg.Connection[Any], prov: psycopg.Connection[Any], queue: str, tick_id: int
) -> None:
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


def parents_first(conn: psycopg.Connection[Any], tables: list[str]) -> list[str]:
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
