"""4. Lag under steady load: commit-to-visible latency at a fixed write rate.

A writer commits pgbench transactions at a fixed rate (each inserts one history row, whose id
it notes with the time its COMMIT returned); a prober on the subscriber polls the newest
history id every 5 ms and notes when each id first became visible. Same clock, same process."""

from __future__ import annotations

import random
import threading
import time
from functools import partial
from typing import Any

import psycopg

from peers.base import Link, Tool
from scenarios import Context
from support import flow, workload
from support.measure import percentile
from support.results import Metric, Sample

KEY = "lag"
METRICS = [
    Metric("p50_ms", "p50 commit-to-visible", "ms", "lower"),
    Metric("p99_ms", "p99 commit-to-visible", "ms", "lower"),
]
PROBE_INTERVAL = 0.005


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    tools = ctx.available(KEY)
    ctx.results.declare(
        KEY, f"Lag under steady load: {sizes.lag_rate:g} pgbench transactions/s "
        f"({sizes.lag_rate * workload.EVENTS_PER_TXN:g} row events/s) for {sizes.lag_seconds:g}s",
        METRICS, [(t.key, t.name) for t in ctx.tools],
        f"Latency from the writer's COMMIT returning to the row being visible on the subscriber "
        f"(polled every {PROBE_INTERVAL * 1000:g} ms). londiste3 ticks at least every second when "
        "events wait (`ticker_max_lag` 1 s, below pgq's 3 s) and its worker polls every 0.2 s; "
        "londiste-rs runs with its defaults (the ticker looks every `ticker_period` 20 ms, ticks a "
        "queue whose events wait `ticker_max_lag` 20 ms, and the tick wakes the worker).",
    )  # fmt: skip
    for i in range(sizes.runs):
        for tool in tools:
            ctx.attempt(KEY, tool.key, i, partial(_measure, ctx, tool, i))


def _measure(ctx: Context, tool: Tool, i: int) -> str:
    sizes = ctx.sizes
    with flow.replicating(ctx.env, tool, sizes.small_scale, "lag", sizes.timeout) as link:
        latencies = steady_load(link, sizes.lag_rate, sizes.lag_seconds, sizes.small_scale,
                                sizes.timeout)  # fmt: skip
        flow.caught_up(link, sizes.timeout)
        ok, note = flow.same(link)
    metrics = {"p50_ms": percentile(latencies, 50) * 1000,
               "p99_ms": percentile(latencies, 99) * 1000}  # fmt: skip
    ctx.results.add(Sample(KEY, tool.key, i, metrics, ok, f"{len(latencies)} commits; {note}"))
    return (f"p50 {metrics['p50_ms']:.0f} ms, p99 {metrics['p99_ms']:.0f} ms over "
            f"{len(latencies)} commits, {'verified' if ok else 'NOT VERIFIED'}")  # fmt: skip


def steady_load(link: Link, rate: float, seconds: float, scale: int,
                timeout: float) -> list[float]:  # fmt: skip
    """Commits `rate` transactions per second for `seconds`; returns each one's
    commit-to-visible latency in seconds."""
    committed: dict[int, float] = {}
    visible: dict[int, float] = {}
    done = threading.Event()
    ready = threading.Event()
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            with psycopg.connect(link.dst.dsn, autocommit=True) as conn:
                # Read before the writer starts, so no commit is visible before it is noted.
                seen = workload.last_hid(conn)
                ready.set()
                deadline = None
                while True:
                    newest = workload.last_hid(conn)
                    now = time.monotonic()
                    for hid in range(seen + 1, newest + 1):
                        visible[hid] = now
                    seen = max(seen, newest)
                    if done.is_set():
                        deadline = deadline or now + timeout
                        if all(h in visible for h in list(committed)) or now > deadline:
                            return
                    time.sleep(PROBE_INTERVAL)
        except BaseException as e:
            errors.append(e)
        finally:
            ready.set()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    ready.wait(timeout)
    rng = random.Random(42)
    try:
        with psycopg.connect(link.src.dsn) as conn:
            start = time.monotonic()
            n = int(rate * seconds)
            for k in range(n):
                delay = start + k / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                hid = _one_txn(conn, rng, scale)
                committed[hid] = time.monotonic()
    finally:
        done.set()
        prober.join()
    if errors:
        raise errors[0]
    missing = [h for h in committed if h not in visible]
    if missing:
        raise TimeoutError(f"{len(missing)} commits never became visible on the subscriber")
    return [visible[h] - committed[h] for h in committed]


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
