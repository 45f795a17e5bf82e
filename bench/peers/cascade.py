"""Tools used the londiste3 way: a ticker daemon, `create-root` / `create-leaf`, `add-table`
on both nodes, a worker daemon on the leaf. Stock londiste3 and londiste-rs differ only in
their commands and in the SQL that reads their state."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from londiste_rs.waiting import wait_for
from peers.base import Link
from support import procs
from support.env import Db

QUEUE = "bench"
# londiste3 gets latency knobs below its defaults: a 1 s tick when events wait or the queue is
# idle (pgq's defaults are 3 s and 60 s), and the worker polls every 0.2 s when it has nothing to
# do. londiste-rs keeps its default ticker_max_lag (20 ms, ticked within ticker_period, 20 ms);
# both get the 1 s idle tick, by which wait_ready sees a worker apply a batch.
QUEUE_CONFIG = {"ticker_max_lag": "1 second", "ticker_idle_period": "1 second"}
LOOP_DELAY = "0.2"


class CascadeLink(Link):
    cli: Sequence[str] = ()
    env: dict[str, str] | None = None
    # queue settings made on the root after create-root (set_queue_config): (name, value)
    queue_config: Sequence[tuple[str, str]] = tuple(QUEUE_CONFIG.items())
    # SQL on the leaf: true when every replicated table is in sync (params: count, queue).
    synced_sql = ""
    # SQL on the root, run in order, that makes everything committed so far part of a batch.
    settle_sql: Sequence[str] = ()
    # SQL on the root that sets one queue parameter (params: queue, name, value).
    queue_config_sql = ""
    # SQL on the leaf: the last tick its worker applied (params: queue).
    position_sql = ""

    def __init__(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1):
        super().__init__(src, dst, tables, logdir, jobs)
        self.log = logdir / "commands.log"
        self.ticker: procs.Daemon | None = None
        self.worker: procs.Daemon | None = None
        self.root_ini = self._node_ini("root", src)
        self.leaf_ini = self._node_ini("leaf", dst)

    # -- configs ------------------------------------------------------------------------------
    def _node_ini(self, name: str, db: Db) -> Path:
        path = self.logdir / f"{name}.ini"
        path.write_text(
            f"[londiste]\njob_name = {name}_{db.name}\ndb = {db.dsn}\nqueue_name = {QUEUE}\n"
            f"loop_delay = {LOOP_DELAY}\nparallel_copies = {self.jobs}\n"
            f"logfile = {self.logdir / name}.log\n"
            f"pidfile = {self.logdir / name}.pid\n"
        )
        return path

    def _ticker_ini(self) -> Path:
        path = self.logdir / "ticker.ini"
        c = self.src.cluster
        path.write_text(
            f"[pgqd]\nbase_connstr = host=127.0.0.1 port={c.port} user={c.superuser}\n"
            f"database_list = {self.src.name}\nlogfile = {self.logdir / 'ticker'}.log\n"
            f"pidfile = {self.logdir / 'ticker'}.pid\n"
        )
        return path

    def ticker_cmd(self, ini: Path) -> list[str]:
        raise NotImplementedError

    def _run(self, *args: str) -> str:
        return procs.run([*self.cli, *args], self.log, env=self.env)

    def leaf_command(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`<tool> leaf.ini ARGS...` to completion, whatever its exit code."""
        return procs.call([*self.cli, str(self.leaf_ini), *args], self.log, env=self.env,
                          timeout=timeout)  # fmt: skip

    # -- Link ---------------------------------------------------------------------------------
    def capture(self) -> None:
        self._run(str(self.root_ini), "create-root", "root", self.src.dsn)
        for name, value in self.queue_config:
            self.src.execute(self.queue_config_sql, [QUEUE, name, value])
        self._run(str(self.root_ini), "add-table", *self.tables)
        self.ticker = procs.Daemon(self.ticker_cmd(self._ticker_ini()), self.log, env=self.env)

    def prepare(self) -> None:
        self._run(str(self.leaf_ini), "create-leaf", "leaf", self.dst.dsn,
                  f"--provider={self.src.dsn}")  # fmt: skip
        self.resume()

    def subscribe(self, expect_sync: bool = False, create: bool = False) -> None:
        flags = ["--expect-sync"] if expect_sync else []
        # Creating: the provider's tables, all of them, as a user starting a new leaf would.
        tables = ["--all", "--create-full"] if create else self.tables
        self._run(str(self.leaf_ini), "add-table", *tables, *flags)

    def wait_ready(self, timeout: float) -> None:
        # The worker is up once it has applied a batch after its start (the queue ticks at
        # least every second, ticker_idle_period).
        start = self.dst.one(self.position_sql, [QUEUE]) or 0

        def moved() -> bool:
            self._check_alive()
            return (self.dst.one(self.position_sql, [QUEUE]) or 0) > start

        wait_for("the leaf worker to apply a batch", moved, timeout=timeout)

    def synced(self) -> bool:
        self._check_alive()
        return bool(self.dst.one(self.synced_sql, [len(self.tables), QUEUE]))

    def _check_alive(self) -> None:
        for what, daemon in (("worker", self.worker), ("ticker", self.ticker)):
            if daemon is not None and not daemon.alive():
                raise procs.CommandFailed(f"{what} exited; see {daemon.log}")

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def resume(self) -> None:
        if self.worker is None:
            cmd = [*self.cli, str(self.leaf_ini), "worker"]
            self.worker = procs.Daemon(cmd, self.log, env=self.env)

    def settle(self) -> None:
        with self.src.connect() as conn:
            for sql in self.settle_sql:
                conn.execute(sql, [QUEUE])

    def worker_pids(self) -> list[int]:
        self._check_alive()
        return [self.worker.pid] if self.worker else []

    def close(self) -> None:
        self.pause()
        if self.ticker is not None:
            self.ticker.stop()
            self.ticker = None
