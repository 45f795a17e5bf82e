"""Medians, percentiles and a peak-memory sampler."""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Callable, Sequence
from pathlib import Path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by the nearest-rank method."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return float(ordered[rank - 1])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def descendants(pid: int) -> list[int]:
    """The process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(_children(p))
    return found


def private_rss(pid: int) -> int:
    """Resident anonymous (private) memory of a process and its descendants, in bytes.
    Anonymous memory leaves out shared libraries and, for a PostgreSQL backend, the shared
    buffers it touched, so a client worker and a server apply worker compare fairly."""
    total = 0
    for p in descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("RssAnon:"):
                total += int(line.split()[1]) * 1024
    return total


class PeakMemory:
    """Samples `pids()` every `interval` seconds in a thread; `peak` is the largest total of
    private resident memory seen. Use as a context manager around the work."""

    def __init__(self, pids: Callable[[], Sequence[int]], interval: float = 0.02):
        self.pids = pids
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                current = sum(private_rss(p) for p in self.pids())
            except Exception:  # the process may be between states; sample again
                current = 0
            self.peak = max(self.peak, current)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
