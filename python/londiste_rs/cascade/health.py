"""Why nothing moves (issue 16): the rules by which `status` finds that a node needs
attention, each finding one line naming the likely cause and the fix. `status` exits non-zero
when any node has one.

- the worker: alive while its heartbeat (replication/heartbeat.py) is at most MISSED_BEATS
  periods (+ BEAT_SLACK seconds) old; one that never beat, stopped, or went silent needs
  attention, with how to start it again;
- the ticker: a root's queue must be ticked within its ticker_max_lag of an event (within its
  ticker_idle_period when nothing waits); TICK_GRACE seconds later, a tick is overdue: no
  ticker runs for that database (or it skips it, and says why in its log). A branch's queue
  is ticked by the branch's worker, so its worker's finding covers it;
- its last error (the worker records it with its fix), failed table copies, and consumers no
  subscriber node reads (they hold back the rotation of the event tables).
"""

from __future__ import annotations

from londiste_rs.store import health as store_health
from londiste_rs.store.health import Heartbeat, QueueTicks

MISSED_BEATS = 3  # a worker is taken for dead after this many heartbeats did not come
BEAT_SLACK = 2.0  # seconds: a beat may be late by this much on a busy database
TICK_GRACE = 10.0  # seconds a tick may be late before the ticker is taken for missing


def ago(seconds: float) -> str:
    """A duration as people say it: 4s, 5 min, 3 h, 2 days."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def worker_alive(beat: Heartbeat | None) -> bool:
    if beat is None or beat.stopped_at is not None:
        return False
    return beat.beat_age <= MISSED_BEATS * beat.period + BEAT_SLACK


def worker_finding(beat: Heartbeat | None, start: str) -> str | None:
    """What is wrong with the node's worker (None: it is alive). `start`: the command that
    starts it."""
    if beat is None:
        return f"no worker has run for this node (it never sent a heartbeat): start it with {start}"
    where = f"pid {beat.pid} on {beat.host}"
    if beat.stopped_at is not None:
        return f"its worker stopped {ago(beat.beat_age)} ago ({where}): start it again with {start}"
    if worker_alive(beat):
        return None
    return (
        f"its worker is silent: no heartbeat for {ago(beat.beat_age)} ({where}; one was due "
        f"every {beat.period:g}s): it died or cannot reach this database; see its log, then "
        f"start it again with {start}"
    )


def ticker_finding(ticks: QueueTicks | None) -> str | None:
    """What is wrong with the ticks of a root's queue (None: they come in time, or the queue
    is ticked by a branch's worker)."""
    if ticks is None or ticks.external_ticker or ticks.tick_age is None:
        return None
    waiting = ticks.events_waiting
    if ticks.ticker_paused:
        if not waiting:
            return None
        return (
            f"ticks are paused on this queue (ticker_paused) while {waiting:,} events wait: "
            f"let them move with: {store_health.unpause_statement(ticks.queue)}"
        )
    due = ticks.max_lag if waiting else ticks.idle_period
    if ticks.tick_age <= due + TICK_GRACE:
        return None
    what = f"while {waiting:,} events wait" if waiting else "(an idle queue is ticked every "
    if not waiting:
        what += f"{ago(ticks.idle_period)})"
    return (
        f"no tick for {ago(ticks.tick_age)} {what}: is `londiste-rs ticker` running for this "
        "database? (if it is, its log says why it skips it)"
    )
