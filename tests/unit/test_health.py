"""cascade/health.py: when `status` takes a worker for dead and a ticker for missing, and the
one line it says for each (the server-backed behaviour is in tests/test_cli_status.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from londiste_rs.cascade.health import (
    BEAT_SLACK,
    MISSED_BEATS,
    TICK_GRACE,
    ago,
    ticker_finding,
    worker_alive,
    worker_finding,
)
from londiste_rs.store.health import Heartbeat, QueueTicks

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BEAT = Heartbeat(
    pid=42, host="db2", started_at=NOW, beat_at=NOW, beat_age=1.0, period=5.0,
    stopped_at=None, activity="idle", activity_seconds=30.0,
)  # fmt: skip
TICKS = QueueTicks(
    queue="q1", last_tick_id=7, tick_age=1.0, events_waiting=0, external_ticker=False,
    ticker_paused=False, max_lag=3.0, idle_period=60.0,
)  # fmt: skip
START = "'londiste-rs leaf.ini -d worker'"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.4, "0s"), (89, "89s"), (300, "5 min"), (5399, "90 min"), (7200, "2 h"),
     (3 * 86400, "3 days")],
)  # fmt: skip
def test_ago(seconds: float, said: str) -> None:
    assert ago(seconds) == said


def test_a_worker_is_alive_until_it_missed_its_beats() -> None:
    bound = MISSED_BEATS * BEAT.period + BEAT_SLACK
    assert worker_alive(replace(BEAT, beat_age=bound))
    assert worker_finding(replace(BEAT, beat_age=bound), START) is None
    assert not worker_alive(replace(BEAT, beat_age=bound + 0.1))
    assert worker_finding(replace(BEAT, beat_age=bound + 0.1), START) == (
        "its worker is silent: no heartbeat for 17s (pid 42 on db2; one was due every 5s): it "
        "died or cannot reach this database; see its log, then start it again with "
        "'londiste-rs leaf.ini -d worker'"
    )


def test_a_stopped_or_never_started_worker() -> None:
    stopped = replace(BEAT, stopped_at=NOW, beat_age=600.0)
    assert not worker_alive(stopped)
    assert worker_finding(stopped, START) == (
        "its worker stopped 10 min ago (pid 42 on db2): start it again with "
        "'londiste-rs leaf.ini -d worker'"
    )
    assert not worker_alive(None)
    assert worker_finding(None, START) == (
        "no worker has run for this node (it never sent a heartbeat): start it with "
        "'londiste-rs leaf.ini -d worker'"
    )


def test_overdue_ticks_name_the_ticker() -> None:
    waiting = replace(TICKS, events_waiting=1204)
    assert ticker_finding(replace(waiting, tick_age=3.0 + TICK_GRACE)) is None
    assert ticker_finding(replace(waiting, tick_age=300.0)) == (
        "no tick for 5 min while 1,204 events wait: is `londiste-rs ticker` running for this "
        "database? (if it is, its log says why it skips it)"
    )
    # nothing waits: an idle queue is still ticked every ticker_idle_period
    assert ticker_finding(replace(TICKS, tick_age=60.0 + TICK_GRACE)) is None
    assert ticker_finding(replace(TICKS, tick_age=600.0)) == (
        "no tick for 10 min (an idle queue is ticked every 60s): is `londiste-rs ticker` "
        "running for this database? (if it is, its log says why it skips it)"
    )


def test_ticks_not_the_tickers_job() -> None:
    late = replace(TICKS, tick_age=3600.0, events_waiting=5)
    # a branch's queue is ticked by the branch's worker, whose own finding covers it
    assert ticker_finding(replace(late, external_ticker=True)) is None
    assert ticker_finding(None) is None  # a leaf has no queue
    assert ticker_finding(replace(late, ticker_paused=True)) == (
        "ticks are paused on this queue (ticker_paused) while 5 events wait: let them move "
        "with: select londiste_rs.set_queue_config('q1', 'ticker_paused', 'false')"
    )
    assert ticker_finding(replace(late, ticker_paused=True, events_waiting=0)) is None
