"""3. Capture overhead: source write throughput with no capture, each tool's capture, and
logical decoding with an active subscription; written twice per run: server-side (the capture's
own cost shows) and by pgbench's clients over TCP (what an application sees)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from functools import partial

from londiste_rs.devtools.pgcluster import find_bindir
from peers.base import Tool
from scenarios import Context
from support import flow, workload
from support.env import Db
from support.results import Metric, Sample

KEY = "capture"
NONE = ("none", "no capture")
METRICS = [Metric("txn_per_s", "server-side write throughput", "txn/s", "higher"),
           Metric("client_txn_per_s", "client write throughput", "txn/s", "higher")]  # fmt: skip
CLIENTS = 4


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    tools = ctx.available(KEY)
    ctx.results.declare(
        KEY, f"Capture overhead: {sizes.capture_txns:,} pgbench transactions on the provider, "
        "server-side and from clients",
        METRICS, [NONE, *[(t.key, t.name) for t in ctx.tools]],
        "Server-side: one session runs pgbench's TPC-B-like transaction in a procedure, one "
        "commit each (no client round trips, so the capture's own cost shows). Client: `pgbench "
        f"-b tpcb-like -c {CLIENTS}` over TCP as many transactions, default synchronous_commit "
        "(what an application sees: round trips and row locks held while the trigger runs). "
        "Queue tools: their trigger "
        "and ticker run, the leaf worker is stopped during the writes. Native LR: the "
        "subscription is active, so the walsender decodes while the writes run. Both clusters "
        "have wal_level=logical throughout, also for 'no capture'. Afterwards every tool "
        "catches up and is verified.",
    )  # fmt: skip
    for i in range(sizes.runs):
        ctx.attempt(KEY, NONE[0], i, partial(_none, ctx, i))
        for tool in tools:
            ctx.attempt(KEY, tool.key, i, partial(_tool, ctx, tool, i))


def _write(ctx: Context, src: Db) -> dict[str, float]:
    """Both writes, one after the other; their throughputs."""
    with src.connect() as conn:
        started = time.monotonic()
        workload.mix(conn, ctx.sizes.capture_txns, ctx.sizes.small_scale)
        server = ctx.sizes.capture_txns / (time.monotonic() - started)
    return {"txn_per_s": server, "client_txn_per_s": _pgbench(src, ctx.sizes.capture_txns)}


def _pgbench(src: Db, txns: int) -> float:
    """`txns` TPC-B-like transactions from CLIENTS pgbench clients over TCP; their tps."""
    prog = find_bindir() / "pgbench"
    cmd = [str(prog) if prog.is_file() else shutil.which("pgbench") or "pgbench", "-n",
           "-b", "tpcb-like", "-c", str(CLIENTS), "-j", str(CLIENTS),
           "-t", str(max(1, txns // CLIENTS)), "-h", "127.0.0.1", "-p", str(src.cluster.port),
           "-U", src.cluster.superuser, src.name]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    m = re.search(r"^tps = ([0-9.]+)", out.stdout, re.M)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"pgbench failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    return float(m.group(1))


def _record(ctx: Context, who: str, i: int, tps: dict[str, float], ok: bool, note: str) -> str:
    ctx.results.add(Sample(KEY, who, i, tps, ok, note))
    return (f"{tps['txn_per_s']:,.0f} txn/s server-side, {tps['client_txn_per_s']:,.0f} txn/s "
            f"from clients, {'verified' if ok else 'NOT VERIFIED'} ({note})")  # fmt: skip


def _none(ctx: Context, i: int) -> str:
    src = ctx.env.provider_db(ctx.sizes.small_scale, "capture")
    try:
        tps = _write(ctx, src)
    finally:
        ctx.env.drop(src)
    return _record(ctx, NONE[0], i, tps, True, "no replication: nothing to verify")


def _tool(ctx: Context, tool: Tool, i: int) -> str:
    sizes = ctx.sizes
    with flow.replicating(ctx.env, tool, sizes.small_scale, "capture", sizes.timeout) as link:
        if not tool.decodes_on_source:
            link.pause()
        tps = _write(ctx, link.src)
        link.resume()
        flow.caught_up(link, sizes.timeout)
        ok, note = flow.same(link)
    return _record(ctx, tool.key, i, tps, ok, note)
