"""2b. Backlog drain where no change can be coalesced: every row event touches its own key.

The same drain as `backlog`, over a backlog of single-commit transactions that each update one
account, delete another and insert a history row, no key twice. Compared with `backlog` (whose
pgbench mix updates a few branch and teller rows over and over), it shows how much of each
tool's rate comes from coalescing."""

from __future__ import annotations

from functools import partial

from scenarios import Context
from scenarios.backlog import METRICS, drain
from support import workload

KEY = "backlog-distinct"


def run(ctx: Context) -> None:
    txns = ctx.sizes.distinct_txns
    events = txns * workload.DISTINCT_EVENTS_PER_TXN
    scale = workload.distinct_scale(txns)
    tools = ctx.available(KEY)
    pairs = [(t.key, t.name) for t in ctx.tools]
    ctx.results.declare(
        KEY, f"Backlog drain without coalescing: {events:,} row events ({txns:,} transactions), "
        "each on its own key", METRICS, pairs,
        "Each transaction (one commit, server-side) updates one pgbench account, deletes "
        "another and inserts a history row; no key is touched twice, so coalescing saves "
        "nothing and every tool writes every event. Otherwise as the backlog drain above: "
        "queued while the apply was stopped, timed from starting it until the subscriber has "
        "the last transaction.",
    )  # fmt: skip
    for i in range(ctx.sizes.runs):
        for tool in tools:
            write = partial(workload.distinct, txns=txns, scale=scale)
            ctx.attempt(KEY, tool.key, i, partial(drain, ctx, tool, i, KEY, scale, events, write))
