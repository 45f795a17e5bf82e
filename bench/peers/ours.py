"""londiste-rs, driven exactly like londiste3 (its own ticker instead of pgqd)."""

from __future__ import annotations

import os
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


class OursLink(CascadeLink):
    cli = (CLI,)
    synced_sql = (
        "select count(*) filter (where merge_state = 'ok') = %s from londiste_rs.table_info"
        " where queue_name = %s and local"
    )
    settle_sql = ("select londiste_rs.force_tick(%s)", "select londiste_rs.ticker(%s)")
    queue_config_sql = "select londiste_rs.set_queue_config(%s, %s, %s)"

    def ticker_cmd(self, ini: Path) -> list[str]:
        return [CLI, "ticker", str(ini)]


@cache
def missing_verbs() -> tuple[str, ...]:
    """The VERBS `londiste-rs --help` does not list yet."""
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([CLI, "--help"], capture_output=True, text=True, env=env, check=False)
    listed = {line.strip(" │|").split(" ")[0] for line in out.stdout.splitlines()}
    return tuple(v for v in VERBS if v not in listed)


class LondisteRs(Tool):
    key = "ours"
    name = "londiste-rs"

    def unavailable(self, scenario: str) -> str | None:
        missing = missing_verbs()
        if missing:
            return f"not available yet (londiste-rs has no {', '.join(missing)} yet)"
        return None

    def link(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path) -> Link:
        return OursLink(src, dst, tables, logdir)
