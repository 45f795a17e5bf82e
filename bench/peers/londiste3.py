"""Stock londiste3 3.11 and pgqd from Debian (superuser, the pgq C extension: its limits)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from peers.base import Link, Tool
from peers.cascade import CascadeLink
from support import deps
from support.env import Db


class Londiste3Link(CascadeLink):
    cli = ("/usr/bin/python3", deps.LONDISTE)
    synced_sql = (
        "select count(*) filter (where merge_state = 'ok') = %s from londiste.table_info"
        " where queue_name = %s and local"
    )
    position_sql = "select last_tick_id from pgq_node.local_state where queue_name = %s"
    settle_sql = ("select pgq.force_tick(%s)", "select pgq.ticker(%s)")
    queue_config_sql = "select pgq.set_queue_config(%s, %s, %s)"

    def __init__(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1):
        super().__init__(src, dst, tables, logdir, jobs)
        self.env = deps.system_env()

    def ticker_cmd(self, ini: Path) -> list[str]:
        return [deps.PGQD, str(ini)]


class Londiste3(Tool):
    key = "londiste3"
    name = "londiste3"

    def unavailable(self, scenario: str) -> str | None:
        missing = deps.missing()
        return f"not installed (missing {' '.join(missing)})" if missing else None

    def link(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1) -> Link:
        return Londiste3Link(src, dst, tables, logdir, jobs)
