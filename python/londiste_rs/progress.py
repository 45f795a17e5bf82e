"""Progress of initial copies: one `Progress` per table and update, rendered as live bars on a
terminal and as plain log lines otherwise (logfiles, pipes, daemons)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Where one table's copy stands. `total_rows` is an estimate from the provider's
    pg_class (reltuples scaled to the table's current size), None when never analyzed."""

    table: str
    rows: int
    bytes: int
    total_rows: int | None
    elapsed: float
    done: bool = False

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        if self.done:
            return 1.0
        if not self.total_rows:
            return None
        return min(self.rows / self.total_rows, 0.99)

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, None when unknown."""
        if self.done:
            return 0.0
        if not self.total_rows or self.rate <= 0:
            return None
        return max(self.total_rows - self.rows, 0) / self.rate


ProgressCallback = Callable[[Progress], None]


def _seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # unreachable; keeps mypy sure of the return


def describe(p: Progress) -> str:
    """One line: rows (of the estimate), bytes, rate and ETA."""
    total = f"/~{p.total_rows:,}" if p.total_rows and not p.done else ""
    state = f"done in {_seconds(p.elapsed)}" if p.done else f"ETA {_seconds(p.eta)}"
    return f"{p.table}: {p.rows:,}{total} rows, {_size(p.bytes)}, {p.rate:,.0f} rows/s, {state}"


def bar(fraction: float | None, width: int = 24) -> str:
    if fraction is None:
        return "[" + "?" * width + "]"
    filled = int(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {fraction * 100:3.0f}%"


class ProgressPrinter:
    """A progress callback. On a terminal it redraws one bar per table in place; elsewhere it
    logs a line per table at most every `interval` seconds, and always the final one. Safe to
    call from several copy threads."""

    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, interval: float = 10.0
    ):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self._lock = threading.Lock()
        self._tables: dict[str, Progress] = {}
        self._drawn = 0
        self._logged: dict[str, float] = {}

    def __call__(self, p: Progress) -> None:
        with self._lock:
            if self.tty:
                self._tables[p.table] = p
                self._redraw()
                if p.done:
                    # Finished tables scroll up and stay; only running ones are redrawn.
                    del self._tables[p.table]
                    self._drawn -= 1
            else:
                now = time.monotonic()
                if p.done or now - self._logged.get(p.table, -1e9) >= self.interval:
                    self._logged[p.table] = now
                    log.info("copy %s", describe(p))

    def _redraw(self) -> None:
        out = [f"\x1b[{self._drawn}F"] if self._drawn else []
        for p in self._tables.values():
            out.append(f"\x1b[2K{bar(p.fraction)} {describe(p)}\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(self._tables)
