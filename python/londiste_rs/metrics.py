"""Prometheus metrics of the daemons (`metrics_listen = HOST:PORT` in the ini; off by default).

The worker's and the ticker's loops update in-memory metrics (prometheus-client's objects)
as they go; the HTTP server (prometheus-client's, on its own thread) only reads them. A scrape
thus never waits for a batch and never touches a database. Figures that need a query (the
provider's last tick, the tables by state, a root's events waiting) are read by the worker's
loop on its own connections, at most every POLL_INTERVAL seconds, and only when metrics are on.

One job per process: the metrics live in this module's registry.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from londiste_rs.errors import ConfigError
from londiste_rs.progress import Progress
from londiste_rs.store import health as store_health
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import Conn
from londiste_rs.store.tables import MergeState

log = logging.getLogger(__name__)

# Seconds between the worker's metric queries (provider's last tick, table states, events
# waiting on a root).
POLL_INTERVAL = 5.0

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_NODE = ("queue", "node")
NODE_LAG = Gauge(
    "londiste_rs_node_lag_seconds",
    "Age of the last tick this node applied (a root: its queue's last tick).",
    _NODE, registry=REGISTRY,
)  # fmt: skip
TICKS_BEHIND = Gauge(
    "londiste_rs_ticks_behind",
    "Ticks of the provider's queue this node has not applied yet.",
    _NODE, registry=REGISTRY,
)  # fmt: skip
EVENTS_APPLIED = Counter(
    "londiste_rs_events_applied",
    "Events this worker applied.",
    _NODE, registry=REGISTRY,
)  # fmt: skip
BATCHES_APPLIED = Counter(
    "londiste_rs_batches_applied",
    "Batches (ticks) this worker applied.",
    _NODE, registry=REGISTRY,
)  # fmt: skip
APPLY_SECONDS = Histogram(
    "londiste_rs_apply_seconds",
    "Seconds one apply (one transaction of one or more batches) took.",
    _NODE, registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)  # fmt: skip
TABLES = Gauge(
    "londiste_rs_tables",
    "Tables of this node by state (ok, in-copy, catching-up, failed, ...).",
    (*_NODE, "state"), registry=REGISTRY,
)  # fmt: skip
COPY_ROWS = Counter(
    "londiste_rs_copy_rows",
    "Rows this worker copied into a table (initial copy).",
    (*_NODE, "table"), registry=REGISTRY,
)  # fmt: skip
COPY_BYTES = Counter(
    "londiste_rs_copy_bytes",
    "Bytes this worker copied into a table (initial copy).",
    (*_NODE, "table"), registry=REGISTRY,
)  # fmt: skip
LAST_ERROR = Gauge(
    "londiste_rs_last_error_timestamp_seconds",
    "When this worker last met an error (Unix time; 0: none since it started).",
    _NODE, registry=REGISTRY,
)  # fmt: skip
QUEUE_PENDING = Gauge(
    "londiste_rs_queue_events_pending",
    "Events in the root's queue not yet in a tick.",
    _NODE, registry=REGISTRY,
)  # fmt: skip
TICKER_TICKS = Counter(
    "londiste_rs_ticker_ticks",
    "Ticks the ticker made, per database.",
    ("database",), registry=REGISTRY,
)  # fmt: skip


def _cannot_listen(config: Path, listen: tuple[str, int], e: OSError) -> ConfigError:
    return ConfigError(
        f"{config}: metrics_listen = {listen[0]}:{listen[1]}: cannot listen there "
        f"({e.strerror or e}); choose a free port or an address of this machine"
    )


def check_listen(listen: tuple[str, int] | None, config: Path) -> None:
    """Refuses, with one line, an address the endpoint cannot listen on; checked before a
    daemon detaches, so that -d reports it on the terminal."""
    if listen is None:
        return
    try:
        infos = socket.getaddrinfo(listen[0], listen[1], type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise _cannot_listen(config, listen, e) from None


@contextlib.contextmanager
def serving(listen: tuple[str, int] | None, config: Path) -> Iterator[None]:
    """Serves `/metrics` on `listen` (nothing when None) while the block runs, from a thread
    of prometheus-client's HTTP server that reads only the in-memory metrics."""
    if listen is None:
        yield
        return
    try:
        server, thread = start_http_server(listen[1], addr=listen[0], registry=REGISTRY)
    except OSError as e:
        raise _cannot_listen(config, listen, e) from None
    log.info("metrics on http://%s:%d/metrics", *listen)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class NodeMetrics:
    """One worker's metrics: its loop calls these after each step, batch, copy update and
    error. `poll` runs the queries only when metrics are on and POLL_INTERVAL has passed."""

    def __init__(self, queue: str, enabled: bool):
        self.queue = queue
        self.enabled = enabled
        self.node = ""
        self.next_poll = 0.0
        self.last_tick_id: int | None = None
        self.tick_epoch: float | None = None
        self.provider_tick: int | None = None
        self.last_error = 0.0  # met before the node was known: exported once it is
        self._copied: dict[str, tuple[int, int]] = {}  # table -> (rows, bytes) counted so far
        self._lock = threading.Lock()  # the copy threads report progress concurrently

    def _set_node(self, node: str) -> None:
        if node == self.node:
            return
        self.node = node
        # the lag is computed at scrape time from the position, without a query
        NODE_LAG.labels(self.queue, node).set_function(self._lag)
        LAST_ERROR.labels(self.queue, node).set(self.last_error)
        for counter in (EVENTS_APPLIED, BATCHES_APPLIED):
            counter.labels(self.queue, node)  # exported as 0 before the first batch

    def _lag(self) -> float:
        """NaN until the node has a position (a lag of 0 would claim it is caught up)."""
        return math.nan if self.tick_epoch is None else max(0.0, time.time() - self.tick_epoch)

    def position(self, node: str, tick_id: int | None, tick_time: datetime | None) -> None:
        """The node's last applied tick (a root: its queue's last tick)."""
        self._set_node(node)
        if tick_id is not None and (self.last_tick_id is None or tick_id >= self.last_tick_id):
            self.last_tick_id = tick_id
            if tick_time is not None:
                self.tick_epoch = tick_time.timestamp()
        self._behind()

    def _behind(self) -> None:
        if self.provider_tick is not None and self.last_tick_id is not None:
            behind = max(0, self.provider_tick - self.last_tick_id)
            TICKS_BEHIND.labels(self.queue, self.node).set(behind)

    def batch(self, events: int, batches: int, seconds: float) -> None:
        EVENTS_APPLIED.labels(self.queue, self.node).inc(events)
        BATCHES_APPLIED.labels(self.queue, self.node).inc(batches)
        APPLY_SECONDS.labels(self.queue, self.node).observe(seconds)

    def error(self) -> None:
        self.last_error = time.time()
        if self.node:
            LAST_ERROR.labels(self.queue, self.node).set(self.last_error)

    def copy_progress(self, p: Progress) -> None:
        """A copy's running totals: the counters move by what is new since the last report
        (a new copy of the table starts from 0 again)."""
        table, rows, nbytes = p.table, p.rows, p.bytes
        with self._lock:
            seen_rows, seen_bytes = self._copied.get(table, (0, 0))
            if rows < seen_rows:
                seen_rows = seen_bytes = 0
            self._copied[table] = (rows, nbytes)
        COPY_ROWS.labels(self.queue, self.node, table).inc(max(0, rows - seen_rows))
        COPY_BYTES.labels(self.queue, self.node, table).inc(max(0, nbytes - seen_bytes))

    def poll(self, local: Conn, provider: Conn | None) -> None:
        """The figures that need a query, read on the worker's own connections (`provider`:
        None on a root) when metrics are on, at most every POLL_INTERVAL seconds."""
        if not self.enabled or time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + POLL_INTERVAL
        counts = dict.fromkeys((s.value for s in MergeState), 0)
        for t in store_tables.table_states(local, self.queue):
            counts[t.merge_state.value] += 1
        for state, n in counts.items():
            TABLES.labels(self.queue, self.node, state).set(n)
        if provider is not None:
            tick = store_queue.last_tick_id(provider, self.queue)
            if tick is not None:
                self.provider_tick = tick
                self._behind()
        else:
            ticks = store_health.queue_ticks(local, self.queue)
            if ticks is not None:
                QUEUE_PENDING.labels(self.queue, self.node).set(ticks.events_waiting)
                self.provider_tick = ticks.last_tick_id
                self._behind()


def ticked(database: str, ticks: int) -> None:
    """The ticker made `ticks` ticks in `database`."""
    TICKER_TICKS.labels(database).inc(ticks)
