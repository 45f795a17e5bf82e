"""What the ticker calls in a database's londiste_rs schema (pgqd's job, internals §2): ticks,
retry re-inserts, the maintenance operations `maint_operations()` lists, and the consumers that
hold back rotation. Only functions and tables of schema londiste_rs are ever called or
vacuumed: a name elsewhere belongs to a role the ticker has no reason to trust."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.store.schema import SCHEMA

Conn = psycopg.Connection[Any]

MAX_REPEAT = 100  # calls of one maintenance function per round, at most


@dataclass(frozen=True)
class Blocker:
    """A consumer a due rotation of the event tables waits for."""

    queue: str
    consumer: str
    lag: timedelta | None
    pending_events: int | None
    behind_switch: bool  # the consumer itself (else: a transaction open at its last tick)
    max_consumer_lag: timedelta | None


def _has(conn: Conn, signature: str) -> bool:
    row = conn.execute(
        "select pg_catalog.to_regprocedure(%s) is not null", [f"{SCHEMA}.{signature}"]
    ).fetchone()
    return bool(row and row[0])


def has_schema(conn: Conn) -> bool:
    """Whether the database has our schema (its ticker function)."""
    return _has(conn, "ticker()")


def _ours(name: str) -> sql.Identifier | None:
    """`londiste_rs.name`, quoted part by part; None for a name in any other schema (or none)."""
    parts = name.split(".")
    if len(parts) != 2 or parts[0] != SCHEMA or not parts[1]:
        return None
    return sql.Identifier(*parts)


def _repeat(conn: Conn, query: sql.Composed, params: list[Any]) -> int:
    """Runs a counting maintenance call until it reports no more work; returns the calls made."""
    for calls in range(1, MAX_REPEAT + 1):
        row = conn.execute(query, params).fetchone()
        value = row[0] if row else None
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return calls
    return MAX_REPEAT


def tick_all(conn: Conn) -> int:
    """Ticks every queue of the database that needs a tick; returns how many were ticked."""
    row = conn.execute(sql.SQL("select {}.ticker()").format(sql.Identifier(SCHEMA))).fetchone()
    return int(row[0] or 0) if row else 0


def retry_events(conn: Conn) -> int:
    """Moves due retry events back into their queues; returns the calls made."""
    query = sql.SQL("select {}.maint_retry_events()").format(sql.Identifier(SCHEMA))
    return _repeat(conn, query, [])


def operations(conn: Conn) -> list[tuple[str, str | None]]:
    """(function or 'vacuum', argument) for each maintenance step due, as listed."""
    rows = conn.execute(
        sql.SQL("select * from {}.maint_operations()").format(sql.Identifier(SCHEMA))
    ).fetchall()
    return [(str(r[0]), None if len(r) < 2 or r[1] is None else str(r[1])) for r in rows]


def run_operation(conn: Conn, func: str, arg: str | None) -> int | None:
    """Runs one listed step; returns the calls made, or None when it is not ours (skipped)."""
    if func.lower() == "vacuum":
        table = _ours(arg) if arg else None
        if table is None:
            return None
        conn.execute(sql.SQL("vacuum {}").format(table))
        return 1
    name = _ours(func)
    if name is None:
        return None
    if arg is None:
        return _repeat(conn, sql.SQL("select {}()").format(name), [])
    return _repeat(conn, sql.SQL("select {}(%s::pg_catalog.text)").format(name), [arg])


def rotation_blockers(conn: Conn) -> list[Blocker]:
    """The consumers due rotations wait for ([] on a schema older than this function)."""
    if not _has(conn, "rotation_blockers(text)"):
        return []
    rows = conn.execute(
        sql.SQL(
            "select queue_name, consumer_name, lag, pending_events, behind_switch,"
            " max_consumer_lag from {}.rotation_blockers()"
        ).format(sql.Identifier(SCHEMA))
    ).fetchall()
    return [Blocker(str(r[0]), str(r[1]), r[2], r[3], bool(r[4]), r[5]) for r in rows]


def unregister_consumer(conn: Conn, queue: str, consumer: str) -> None:
    conn.execute(
        sql.SQL("select {}.unregister_consumer(%s, %s)").format(sql.Identifier(SCHEMA)),
        [queue, consumer],
    )


def max_lag_statement(queue: str, lag: str) -> str:
    """The statement that sets a queue's max_consumer_lag, to show to the user."""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return f"select {SCHEMA}.set_queue_config({literal(queue)}, 'max_consumer_lag', {literal(lag)})"
