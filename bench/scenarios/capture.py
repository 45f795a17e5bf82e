"""3. Capture overhead: source write throughput with no capture, each tool's capture, and
logical decoding with an active subscription."""

from __future__ import annotations

import time
from functools import partial

from peers.base import Tool
from scenarios import Context
from support import flow, workload
from support.env import Db
from support.results import Metric, Sample

KEY = "capture"
NONE = ("none", "no capture")
METRICS = [Metric("txn_per_s", "source write throughput", "txn/s", "higher")]


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    tools = ctx.available(KEY)
    ctx.results.declare(
        KEY, f"Capture overhead: {sizes.capture_txns:,} pgbench transactions on the provider",
        METRICS, [NONE, *[(t.key, t.name) for t in ctx.tools]],
        "One session runs pgbench's TPC-B-like transaction server-side, one commit each "
        "(no client round trips, so the capture's own cost shows). Queue tools: their trigger "
        "and ticker run, the leaf worker is stopped during the writes. Native LR: the "
        "subscription is active, so the walsender decodes while the writes run. Both clusters "
        "have wal_level=logical throughout, also for 'no capture'. Afterwards every tool "
        "catches up and is verified.",
    )  # fmt: skip
    for i in range(sizes.runs):
        ctx.attempt(KEY, NONE[0], i, partial(_none, ctx, i))
        for tool in tools:
            ctx.attempt(KEY, tool.key, i, partial(_tool, ctx, tool, i))


def _write(ctx: Context, src: Db) -> float:
    with src.connect() as conn:
        started = time.monotonic()
        workload.mix(conn, ctx.sizes.capture_txns, ctx.sizes.small_scale)
        return time.monotonic() - started


def _record(ctx: Context, who: str, i: int, seconds: float, ok: bool, note: str) -> str:
    tps = ctx.sizes.capture_txns / seconds
    ctx.results.add(Sample(KEY, who, i, {"txn_per_s": tps}, ok, note))
    return f"{tps:,.0f} txn/s, {'verified' if ok else 'NOT VERIFIED'} ({note})"


def _none(ctx: Context, i: int) -> str:
    src = ctx.env.provider_db(ctx.sizes.small_scale, "capture")
    try:
        seconds = _write(ctx, src)
    finally:
        ctx.env.drop(src)
    return _record(ctx, NONE[0], i, seconds, True, "no replication: nothing to verify")


def _tool(ctx: Context, tool: Tool, i: int) -> str:
    sizes = ctx.sizes
    with flow.replicating(ctx.env, tool, sizes.small_scale, "capture", sizes.timeout) as link:
        if not tool.decodes_on_source:
            link.pause()
        seconds = _write(ctx, link.src)
        link.resume()
        flow.caught_up(link, sizes.timeout)
        ok, note = flow.same(link)
    return _record(ctx, tool.key, i, seconds, ok, note)
