"""The ticker daemon against real queues: ticks appear, databases without our schema are
skipped, a server restart under it is survived, two tickers never tick one snapshot twice,
maintenance and retry run. Each test starts `londiste-rs ticker -d` as a real process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from londiste_rs import daemon
from londiste_rs.devtools.pgcluster import TempCluster
from londiste_rs.store import schema
from londiste_rs.waiting import wait_for
from tests.fix_cli import run_cli
from tests.fix_daemon import started_pid
from tests.fix_pg import OWNER

# A server of its own (it is restarted), so marked here rather than through fix_pg's fixtures.
pytestmark = [pytest.mark.pg, pytest.mark.usefixtures("kill_leftover_daemons")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[TempCluster]:
    """A cluster of its own: one test restarts it, and discovery sees every database in it."""
    c = TempCluster("ticker").start()
    try:
        yield c
    finally:
        c.destroy()


def queue_db(cluster: TempCluster, name: str, queue: str = "q") -> str:
    """A database with our schema and one queue; returns the owner's DSN."""
    dsn = cluster.create_database(name, owner=OWNER)
    with psycopg.connect(dsn) as conn:
        schema.install(conn)
        conn.execute("select londiste_rs.create_queue(%s)", [queue])
    return dsn


def sql(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def insert_event(dsn: str, queue: str = "q") -> int:
    rows = sql(
        dsn,
        "select londiste_rs.insert_event(%s, 'X', 'payload'::bytea, null, null, null, null)",
        [queue],
    )
    return int(rows[0][0])


def ticked_past(dsn: str, ev_id: int, queue: str = "q") -> bool:
    """Whether a tick of `queue` covers the event `ev_id` (its event sequence reached it)."""
    rows = sql(
        dsn,
        "select coalesce(max(tick_event_seq), 0) >= %s from londiste_rs.tick"
        " join londiste_rs.queue on queue_id = tick_queue where queue_name = %s",
        [ev_id, queue],
    )
    return bool(rows[0][0])


def write_ini(workdir: Path, cluster: TempCluster, databases: str = "", **extra: object) -> None:
    settings = {
        "base_connstr": f"host=127.0.0.1 port={cluster.port} user={OWNER}",
        "database_list": databases,
        "logfile": "log/ticker.log",
        "pidfile": "pid/ticker.pid",
        "ticker_period": 0.1,
        "check_period": 1,
        **extra,
    }
    lines = ["[pgqd]", *(f"{k} = {v}" for k, v in settings.items())]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ticker.ini").write_text("\n".join(lines) + "\n")


def start_ticker(workdir: Path) -> int:
    out = run_cli("ticker", "-d", "ticker.ini", cwd=workdir)
    assert out.returncode == 0, out.stderr
    return started_pid(workdir)


def stop_ticker(workdir: Path, pid: int) -> None:
    out = run_cli("-s", "ticker.ini", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert not daemon.process_alive(pid)
    assert not (workdir / "pid/ticker.pid").exists()


def log_text(workdir: Path) -> str:
    return (workdir / "log/ticker.log").read_text()


def test_ticks_skips_foreign_databases_and_survives_a_restart(
    cluster: TempCluster, tmp_path: Path
) -> None:
    dsn = queue_db(cluster, "with_queue")
    cluster.create_database("without_schema", owner=OWNER)
    write_ini(tmp_path, cluster)  # empty database_list: every database in the cluster
    pid = start_ticker(tmp_path)

    ev = insert_event(dsn)
    wait_for("a tick covering the event", lambda: ticked_past(dsn, ev), timeout=30)
    wait_for("the skip line", lambda: "without_schema: no londiste_rs schema" in log_text(tmp_path))
    assert "with_queue: ticking" in log_text(tmp_path)

    cluster.restart()
    ev = insert_event(dsn)
    wait_for("a tick after the restart", lambda: ticked_past(dsn, ev), timeout=60)
    assert daemon.process_alive(pid)
    log = log_text(tmp_path)
    assert " ERROR with_queue: " in log and "retrying in" in log
    assert "with_queue: working again after" in log
    assert "Traceback" not in log

    stop_ticker(tmp_path, pid)


def test_a_schema_and_a_queue_made_after_the_start_are_ticked_within_seconds(
    cluster: TempCluster, tmp_path: Path
) -> None:
    """The walkthrough's order: the ticker first, `create-root` later. The database is looked
    at again within SCHEMA_PROBE, not at the next check_period (a minute here); a queue made
    later in a ticked database is ticked at once too. Default ticker_period and max_lag."""
    dsn = cluster.create_database("schema_later", owner=OWNER)
    write_ini(tmp_path, cluster, "schema_later", ticker_period="", check_period=60)
    pid = start_ticker(tmp_path)
    wait_for("the skip line", lambda: "schema_later: no londiste_rs schema" in log_text(tmp_path))

    with psycopg.connect(dsn) as conn:  # what create-root does: install, create the queue
        schema.install(conn)
        conn.execute("select londiste_rs.create_queue('q')")
    ev = insert_event(dsn)
    wait_for("a tick covering the first event", lambda: ticked_past(dsn, ev), timeout=5)
    assert "schema_later: ticking" in log_text(tmp_path)

    sql(dsn, "select londiste_rs.create_queue('q2')")
    ev = insert_event(dsn, "q2")
    wait_for("a tick of the new queue", lambda: ticked_past(dsn, ev, "q2"), timeout=5)
    stop_ticker(tmp_path, pid)


def test_two_tickers_never_tick_one_snapshot_twice(cluster: TempCluster, tmp_path: Path) -> None:
    dsn = queue_db(cluster, "two_tickers")
    # Tick as soon as an event is there, so both tickers compete for every tick.
    sql(dsn, "select londiste_rs.set_queue_config('q', 'ticker_max_lag', '0')")
    dirs = [tmp_path / "a", tmp_path / "b"]
    pids = []
    for d in dirs:
        write_ini(d, cluster, "two_tickers", ticker_period=0.05)
        pids.append(start_ticker(d))
    try:
        last = 0
        for _ in range(40):
            last = insert_event(dsn)
            time.sleep(0.02)  # spread the events over many ticker rounds
        wait_for("the last event to be ticked", lambda: ticked_past(dsn, last), timeout=30)
    finally:
        for d, pid in zip(dirs, pids, strict=True):
            stop_ticker(d, pid)
    ticks, snapshots, ordered = sql(
        dsn,
        "select count(*), count(distinct tick_snapshot::text),"
        " bool_and(tick_event_seq >= prev_seq)"
        " from (select *, lag(tick_event_seq, 1, 0::int8) over (order by tick_id) as prev_seq"
        "       from londiste_rs.tick) t",
    )[0]
    assert ticks >= 10
    assert snapshots == ticks
    assert ordered


def test_maintenance_rotates_the_event_tables(cluster: TempCluster, tmp_path: Path) -> None:
    dsn = queue_db(cluster, "rotation")
    sql(dsn, "select londiste_rs.set_queue_config('q', 'rotation_period', '0')")
    before = sql(dsn, "select queue_cur_table, queue_switch_time from londiste_rs.queue")[0]
    write_ini(tmp_path, cluster, "rotation", maint_period=0.5)
    pid = start_ticker(tmp_path)

    def rotated() -> bool:
        row = sql(dsn, "select queue_cur_table, queue_switch_step2 from londiste_rs.queue")[0]
        return row[0] != before[0] and row[1] is not None  # both steps ran

    wait_for("a rotation by the ticker's maintenance", rotated, timeout=30)
    stop_ticker(tmp_path, pid)


def test_retry_events_come_back_to_their_consumer(cluster: TempCluster, tmp_path: Path) -> None:
    dsn = queue_db(cluster, "retry")
    sql(dsn, "select londiste_rs.register_consumer('q', 'c')")
    write_ini(tmp_path, cluster, "retry", retry_period=0.5)
    pid = start_ticker(tmp_path)

    ev = insert_event(dsn)
    wait_for("a tick covering the event", lambda: ticked_past(dsn, ev), timeout=30)
    batch = sql(dsn, "select londiste_rs.next_batch('q', 'c')")[0][0]
    assert batch is not None
    sql(dsn, "select londiste_rs.event_retry(%s, %s, 0)", [batch, ev])
    sql(dsn, "select londiste_rs.finish_batch(%s)", [batch])
    wait_for(
        "the ticker to move the event out of the retry queue",
        lambda: sql(dsn, "select count(*) = 0 from londiste_rs.retry_queue")[0][0],
        timeout=30,
    )

    # The next batch of consumer c has the event again, marked as a retry of c's.
    later = insert_event(dsn)
    wait_for("a tick covering the next event", lambda: ticked_past(dsn, later), timeout=30)
    batch = sql(dsn, "select londiste_rs.next_batch('q', 'c')")[0][0]
    query = sql(dsn, "select londiste_rs.batch_event_sql(%s)", [batch])[0][0]
    events = sql(dsn, f"select ev_id, ev_retry, ev_owner is not null from ({query}) e")
    assert (ev, 1, True) in events
    assert (later, None, False) in events
    stop_ticker(tmp_path, pid)
