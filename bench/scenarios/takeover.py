"""6. Takeover: the write downtime of a switchover under a steady write load.

A root and a branch (the branch already holds the root's rows) replicate with both workers and
a ticker on each database running. A writer commits pgbench transactions on the root at a
fixed rate; when the root refuses one (the takeover's fence), it goes to the branch and retries
there until the branch takes it. Meanwhile the tool's own `takeover` runs with the branch's
config. The write downtime is the gap the writer saw: from its last commit acknowledged by the
old root to its first acknowledged by the new one. A run verifies when every acknowledged
transaction's history row is on the new root exactly once, and the old root follows the new
one (it gets a row written there afterwards). Both queue tools run the same way: londiste3's
takeover promotes a branch (never a leaf), so both use a branch."""

from __future__ import annotations

import random
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from londiste_rs.waiting import wait_for
from peers.base import Tool
from peers.cascade import CascadeLink
from scenarios import Context
from support import flow, procs, workload
from support.results import Metric, Sample

KEY = "takeover"
TOOLS = ("ours", "londiste3")
METRICS = [
    Metric("downtime_ms", "write downtime (last commit on the old root -> first on the new)", "ms",
           "lower"),
    Metric("command_s", "takeover command, start to end", "s", "lower"),
]  # fmt: skip
HISTORY_SEQ = "public.pgbench_history_hid_seq"
WARMUP = 2.0
AFTER = 2.0


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    tools = [t for t in ctx.available(KEY) if t.key in TOOLS]
    rate = max(sizes.lag_rate, 100)
    ctx.results.declare(
        KEY, f"Takeover: write downtime of a switchover under {rate:g} pgbench transactions/s",
        METRICS, [(t.key, t.name) for t in ctx.tools if t.key in TOOLS],
        "A writer commits at a fixed rate on the root; a refused commit sends it to the branch, "
        "where it retries until accepted. Downtime: last commit acknowledged by the old root to "
        "the first acknowledged by the new one. Both tools take over a branch (londiste3 "
        "promotes branches only), with workers and tickers running on both databases.",
    )  # fmt: skip
    for tool in ctx.tools:
        if tool.key not in TOOLS and not tool.unavailable(KEY):
            ctx.results.not_available(KEY, tool.key, "no switchover verb")
    for i in range(sizes.runs):
        for tool in tools:
            ctx.attempt(KEY, tool.key, i, partial(_measure, ctx, tool, i, rate))


def _measure(ctx: Context, tool: Tool, i: int, rate: float) -> str:
    sizes = ctx.sizes
    with flow.pair(ctx.env, sizes.small_scale, "takeover", presynced=True) as (src, dst):
        link = tool.link(src, dst, flow.QUALIFIED, ctx.env.logdir(f"takeover-{src.name}"))
        assert isinstance(link, CascadeLink)
        extra: list[procs.Daemon] = []
        try:
            link.capture()
            link._run(str(link.root_ini), "add-seq", HISTORY_SEQ)
            # a branch, not a leaf (londiste3 promotes branches only)
            link._run(str(link.leaf_ini), "create-branch", "leaf", dst.dsn,
                      f"--provider={src.dsn}")  # fmt: skip
            link.resume()
            link.subscribe(expect_sync=True)
            link._run(str(link.leaf_ini), "add-seq", HISTORY_SEQ)
            wait_for(f"{tool.name} to be in sync", link.synced, timeout=sizes.timeout)
            # the root's worker (it follows the new root afterwards), a ticker on the branch's
            # database (the new root's queue needs one)
            extra.append(procs.Daemon([*link.cli, str(link.root_ini), "worker"], link.log,
                                      env=link.env))  # fmt: skip
            extra.append(procs.Daemon(link.ticker_cmd(_ticker_ini(link, dst.name)), link.log,
                                      env=link.env))  # fmt: skip
            link.wait_ready(sizes.timeout)
            writer = Writer(src.dsn, dst.dsn, rate, sizes.small_scale)
            writer.start()
            try:
                time.sleep(WARMUP)
                started = time.monotonic()
                out = link._run(str(link.leaf_ini), "takeover", "root")
                took = time.monotonic() - started
                wait_for("writes on the new root", lambda: writer.failed or writer.on_new > 0,
                         timeout=sizes.timeout)  # fmt: skip
                time.sleep(AFTER)
            finally:
                writer.stop()
            if writer.failed:
                raise writer.failed[0]
            downtime = writer.downtime()
            ok, note = _verify(src.dsn, dst.dsn, writer, sizes.timeout)
        finally:
            for d in extra:
                d.stop()
            link.close()
    reported = _reported(out)
    metrics = {"downtime_ms": downtime * 1000, "command_s": took}
    detail = (f"{writer.on_old} commits on the old root, {writer.on_new} on the new; "
              f"{writer.refused} refused meanwhile{reported}; {note}")  # fmt: skip
    ctx.results.add(Sample(KEY, tool.key, i, metrics, ok, detail))
    return (f"downtime {downtime * 1000:.0f} ms, command {took:.2f}s ({detail}), "
            f"{'verified' if ok else 'NOT VERIFIED'}")  # fmt: skip


