"""Bounded waits for locks on application tables.

A statement that needs a strong lock on a table (CREATE/DROP TRIGGER, ALTER TABLE, DROP)
waits behind every open transaction that has written the table, and while it waits every
later writer of the table waits behind it. Operations that take such locks (add-table,
remove-table, drop-node, install) therefore run their transactions with
`SET LOCAL lock_timeout` (`set_lock_timeout`, the job ini's `lock_timeout`), so no writer
waits behind them longer than that. They retry a transaction that timed out a few times,
pausing between tries so the writers go on (`with_lock_retries`). Each try is a short
transaction that holds the locks it got only until it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors

log = logging.getLogger(__name__)

T = TypeVar("T")

# Tries of a transaction whose lock wait timed out, and the pause before the second try
# (doubled each time, never more than the lock timeout itself).
LOCK_TRIES = 4
FIRST_PAUSE = 0.25


class LockBusy(Exception):
    """A transaction could not get its locks in `LOCK_TRIES` tries of `lock_timeout` each."""

    def __init__(self, tries: int, timeout: float):
        super().__init__(f"no lock after {tries} tries of {timeout:g}s")
        self.tries = tries
        self.timeout = timeout


def set_lock_timeout(conn: psycopg.Connection[Any], seconds: float | None) -> None:
    """In the current transaction, lock waits end with an error after `seconds` (None or 0:
    as the session has it)."""
    if seconds:
        millis = max(1, round(seconds * 1000))
        conn.execute("select pg_catalog.set_config('lock_timeout', %s, true)", [f"{millis}ms"])


def with_lock_retries(
    conn: psycopg.Connection[Any],
    lock_timeout: float,
    work: Callable[[], T],
    what: str,
) -> T:
    """Runs `work` in its own transaction on `conn` (autocommit) under `lock_timeout`; when a
    lock wait times out, pauses and tries again, at most LOCK_TRIES times in all. Raises
    LockBusy after the last try."""
    pause = FIRST_PAUSE
    for attempt in range(1, LOCK_TRIES + 1):
        try:
            with conn.transaction():
                set_lock_timeout(conn, lock_timeout)
                return work()
        except pgerrors.LockNotAvailable:
            if attempt == LOCK_TRIES:
                break
            log.info(
                "%s: no lock within %gs (try %d of %d); trying again in %.2fs",
                what, lock_timeout, attempt, LOCK_TRIES, pause,
            )  # fmt: skip
            time.sleep(pause)
            pause = min(pause * 2, max(lock_timeout, FIRST_PAUSE))
    raise LockBusy(LOCK_TRIES, lock_timeout)


# Lock modes that conflict with the ShareRowExclusiveLock of CREATE TRIGGER (and so with
# the AccessExclusiveLock of DROP TRIGGER too).
_CONFLICTING = (
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


def lock_holders(conn: psycopg.Connection[Any], table: str) -> str:
    """Who holds locks on `table` (a name as SQL reads it) that a trigger change waits for:
    'pid 123 (role app, transaction open 35s), ...', or '' when none is seen now."""
    try:
        rows = conn.execute(
            "select l.pid, a.usename, extract(epoch from now() - a.xact_start)::float8"
            " from pg_catalog.pg_locks l"
            " left join pg_catalog.pg_stat_activity a on a.pid = l.pid"
            " where l.locktype = 'relation' and l.granted and l.pid <> pg_catalog.pg_backend_pid()"
            "   and l.database = (select oid from pg_catalog.pg_database"
            "                      where datname = pg_catalog.current_database())"
            "   and l.relation = pg_catalog.to_regclass(%s)"
            "   and l.mode = any(%s)"
            " group by l.pid, a.usename, a.xact_start order by a.xact_start nulls last",
            [table, list(_CONFLICTING)],
        ).fetchall()
    except psycopg.Error:
        return ""
    parts = []
    for pid, user, age in rows[:3]:
        who = f"role {user}" if user else "another role"
        since = f", transaction open {age:.0f}s" if age is not None else ""
        parts.append(f"pid {pid} ({who}{since})")
    if len(rows) > 3:
        parts.append(f"and {len(rows) - 3} more")
    return ", ".join(parts)
