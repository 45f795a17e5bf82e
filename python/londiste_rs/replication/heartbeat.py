"""The worker's sign of life (issue 16): `status` tells a running worker from a dead one by a
heartbeat the worker writes into its node database (store/health.py, migration 0040), which
works wherever the worker and `status` run, unlike a pid.

A thread of its own, with a connection of its own, writes it every `heartbeat_period` seconds
(one small UPDATE, never one per batch): the worker's loop may be inside a long batch or an
initial copy for minutes, and a worker doing its job must not look dead meanwhile. The beat
carries what the loop does (`activity`: idle, working, retrying) and since when, so a loop that
hangs shows as "working for 3 h" rather than as alive and well. A clean stop writes stopped_at.

A beat that fails (the database restarts) is logged once and retried at the next period on a
new connection; the thread never stops the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any

import psycopg

from londiste_rs.config import JobConfig
from londiste_rs.pg.db import connect
from londiste_rs.retry import classify
from londiste_rs.store import health

log = logging.getLogger(__name__)

STOP_JOIN = 10.0  # seconds a stopping worker waits for its last beat, at most
CONNECT_TIMEOUT = 10  # seconds: an unreachable database must not hold the thread for long


class Heartbeat:
    """Started with the worker's loop, stopped when it ends; `activity` is set by the loop."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg
        self.period = cfg.heartbeat_period
        self.activity = "starting"
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None
        self._failing: str | None = None  # the message last logged, until a beat works again
        self._reloaded: JobConfig | None = None  # taken up by the next beat

    def use(self, cfg: JobConfig) -> None:
        """A reloaded job file: the next beat goes to its database, then every period of it."""
        self._reloaded = cfg

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Writes the last beat (stopped) and ends the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN)

    def _run(self) -> None:
        phase = "start"
        while True:
            stopping = self._stop.is_set()
            if self._beat("stop" if stopping else phase):
                phase = "beat"
            if stopping:
                break
            self._stop.wait(self.period)
        self._close()

    def _beat(self, phase: str) -> bool:
        cfg, self._reloaded = self._reloaded, None
        if cfg is not None:
            self._close()
            self.cfg, self.period = cfg, cfg.heartbeat_period
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.cfg.db, autocommit=True, what="node database",
                                     connect_timeout=CONNECT_TIMEOUT)  # fmt: skip
            known = health.beat(self._conn, self.cfg.queue_name, self.pid, self.host,
                                self.period, self.activity, phase)  # fmt: skip
        except Exception as e:  # the policy's wording; the next period tries again
            message = classify(e).message
            if message != self._failing:
                log.warning("heartbeat not written (status will show this worker as not "
                            "alive): %s; trying again every %gs", message, self.period)  # fmt: skip
                self._failing = message
            self._close()
            return False
        if self._failing is not None:
            log.info("heartbeat written again")
            self._failing = None
        return known

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
