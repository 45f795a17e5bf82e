"""2. Backlog drain and 5. worker peak memory while draining.

With the subscriber's apply stopped, a fixed backlog of pgbench transactions (3 updates and 1
insert each) is written on the provider and made consumable (ticked); then the apply starts
and the time until the subscriber has the last transaction is the drain time. The apply
process's private resident memory is sampled throughout."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from peers.base import Tool
from scenarios import Context
from support import flow, workload
from support.measure import PeakMemory
from support.results import Metric, Sample

KEY = "backlog"
MEMORY_KEY = "memory"
METRICS = [
    Metric("events_per_s", "drain rate", "row events/s", "higher"),
    Metric("seconds", "drain time", "s", "lower"),
]
MEMORY_METRICS = [Metric("peak_mib", "worker peak memory", "MiB", "lower")]


def run(ctx: Context) -> None:
    events = ctx.sizes.backlog_txns * workload.EVENTS_PER_TXN
    tools = ctx.available(KEY)
    for key in (KEY, MEMORY_KEY):
        for tool in ctx.tools:
            if tool not in tools:
                ctx.results.not_available(key, tool.key, tool.unavailable(KEY) or "")
    pairs = [(t.key, t.name) for t in ctx.tools]
    ctx.results.declare(
        KEY, f"Backlog drain: {events:,} row events ({ctx.sizes.backlog_txns:,} pgbench "
        "transactions) queued while the apply was stopped", METRICS, pairs,
        "The backlog is pgbench's TPC-B-like mix, one commit per transaction, written "
        "server-side; queues are ticked before the apply starts. Timed from starting the apply "
        "(londiste: the leaf worker; native LR: `ALTER SUBSCRIPTION ... ENABLE`) until the "
        "subscriber has the last transaction. londiste-rs applies each batch coalesced to its "
        "final state per key (at scale 1 the mix updates 1 branch and 10 teller rows over and "
        "over), so part of its rate comes from writing fewer rows; londiste3 and native LR apply "
        "every event.",
    )  # fmt: skip
    ctx.results.declare(
        MEMORY_KEY, "Worker peak memory while draining the backlog", MEMORY_METRICS, pairs,
        "Peak private resident memory (RssAnon, process and children, sampled every 20 ms) of "
        "the apply process: the londiste worker, or native LR's apply worker backend (whose "
        "shared buffers are not counted).",
    )  # fmt: skip
    for i in range(ctx.sizes.runs):
        for tool in tools:
            write = partial(workload.mix, txns=ctx.sizes.backlog_txns, scale=ctx.sizes.small_scale)
            measure = partial(drain, ctx, tool, i, KEY, ctx.sizes.small_scale, events, write,
                              MEMORY_KEY)  # fmt: skip
            ctx.attempt(KEY, tool.key, i, measure)


def drain(
    ctx: Context,
    tool: Tool,
    i: int,
    key: str,
    scale: int,
    events: int,
    write: Callable[[psycopg.Connection[Any]], None],
    memory_key: str | None = None,
) -> str:
    """One drain of the backlog `write` queues on a fresh pair at `scale`: its rate recorded
    under `key`, the apply's peak memory under `memory_key`."""
    sizes = ctx.sizes
    tag = key.replace("-", "_")  # (in database names)
    with flow.replicating(ctx.env, tool, scale, tag, sizes.timeout) as link:
        link.pause()
        with link.src.connect() as conn:
            write(conn)
        link.settle()
        started = time.monotonic()
        link.resume()
        pids = link.worker_pids()
        with PeakMemory(lambda: pids) as memory:
            flow.caught_up(link, sizes.timeout)
        seconds = time.monotonic() - started
        ok, note = flow.same(link)
    metrics = {"events_per_s": events / seconds, "seconds": seconds}
    ctx.results.add(Sample(key, tool.key, i, metrics, ok, note))
    peak = memory.peak / 2**20
    if memory_key is not None:
        ctx.results.add(Sample(memory_key, tool.key, i, {"peak_mib": peak},
                               ok and memory.samples > 0, note))  # fmt: skip
    verdict = "verified" if ok else "NOT VERIFIED"
    return f"{seconds:.2f}s = {events / seconds:,.0f} events/s, peak {peak:.1f} MiB, {verdict}"
