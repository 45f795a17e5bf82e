"""PostgreSQL's built-in logical replication: a publication on the provider, a subscription on
the subscriber (PG 15 defaults: text protocol, no streaming)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from londiste_rs.devtools.pgcluster import find_bindir
from londiste_rs.waiting import wait_for
from peers.base import Link, Tool
from support import procs
from support.env import Db

PUB = "bench_pub"
SUB = "bench_sub"


class NativeLink(Link):
    def __init__(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1):
        super().__init__(src, dst, tables, logdir, jobs)
        self.subscribed = False

    def capture(self) -> None:
        with self.src.connect() as conn:
            conn.execute(f"create publication {PUB} for table {', '.join(self.tables)}")

    def prepare(self) -> None:
        pass

    def subscribe(self, expect_sync: bool = False, create: bool = False) -> None:
        if create:
            # Native LR copies rows only: its users bring the schema over with pg_dump first
            # (tables with their keys, indexes and constraints, made before the rows arrive).
            # Its copy jobs are the server's max_sync_workers_per_subscription (env.SETTINGS).
            bindir = find_bindir()
            procs.pipe(
                [str(bindir / "pg_dump"), "--schema-only", "--no-publications",
                 "--no-subscriptions", "-d", self.src.dsn],
                [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dst.dsn],
            )  # fmt: skip
        # The slot name must be unique in the provider cluster.
        with self.dst.connect() as conn:
            conn.execute(
                f"create subscription {SUB} connection '{self.src.dsn}' publication {PUB}"
                f" with (slot_name = {self.dst.name}, copy_data = {not expect_sync})"
            )
        self.subscribed = True

    def synced(self) -> bool:
        return bool(
            self.dst.one(
                "select count(*) filter (where r.srsubstate = 'r') = %s"
                " from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid"
                " where s.subname = %s",
                [len(self.tables), SUB],
            )
        )

    def _apply_pid(self) -> int | None:
        pid = self.dst.one(
            "select pid from pg_stat_subscription where subname = %s and relid is null", [SUB]
        )
        return None if pid is None else int(pid)

    def pause(self) -> None:
        self.dst.execute(f"alter subscription {SUB} disable")
        wait_for("the apply worker to exit", lambda: self._apply_pid() is None, timeout=30)

    def resume(self) -> None:
        self.dst.execute(f"alter subscription {SUB} enable")

    def worker_pids(self) -> list[int]:
        pid = wait_for("the apply worker to start", self._apply_pid, timeout=30)
        return [int(pid)]

    def close(self) -> None:
        if self.subscribed:
            self.dst.execute(f"drop subscription {SUB}")
            self.subscribed = False


class NativeLR(Tool):
    key = "logical"
    name = "native LR"
    decodes_on_source = True

    def link(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1) -> Link:
        return NativeLink(src, dst, tables, logdir, jobs)
