"""londiste-rs, driven exactly like londiste3 (its own ticker instead of pgqd)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from peers.base import Link, Tool
from peers.cascade import CascadeLink
from support.env import Db

CLI = str(Path(sys.executable).parent / "londiste-rs")
# The verbs a replicating setup uses, as in the README's "Using it like londiste3".
VERBS = ("ticker", "create-root", "create-leaf", "add-table", "worker")
# The SQL functions (docs/internals.md §2-§3) that the setup and the bench's settle step use.
SQL_FUNCTIONS = ("create_queue", "capture_attach", "ticker", "force_tick", "set_queue_config",
                 "next_batch_custom", "batch_event_sql", "finish_batch")  # fmt: skip


class OursLink(CascadeLink):
    cli = (CLI,)
    synced_sql = (
        "select count(*) filter (where merge_state = 'ok') = %s from londiste_rs.table_info"
        " where queue_name = %s and local"
    )
    position_sql = "select last_tick_id from londiste_rs.local_state where queue_name = %s"
    settle_sql = ("select londiste_rs.force_tick(%s)", "select londiste_rs.ticker(%s)")
    queue_config_sql = "select londiste_rs.set_queue_config(%s, %s, %s)"
    # the default ticker_max_lag (issue 14: lag in tens of milliseconds by default)
    queue_config = (("ticker_idle_period", "1 second"),)

    def ticker_cmd(self, ini: Path) -> list[str]:
        return [CLI, "ticker", str(ini)]


@cache
def missing_verbs() -> tuple[str, ...]:
    """The VERBS `londiste-rs --help` does not list yet."""
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([CLI, "--help"], capture_output=True, text=True, env=env, check=False)
    listed = {line.strip(" │|").split(" ")[0] for line in out.stdout.splitlines()}
    return tuple(v for v in VERBS if v not in listed)


@cache
def missing_sql() -> tuple[str, ...]:
    """The SQL_FUNCTIONS that the installed build's embedded SQL does not define yet."""
    from londiste_rs import _native

    defined: set[str] = set()
    for _path, text in _native.sql_files():
        defined |= {m.lower() for m in re.findall(r"function\s+londiste_rs\.(\w+)", text, re.I)}
    return tuple(f for f in SQL_FUNCTIONS if f not in defined)


class LondisteRs(Tool):
    key = "ours"
    name = "londiste-rs"

    def unavailable(self, scenario: str) -> str | None:
        missing = missing_verbs()
        if missing:
            return f"not available yet (londiste-rs has no {', '.join(missing)} verb yet)"
        functions = missing_sql()
        if functions:
            names = ", ".join(f"londiste_rs.{f}()" for f in functions)
            return f"not available yet (londiste-rs has no {names} yet)"
        return None

    def link(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1) -> Link:
        return OursLink(src, dst, tables, logdir, jobs)
