"""Progress of initial copies as a user reads it: live bars on a terminal, log lines
elsewhere; rates, estimates and sizes formatted."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from londiste_rs import progress
from londiste_rs.progress import Progress, ProgressPrinter, bar, describe


def test_progress_printer_tty_and_log(caplog):
    p = Progress("public.t", 500, 2 << 20, 1000, 2.0)
    assert p.rate == 250 and p.eta == 2.0 and p.fraction == 0.5
    out = io.StringIO()
    tty = ProgressPrinter(out, tty=True)
    tty(p)
    tty(Progress("public.u", 1, 10, None, 1.0))
    tty(Progress("public.t", 1000, 4 << 20, 1000, 4.0, done=True))
    text = out.getvalue()
    assert "[############------------]  50%" in text and "ETA 0:02" in text
    assert "\x1b[2F" in text and "done in 0:04" in text and "[????" in text
    with caplog.at_level(logging.INFO, logger="londiste_rs.progress"):
        plain = ProgressPrinter(io.StringIO(), tty=False, interval=3600)
        plain(p)
        plain(Progress("public.t", 600, 0, 1000, 3.0))  # within the interval: not logged
        plain(Progress("public.t", 1000, 0, 1000, 4.0, done=True))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "copy public.t: 500/~1,000 rows, 2.0 MB, 250 rows/s, ETA 0:02",
        "copy public.t: 1,000 rows, 0 B, 250 rows/s, done in 0:04",
    ]


def test_one_line_per_state():
    assert describe(Progress("t", 1_234_567, 1536, 2_000_000, 10.0)) == (
        "t: 1,234,567/~2,000,000 rows, 1.5 kB, 123,457 rows/s, ETA 0:06"
    )
    # never analyzed, nothing read yet: no estimate, no rate
    assert describe(Progress("t", 0, 0, None, 0.0)) == "t: 0 rows, 0 B, 0 rows/s, ETA ?"
    # done: no estimate shown, the time taken in hours once over one
    assert describe(Progress("t", 7, 5 << 30, 5, 7322.0, done=True)) == (
        "t: 7 rows, 5.0 GB, 0 rows/s, done in 2:02:02"
    )
    assert describe(Progress("t", 60, 1023, None, 59.6, done=True)).endswith("done in 1:00")


def test_estimates_never_claim_done_before_the_end():
    ahead = Progress("t", 1500, 0, 1000, 1.0)  # more rows than the planner's estimate
    assert ahead.fraction == 0.99 and ahead.eta == 0.0
    assert Progress("t", 0, 0, 1000, 0.0).eta is None  # no rate yet
    assert Progress("t", 5, 0, 0, 1.0).fraction is None  # an empty estimate is no estimate
    assert Progress("t", 5, 0, None, 1.0, done=True).fraction == 1.0


def test_bars():
    assert bar(0.0) == "[------------------------]   0%"
    assert bar(0.99) == "[#######################-]  99%"
    assert bar(1.0) == "[########################] 100%"
    assert bar(None, width=4) == "[????]"


def test_log_lines_at_most_every_interval_per_table(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: now[0]))
    printer = ProgressPrinter(io.StringIO(), tty=False, interval=10)
    with caplog.at_level(logging.INFO, logger="londiste_rs.progress"):
        for t in (0.0, 5.0, 9.9, 10.0, 12.0):
            now[0] = 1000.0 + t
            printer(Progress("a", int(t * 10), 0, None, t))
            printer(Progress("b", int(t * 10), 0, None, t))
    logged = [r.getMessage().split(" rows")[0] for r in caplog.records]
    assert logged == ["copy a: 0", "copy b: 0", "copy a: 100", "copy b: 100"]
