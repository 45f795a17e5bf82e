"""6. Initial copy of a database of many tables into an empty subscriber database, every tool
with the same number of parallel jobs, pgcopydb as the reference. Timed from the command that
starts the copy until every table is in sync (pgcopydb: until `pgcopydb clone` exits)."""

from __future__ import annotations

import contextlib
import time
from functools import partial

from peers import pgcopydb
from peers.base import Tool
from peers.londiste3 import Londiste3
from scenarios import Context
from scenarios.initial_copy import METRICS, record
from support import flow, manytables, verify
from support.env import COPY_JOBS, Db

KEY = "many"
REFERENCE = (pgcopydb.KEY, pgcopydb.NAME)
LONDISTE3_LEFT_OUT = "left out: too slow for this scenario (see below)"
# Measured once on the bench machine (2 cores), with the queue ticking every second.
LONDISTE3_WHY = (
    "after each table's copy, londiste3's copy process and worker take about 10 s of handshakes "
    "(catching-up, wanna-sync, do-sync), 4 tables at a time: 126 s for the 40 tables even at "
    "the quick size, and only 36 of the 40 tables were in sync after 147 s at full size"
)


def run(ctx: Context) -> None:
    scale = ctx.sizes.many_scale
    layout = manytables.layout(scale)
    rows = sum(n for _, n in layout)
    tables = manytables.qualified(scale)
    tools = ctx.available(KEY)
    for tool in [t for t in tools if t.key == Londiste3.key]:
        tools.remove(tool)
        ctx.results.not_available(KEY, tool.key, LONDISTE3_LEFT_OUT)
        ctx.say(f"  {tool.name}: {LONDISTE3_LEFT_OUT}")
    why = pgcopydb.unavailable()
    if why:
        ctx.results.not_available(KEY, REFERENCE[0], why)
        ctx.say(f"  {REFERENCE[1]}: {why}")
    sizes = sorted({n for _, n in layout})
    ctx.results.declare(
        KEY, f"Initial copy of a {len(layout)}-table database ({rows:,} rows, tables of "
        f"{sizes[0]:,} to {sizes[-1]:,} rows) into an empty database, {COPY_JOBS} jobs each",
        METRICS, [REFERENCE, *[(t.key, t.name) for t in ctx.tools]],
        f"Every table has a primary key; two have a secondary index, one a foreign key. The "
        f"subscriber database starts with no tables, so each tool also creates them; every tool "
        f"gets {COPY_JOBS} jobs. Timed spans: **pgcopydb**: `pgcopydb clone --table-jobs "
        f"{COPY_JOBS} --index-jobs {COPY_JOBS}` from start to exit: schema dump and restore, "
        f"COPY of {COPY_JOBS} tables at a time (no table split), primary keys, indexes and the "
        "foreign key built after the rows, VACUUM ANALYZE of every table; nothing replicates "
        "afterwards. **londiste-rs**: with the root's `add-table` done and the leaf's worker "
        f"up and idle (`parallel_copies = {COPY_JOBS}`), from `add-table --all --create-full` "
        "on the leaf until every table is `ok`: it creates the tables with their keys, indexes "
        f"and the foreign key, the worker copies {COPY_JOBS} tables at a time, largest first, "
        "with keys, indexes and the foreign key dropped and rebuilt after each table's rows, "
        "and each table joins the replication stream; its ANALYZE follows `ok`, outside the "
        "span. **native LR**: with the publication made, from `pg_dump --schema-only | psql` "
        "(tables, keys, indexes and the foreign key, made before the rows) and `CREATE "
        "SUBSCRIPTION` until every table is ready (`srsubstate = 'r'`), "
        f"max_sync_workers_per_subscription = {COPY_JOBS}. **londiste3** is left out: "
        f"{LONDISTE3_WHY}.",
    )  # fmt: skip
    fill = partial(manytables.create, scale=scale)
    template = ctx.env.filled_template(f"bench_many_{scale:g}".replace(".", "_"), fill)
    for i in range(ctx.sizes.runs):
        if not why:
            ctx.attempt(KEY, REFERENCE[0], i, partial(_pgcopydb, ctx, i, template, tables, rows))
        for tool in tools:
            ctx.attempt(KEY, tool.key, i, partial(_tool, ctx, tool, i, template, tables, rows))


def _pair(ctx: Context, template: str) -> contextlib.AbstractContextManager[tuple[Db, Db]]:
    """A fresh clone of the many-tables database and an empty subscriber database."""
    src = ctx.env.provider_clone(template, KEY)
    return flow.dropping(ctx.env, src, ctx.env.subscriber_db(KEY, schema=False))


def _pgcopydb(ctx: Context, i: int, template: str, tables: list[str], rows: int) -> str:
    with _pair(ctx, template) as (src, dst):
        logdir = ctx.env.logdir(f"{KEY}-{REFERENCE[0]}-{i}")
        started = time.monotonic()
        pgcopydb.clone(src, dst, COPY_JOBS, logdir, ctx.sizes.timeout)
        seconds = time.monotonic() - started
        ok, note = verify.same(src.dsn, dst.dsn, tables)
    return record(ctx, KEY, REFERENCE[0], i, seconds, rows, ok, note)


def _tool(ctx: Context, tool: Tool, i: int, template: str, tables: list[str], rows: int) -> str:
    with _pair(ctx, template) as (src, dst):
        link = tool.link(src, dst, tables, ctx.env.logdir(f"{KEY}-{tool.key}-{i}"), COPY_JOBS)
        try:
            seconds = flow.timed_copy(link, ctx.sizes.timeout, create=True)
            ok, note = flow.same(link)
        finally:
            link.close()
    return record(ctx, KEY, tool.key, i, seconds, rows, ok, note)
