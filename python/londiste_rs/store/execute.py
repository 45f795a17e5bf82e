"""The execute files applied on a node (`applied_execute`, migration 0030), the events that
carry a file through the queue, and making the root's capture follow a file's changes.

Each call is one statement on the caller's connection and transaction (execute runs all of
them in the transaction of the file's statements).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from londiste_rs.pg.names import TableName, name_of
from londiste_rs.store import tables as store_tables

Conn = psycopg.Connection[Any]

# The event that runs a file on every node, at its place in the stream (londiste3's type):
# ev_data the file's text, ev_extra1 its name, ev_extra2 options ("force=1").
EXECUTE = "EXECUTE"
# Queued first in the transaction of an execute, with the same fields, ev_extra2 completed
# at the end with the ranges of the row events the file's statements queued (`own=1-9,12-12`):
# the nodes that run the file leave those rows out (the statements change them there), as if
# the root had not captured them.
EXECUTE_BEGIN = "londiste_rs.execute-begin"


@dataclass(frozen=True)
class Applied:
    """A file recorded on this node: when, and what was done with it here."""

    file: str
    time: datetime
    outcome: str  # 'executed' | 'not needed' | 'skipped'


def applied(conn: Conn, queue: str, file: str) -> Applied | None:
    row = conn.execute(
        "select execute_file, execute_time, outcome from londiste_rs.applied_execute"
        " where queue_name = %s and execute_file = %s",
        [queue, file],
    ).fetchone()
    return None if row is None else Applied(row[0], row[1], row[2])


def applied_files(conn: Conn, queue: str) -> list[Applied]:
    rows = conn.execute(
        "select execute_file, execute_time, outcome from londiste_rs.applied_execute"
        " where queue_name = %s order by execute_time, execute_file",
        [queue],
    ).fetchall()
    return [Applied(*r) for r in rows]


def record(conn: Conn, queue: str, file: str, text: str, attrs: str, outcome: str) -> None:
    """Records the file as applied here (again: its time and outcome are replaced)."""
    conn.execute(
        "insert into londiste_rs.applied_execute"
        " (queue_name, execute_file, execute_sql, execute_attrs, outcome)"
        " values (%s, %s, %s, %s, %s)"
        " on conflict (queue_name, execute_file) do update"
        " set execute_time = now(), execute_sql = excluded.execute_sql,"
        " execute_attrs = excluded.execute_attrs, outcome = excluded.outcome",
        [queue, file, text, attrs or None, outcome],
    )


def queue_file(conn: Conn, queue: str, ev_type: str, file: str, text: str, options: str) -> int:
    """Queues one of the two events of a file (EXECUTE_BEGIN, EXECUTE); returns its id."""
    row = conn.execute(
        "select londiste_rs.insert_event(%s, %s, %s::bytea, %s, %s::bytea, null, null)",
        [queue, ev_type, text.encode(), file, options.encode() or None],
    ).fetchone()
    assert row is not None
    return int(row[0])


def own_events(conn: Conn, queue: str, after: int) -> list[tuple[int, int]]:
    """The row events this transaction queued after event `after`, as (lo, hi) ranges."""
    rows = conn.execute(
        "select lo, hi from londiste_rs.execute_own_events(%s, %s)", [queue, after]
    ).fetchall()
    return [(int(lo), int(hi)) for lo, hi in rows]


def mark(conn: Conn, queue: str, ev_id: int, options: str) -> None:
    """Sets ev_extra2 of an event this transaction queued."""
    conn.execute(
        "select londiste_rs.execute_mark(%s, %s, %s::bytea)", [queue, ev_id, options.encode()]
    )


def capture_follow(conn: Conn, queue: str) -> list[str]:
    """On the root: generates again the capture function of every table of the queue whose
    columns or key changed since it was generated (sql/functions/execute/capture_follow.sql);
    returns those tables."""
    rows = conn.execute("select * from londiste_rs.capture_follow(%s)", [queue]).fetchall()
    return [str(r[0]) for r in rows]


def local_objects(conn: Conn, queue: str) -> tuple[dict[TableName, TableName], set[TableName]]:
    """The tables replicated here (global name -> local table) and sequences, for a file's
    header attributes."""
    tables = {
        name_of(t.table_name): name_of(t.dest_table or t.table_name)
        for t in store_tables.table_states(conn, queue)
    }
    seqs = {name_of(s) for s in store_tables.seq_names(conn, queue)}
    return tables, seqs