def _reported(out: str) -> str:
    for line in out.splitlines():
        if line.startswith("write downtime: "):
            return f"; the tool reports {line.removeprefix('write downtime: ').split(' ')[0]}"
    return ""


def _ticker_ini(link: CascadeLink, dbname: str) -> Path:
    path = link.logdir / "ticker_branch.ini"
    c = link.dst.cluster
    path.write_text(
        f"[pgqd]\nbase_connstr = host=127.0.0.1 port={c.port} user={c.superuser}\n"
        f"database_list = {dbname}\nlogfile = {link.logdir / 'ticker_branch'}.log\n"
        f"pidfile = {link.logdir / 'ticker_branch'}.pid\n"
    )
    return path


class Writer(threading.Thread):
    """Commits one pgbench transaction every 1/rate s, on the old root until it refuses one,
    then on the new root (retrying each refused transaction until it is taken)."""

    def __init__(self, old: str, new: str, rate: float, scale: int):
        super().__init__(daemon=True)
        self.dsns = (old, new)
        self.interval = 1 / rate
        self.scale = scale
        self.done = threading.Event()
        self.acked: list[tuple[int, int, float]] = []  # (side 0 old / 1 new, hid, when)
        self.refused = 0
        self.failed: list[BaseException] = []

    @property
    def on_old(self) -> int:
        return sum(1 for a in self.acked if a[0] == 0)

    @property
    def on_new(self) -> int:
        return sum(1 for a in self.acked if a[0] == 1)

    def stop(self) -> None:
        self.done.set()
        self.join(60)

    def run(self) -> None:
        rng = random.Random(7)
        side = 0
        conns: dict[int, psycopg.Connection[Any]] = {}
        try:
            nxt = time.monotonic()
            while not self.done.is_set():
                conn = conns.get(side)
                if conn is None or conn.closed:
                    conn = conns[side] = psycopg.connect(self.dsns[side])
                try:
                    hid = _one_txn(conn, rng, self.scale)
                except psycopg.Error:
                    conn.rollback()
                    self.refused += 1
                    side = 1
                    time.sleep(0.001)
                    continue
                self.acked.append((side, hid, time.monotonic()))
                nxt += self.interval
                time.sleep(max(0.0, nxt - time.monotonic()))
        except BaseException as e:
            self.failed.append(e)
        finally:
            for conn in conns.values():
                conn.close()

    def downtime(self) -> float:
        last_old = max((t for s, _, t in self.acked if s == 0), default=None)
        first_new = min((t for s, _, t in self.acked if s == 1), default=None)
        if last_old is None or first_new is None:
            raise RuntimeError("the writer did not commit on both sides")
        return first_new - last_old


def _one_txn(conn: psycopg.Connection[Any], rng: random.Random, scale: int) -> int:
    params = {"aid": rng.randint(1, 100_000 * scale), "bid": rng.randint(1, scale),
              "tid": rng.randint(1, 10 * scale), "delta": rng.randint(-5000, 5000)}  # fmt: skip
    with conn.cursor() as cur:
        for statement in workload.ONE_TXN:
            cur.execute(statement, params)
        cur.execute(workload.ONE_TXN_HISTORY, params)
        row = cur.fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def _verify(old: str, new: str, writer: Writer, timeout: float) -> tuple[bool, str]:
    """Every acknowledged transaction on the new root once; the old root follows it."""
    hids = [h for _, h, _ in writer.acked]
    with psycopg.connect(new, autocommit=True) as conn:
        found = conn.execute(
            "select count(*), count(distinct hid) from pgbench_history where hid = any(%s)",
            [hids],
        ).fetchone()
        marker = conn.execute(
            "insert into pgbench_history (tid, bid, aid, delta, mtime)"
            " values (1, 1, 1, 0, now()) returning hid"
        ).fetchone()
    assert found is not None and marker is not None
    if found[0] != len(hids) or found[1] != len(hids):
        return False, f"{len(hids) - found[1]} of {len(hids)} acknowledged commits missing"
    try:
        with psycopg.connect(old, autocommit=True) as conn:
            wait_for(
                "the old root to follow the new one",
                lambda: conn.execute("select 1 from pgbench_history where hid = %s",
                                     [marker[0]]).fetchone(),
                timeout=min(timeout, 60),
            )  # fmt: skip
    except TimeoutError:
        return False, "the old root did not get a write made on the new root"
    return True, f"all {len(hids)} acknowledged commits on the new root once; old root follows"
