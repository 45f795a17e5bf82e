"""The measurements. Each module's `run(ctx)` measures every tool alternately (A, B, C,
A, B, C, ...) and records one Sample per run, verified or not."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from peers.base import Tool
from support.env import BenchEnv
from support.results import Results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sizes:
    runs: int
    copy_scale: int  # pgbench scale of the initial copy (100 000 accounts per unit)
    small_scale: int  # pgbench scale of the other scenarios
    backlog_txns: int  # pgbench transactions (4 row events each) queued for the drain
    distinct_txns: int  # transactions (3 row events each, each on its own key) for the drain
    capture_txns: int  # transactions written per capture measurement
    lag_rate: float  # transactions per second under steady load
    lag_seconds: float
    many_scale: float  # rows of the many-tables database (1: about 1.18M rows in 40 tables)
    compare_scale: int  # pgbench scale of the compared table (100 000 accounts per unit)
    timeout: float  # for any one wait


FULL = Sizes(runs=3, copy_scale=10, small_scale=1, backlog_txns=250_000, distinct_txns=100_000,
             capture_txns=50_000,
             lag_rate=100, lag_seconds=10, many_scale=1, compare_scale=10, timeout=900)  # fmt: skip
QUICK = Sizes(runs=1, copy_scale=1, small_scale=1, backlog_txns=2_000, distinct_txns=2_000,
              capture_txns=2_000,
              lag_rate=50, lag_seconds=3, many_scale=0.05, compare_scale=1,
              timeout=120)  # fmt: skip


@dataclass
class Context:
    env: BenchEnv
    tools: list[Tool]
    sizes: Sizes
    results: Results
    say: Callable[[str], None]

    def available(self, scenario: str) -> list[Tool]:
        """The tools that can run `scenario`; the others are recorded as not available."""
        ok = []
        for tool in self.tools:
            why = tool.unavailable(scenario)
            if why:
                self.results.not_available(scenario, tool.key, why)
                self.say(f"  {tool.name}: {why}")
            else:
                ok.append(tool)
        return ok

    def attempt(self, scenario: str, who: str, run: int, measure: Callable[[], str]) -> None:
        """Runs one measurement; a failure is recorded (and does not count), not raised."""
        try:
            note = measure()
            self.say(f"  run {run + 1} {who}: {note}")
        except Exception as e:
            log.debug("%s/%s failed", scenario, who, exc_info=True)
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            self.results.failed(scenario, who, msg)
            self.say(f"  run {run + 1} {who}: FAILED {msg}")
            if self.env.workdir.exists():
                with (self.env.workdir / "errors.log").open("a") as f:
                    f.write(f"--- {scenario} {who} run {run + 1}\n{traceback.format_exc()}\n")
