"""1. Initial copy of a 1M-row table (pgbench_accounts at scale 10), with a raw binary COPY
pipe as the limit. Timed from the command that starts the copy until the table is in sync."""

from __future__ import annotations

import time
from functools import partial

from londiste_rs.devtools.pgcluster import find_bindir
from peers.base import Tool
from scenarios import Context
from support import flow, procs, verify
from support.results import Metric, Sample

KEY = "copy"
RAW = ("raw", "raw COPY pipe")
TABLE = "public.pgbench_accounts"
METRICS = [
    Metric("seconds", "time to in-sync", "s", "lower"),
    Metric("rows_per_s", "copy rate", "rows/s", "higher"),
]


def run(ctx: Context) -> None:
    scale = ctx.sizes.copy_scale
    rows = 100_000 * scale
    tools = ctx.available(KEY)
    ctx.results.declare(
        KEY, f"Initial copy of a {rows:,}-row table (pgbench_accounts)", METRICS,
        [RAW, *[(t.key, t.name) for t in ctx.tools]],
        "Timed from the command that starts the copy (londiste: `add-table` on the leaf with its "
        "worker up and idle; native LR: `CREATE SUBSCRIPTION`) until the table is in sync. The "
        "raw pipe is `psql -c 'COPY ... TO STDOUT (FORMAT binary)' | psql -c 'COPY ... FROM STDIN "
        "(FORMAT binary)'`, one stream into a table with its primary key: the single-stream "
        "limit (a tool that copies in parallel or builds indexes after the data can beat it).",
    )  # fmt: skip
    for i in range(ctx.sizes.runs):
        ctx.attempt(KEY, RAW[0], i, partial(_raw, ctx, i, rows))
        for tool in tools:
            ctx.attempt(KEY, tool.key, i, partial(_tool, ctx, tool, i, rows))


def record(ctx: Context, key: str, who: str, i: int, seconds: float, rows: int, ok: bool,
           note: str) -> str:  # fmt: skip
    """Records one copy of `rows` rows that took `seconds`; returns the run's line."""
    metrics = {"seconds": seconds, "rows_per_s": rows / seconds}
    ctx.results.add(Sample(key, who, i, metrics, ok, note))
    return f"{seconds:.2f}s, {'verified' if ok else 'NOT VERIFIED'} ({note})"


def _raw(ctx: Context, i: int, rows: int) -> str:
    with flow.pair(ctx.env, ctx.sizes.copy_scale, "copy", presynced=False) as (src, dst):
        psql = str(find_bindir() / "psql")
        out_cmd = [psql, "-X", "-q", "-d", src.dsn, "-c", f"copy {TABLE} to stdout (format binary)"]
        in_cmd = [psql, "-X", "-q", "-d", dst.dsn, "-c", f"copy {TABLE} from stdin (format binary)"]
        started = time.monotonic()
        procs.pipe(out_cmd, in_cmd)
        seconds = time.monotonic() - started
        ok, note = verify.same(src.dsn, dst.dsn, [TABLE])
        return record(ctx, KEY, RAW[0], i, seconds, rows, ok, note)


def _tool(ctx: Context, tool: Tool, i: int, rows: int) -> str:
    with flow.pair(ctx.env, ctx.sizes.copy_scale, "copy", presynced=False) as (src, dst):
        link = tool.link(src, dst, [TABLE], ctx.env.logdir(f"copy-{tool.key}-{i}"))
        try:
            seconds = flow.timed_copy(link, ctx.sizes.timeout)
            ok, note = flow.same(link)
        finally:
            link.close()
        return record(ctx, KEY, tool.key, i, seconds, rows, ok, note)
