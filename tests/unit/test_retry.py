"""The one retry policy of worker and ticker: which errors are retried at once (with backoff),
which wait for a fix, and what is said about them."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pgerrors

from londiste_rs.errors import (
    ConfigError,
    ConnectError,
    DecodeError,
    LondisteError,
    NotInstalledError,
    TableError,
    UsageError,
)
from londiste_rs.retry import PERMANENT_POLL, Backoff, PermanentError, Verdict, classify


def test_a_lost_server_is_retried_on_new_connections():
    e = psycopg.OperationalError(
        "server closed the connection unexpectedly\n"
        "\tThis probably means the server terminated abnormally"
    )
    assert classify(e) == Verdict(True, True, "server closed the connection unexpectedly")
    assert classify(psycopg.InterfaceError("the connection is closed")).lost_connection
    e = pgerrors.AdminShutdown("FATAL:  terminating connection due to administrator command")
    assert classify(e) == Verdict(True, True, "terminating connection due to administrator command")
    e = ConnectError("cannot connect to host=h password=sekrit dbname=x (refused)\nmore")
    assert classify(e) == Verdict(
        True, True, "cannot connect to host=h password=*** dbname=x (refused)"
    )


def test_what_no_retry_can_fix_waits_for_the_fix():
    for e in (
        PermanentError("position lost; run resync"),
        NotInstalledError("no londiste_rs schema in password=sekrit dbname=x; run create-leaf"),
        TableError("public.t: column x missing on the subscriber; ALTER TABLE"),
        DecodeError("event 17 of public.t cannot be decoded"),
    ):
        verdict = classify(e)
        assert not verdict.transient and not verdict.lost_connection, e
        assert verdict.message == str(e).replace("sekrit", "***")


def test_errors_inside_a_session_are_retried_on_the_same_connections():
    e = pgerrors.UniqueViolation(
        'duplicate key value violates unique constraint "t_pkey"\n'
        "DETAIL:  Key (id)=(1) already exists."
    )
    assert classify(e) == Verdict(
        True, False, 'duplicate key value violates unique constraint "t_pkey"'
    )
    e = pgerrors.RaiseException("a trigger on the subscriber said no")
    assert classify(e) == Verdict(True, False, "a trigger on the subscriber said no")
    for known in (UsageError("node paused"), ConfigError("bad"), LondisteError("x")):
        assert classify(known) == Verdict(True, False, str(known))


def test_a_lock_timeout_is_retried_on_its_session_and_recorded():
    e = pgerrors.LockNotAvailable("canceling statement due to lock timeout")
    assert classify(e) == Verdict(True, False, "canceling statement due to lock timeout")
    assert classify(pgerrors.QueryCanceled("statement timeout")).lost_connection is False
    # the server going away, or the connection itself, is a lost connection
    assert classify(pgerrors.AdminShutdown("terminating connection")).lost_connection
    assert classify(psycopg.OperationalError("server closed the connection")).lost_connection


def test_an_unforeseen_error_is_retried_and_named():
    assert classify(RuntimeError("boom\nat line 3")) == Verdict(True, False, "RuntimeError: boom")
    assert classify(KeyError("k")).message == "KeyError: 'k'"
    assert classify(RuntimeError()).message == "RuntimeError: RuntimeError"
    e = RuntimeError("dsn was postgresql://u:sekrit@h/db")
    assert classify(e).message == "RuntimeError: dsn was postgresql://u:***@h/db"


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success():
    b = Backoff(cap=20.0)
    assert [b.failed() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    b.reset()
    assert b.failed() == 0.5
    fast = Backoff(cap=1.0, first=0.1)
    assert [fast.failed() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])


def test_backoff_never_overflows():
    b = Backoff(cap=1e12)
    waits = [b.failed() for _ in range(2000)]
    assert max(waits) == 0.5 * 2**16 and waits[-1] == waits[17]


def test_a_permanent_error_is_looked_at_again_only_slowly():
    permanent = Verdict(False, False, "fix it")
    b = Backoff(cap=5.0)
    assert b.failed(permanent) == PERMANENT_POLL
    assert Backoff(cap=120.0).failed(permanent) == 120.0
    # a transient verdict follows the doubling
    assert b.failed(Verdict(True, False, "again")) == 1.0
