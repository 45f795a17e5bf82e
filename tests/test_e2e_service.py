"""Running it like a service (issue 15): the worker's and the ticker's `/metrics` move during a
drain, their JSON log lines parse, a foreground worker stops on SIGTERM after its batch and
exits non-zero when it cannot work at all, as systemd units expect."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.devtools.pgcluster import free_port
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok, one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("kill_leftover_daemons")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of `/metrics`, parsed by prometheus-client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def ticker_ini(tmp_path: Path, db: Any, port: int) -> Path:
    params = conninfo_to_dict(db.dsn)
    params.pop("dbname")
    path = tmp_path / "ticker.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\ndatabase_list = {db.name}\n"
        f"ticker_period = 0.1\nlogfile = {tmp_path}/log/ticker.log\n"
        f"pidfile = {tmp_path}/pid/ticker.pid\nmetrics_listen = 127.0.0.1:{port}\n"
        "log_format = json\n"
    )
    return path


def replicating(
    root: Path, leaf: Path, provider_db: Any, subscriber_db: Any, rows: str, ticker_port: int
) -> Path:
    """Table t (id, v) holding `rows` (a VALUES or SELECT) added on the root `root` and the
    leaf `leaf` of queue q1, and a ticker of the provider's database running (its metrics on
    `ticker_port`), whose ini is returned: the workers are the test's to start."""
    for db in (provider_db, subscriber_db):
        db.sql("create table t (id int primary key, v text)")
    provider_db.sql(f"insert into t {rows}")
    ok(str(root), "create-root", "master")
    ok(str(leaf), "create-leaf", "slave", f"--provider={provider_db.dsn}")
    ok(str(root), "add-table", "t")
    ok(str(leaf), "add-table", "t")
    ticker = ticker_ini(root.parent, provider_db, ticker_port)
    ok("ticker", "-d", str(ticker))
    return ticker


def test_metrics_move_during_a_drain_and_json_logs_parse(tmp_path, provider_db, subscriber_db):
    leaf_port, root_port, ticker_port = free_port(), free_port(), free_port()
    root = job_ini(tmp_path, "master", provider_db.dsn, metrics_listen=f"127.0.0.1:{root_port}")
    leaf = job_ini(tmp_path, "slave", subscriber_db.dsn, log_format="json",
                   metrics_listen=f"127.0.0.1:{leaf_port}")  # fmt: skip
    rows = "select i, 'v' || i from generate_series(1, 1000) i"
    ticker = replicating(root, leaf, provider_db, subscriber_db, rows, ticker_port)
    ok("-d", str(root), "worker")
    ok("-d", str(leaf), "worker")
    try:
        node = {"queue": "q1", "node": "slave"}
        # the initial copy: its rows are counted per table, the table ends 'ok'
        wait_for("the copy", lambda: value(scrape(leaf_port), "londiste_rs_tables",
                                           state="ok", **node) == 1, timeout=60)  # fmt: skip
        s = scrape(leaf_port)
        assert value(s, "londiste_rs_copy_rows_total", table="public.t", **node) == 1000
        assert (value(s, "londiste_rs_copy_bytes_total", table="public.t", **node) or 0) > 0
        assert value(s, "londiste_rs_tables", state="needs-copy", **node) == 0
        assert value(s, "londiste_rs_last_error_timestamp_seconds", **node) == 0

        before = value(s, "londiste_rs_events_applied_total", **node) or 0.0
        batches = value(s, "londiste_rs_batches_applied_total", **node) or 0.0
        provider_db.sql("update t set v = v || '!' where id <= 500")
        provider_db.sql("delete from t where id > 900")

        def moved() -> Samples | None:
            s = scrape(leaf_port)
            applied = value(s, "londiste_rs_events_applied_total", **node) or 0.0
            return s if applied >= before + 600 else None

        s = wait_for("the leaf's metrics to move", moved, timeout=60)
        assert (value(s, "londiste_rs_batches_applied_total", **node) or 0) > batches
        assert (value(s, "londiste_rs_apply_seconds_count", **node) or 0) > 0
        assert value(s, "londiste_rs_node_lag_seconds", **node) is not None
        wait_for("ticks behind to reach 0", lambda: value(
            scrape(leaf_port), "londiste_rs_ticks_behind", **node) == 0, timeout=60)  # fmt: skip
        assert subscriber_db.sql("select count(*) from t where v like '%!'") == [(500,)]

        # the ticker counts its ticks per database; they go on moving
        ticks = value(scrape(ticker_port), "londiste_rs_ticker_ticks_total",
                      database=provider_db.name) or 0.0  # fmt: skip
        provider_db.sql("insert into t values (5000, 'x')")
        wait_for("the ticker's ticks to move", lambda: (value(
            scrape(ticker_port), "londiste_rs_ticker_ticks_total", database=provider_db.name)
            or 0) > ticks, timeout=60)  # fmt: skip
        # the root's worker: events waiting for a tick, here with the ticker stopped
        ok("-s", str(ticker))
        provider_db.sql("insert into t select i, 'w' from generate_series(6001, 6050) i")
        root_node = {"queue": "q1", "node": "master"}
        wait_for("the root's pending events", lambda: (value(
            scrape(root_port), "londiste_rs_queue_events_pending", **root_node) or 0) >= 50,
            timeout=30)  # fmt: skip
    finally:
        for ini in (leaf, root, ticker):
            run_cli("-s", str(ini))

    # JSON log lines: every line is one object; an apply line carries its figures
    lines = [json.loads(ln) for ln in (tmp_path / "log/slave.log").read_text().splitlines()]
    applied = [ln for ln in lines if ln["message"].startswith("applied ticks")]
    assert applied, lines
    assert {"time", "level", "node", "queue", "message", "ticks", "events", "seconds"} <= set(
        applied[0]
    )
    assert applied[0]["node"] == "slave" and applied[0]["queue"] == "q1"
    assert sum(ln["events"] for ln in applied) >= 600
    tick_lines = [json.loads(ln) for ln in (tmp_path / "log/ticker.log").read_text().splitlines()]
    assert tick_lines[0]["message"].startswith("Starting londiste-rs ticker")


def test_bad_service_settings_are_one_line(tmp_path, provider_db):
    ini = job_ini(tmp_path, "master", provider_db.dsn, metrics_listen="localhost")
    err = one_line_error(run_cli(str(ini), "worker"))
    assert err == (
        f"ERROR: {ini}: [londiste3] metrics_listen = 'localhost' is not HOST:PORT such as "
        "127.0.0.1:9187; fix the value"
    )
    ini = job_ini(tmp_path, "master", provider_db.dsn, log_format="xml")
    err = one_line_error(run_cli(str(ini), "worker"))
    assert (
        err
        == f"ERROR: {ini}: [londiste3] log_format = 'xml' is not one of text, json; fix the value"
    )
    # a port already taken: refused before -d detaches
    ok(str(job_ini(tmp_path, "master", provider_db.dsn)), "create-root", "master")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ini = job_ini(tmp_path, "master", provider_db.dsn, metrics_listen=f"127.0.0.1:{port}")
        out = run_cli("-d", str(ini), "worker")
    err = one_line_error(out)
    assert err.startswith(f"ERROR: {ini}: metrics_listen = 127.0.0.1:{port}: cannot listen there")
    assert not (tmp_path / "pid/master.pid").exists()


def test_foreground_worker_as_systemd_runs_it(tmp_path, provider_db, subscriber_db):
    """No logfile: the log goes to stderr. SIGTERM: the worker finishes and exits 0 (the
    unit's KillSignal). A node that is not there: a non-zero exit (Restart=on-failure)."""
    root = job_ini(tmp_path, "master", provider_db.dsn)
    ok(str(root), "create-root", "master")
    bare = tmp_path / "fg.ini"
    bare.write_text(f"[londiste3]\ndb = {provider_db.dsn}\nqueue_name = q1\nloop_delay = 0.1\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", str(bare), "worker"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "INFO Starting londiste-rs fg " in first, first
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err.splitlines()[-1].endswith("INFO fg stopped")
    assert out == ""

    missing = tmp_path / "nonode.ini"
    missing.write_text(f"[londiste3]\ndb = {subscriber_db.dsn}\nqueue_name = q1\n")
    out = run_cli(str(missing), "worker")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr


def test_reload_reads_the_job_file_again(tmp_path, provider_db, subscriber_db):
    """`-r` (SIGHUP) makes a running worker read its job file again, as londiste3's does: a
    setting changed there applies from the next batch; a file that no longer loads keeps the
    old config, saying why; the node it is (queue_name) stays until a restart, with a warning."""
    root = job_ini(tmp_path, "master", provider_db.dsn)
    leaf = job_ini(tmp_path, "slave", subscriber_db.dsn)
    settings = leaf.read_text()
    ticker = replicating(root, leaf, provider_db, subscriber_db, "values (1, 'a')", free_port())
    ok("-d", str(root), "worker")
    ok("-d", str(leaf), "worker")
    log = tmp_path / "log/slave.log"

    def reload(text: str, said: str) -> None:
        leaf.write_text(text)
        before = log.read_text().count(said)
        out = run_cli("-r", str(leaf))
        assert out.returncode == 0, out.stderr
        wait_for(said, lambda: log.read_text().count(said) > before, timeout=30)

    def hup(text: str, said: str) -> None:
        """As `systemctl reload` (kill -HUP): `-r` itself refuses a file that does not load."""
        leaf.write_text(text)
        before = log.read_text().count(said)
        os.kill(int((tmp_path / "pid/slave.pid").read_text().split()[0]), signal.SIGHUP)
        wait_for(said, lambda: log.read_text().count(said) > before, timeout=30)

    def leaf_rows() -> list[tuple[Any, ...]]:
        return subscriber_db.sql("select id from t order by id")

    try:
        wait_for("the copy", lambda: leaf_rows() == [(1,)], timeout=60)
        # a replica kept an hour behind: what is written now is not applied
        reload(settings + "pgq_keep_lag = 3600\n", "config reloaded from")
        provider_db.sql("insert into t values (2, 'b')")
        tick = provider_db.sql("select max(tick_id) from londiste_rs.tick")[0][0]
        wait_for("the insert's tick", lambda: provider_db.sql(
            "select max(tick_id) from londiste_rs.tick")[0][0] > tick, timeout=30)  # fmt: skip
        time.sleep(2)  # (the worker polls every 0.1 s and the tick wakes it)
        assert leaf_rows() == [(1,)]
        # a file that does not load: the old config goes on (still an hour behind)
        broken = settings.replace("loop_delay = 0.1", "loop_delay = soon")
        hup(broken + "pgq_keep_lag = 3600\n", "reload failed, keeping the old config")
        assert "loop_delay" in log.read_text().split("reload failed")[-1].splitlines()[0]
        time.sleep(1)
        assert leaf_rows() == [(1,)]
        # the lag gone, and another queue named: the lag applies, the node stays; the
        # heartbeat takes the new period too
        changed = settings.replace("queue_name = q1", "queue_name = q2")
        reload(changed + "heartbeat_period = 0.3\n", "config reloaded from")
        wait_for("the held row", lambda: leaf_rows() == [(1,), (2,)], timeout=30)
        wait_for("the new heartbeat period", lambda: subscriber_db.sql(
            "select extract(epoch from beat_period)::float8 from londiste_rs.worker_heartbeat"
            " where queue_name = 'q1'") == [(0.3,)], timeout=30)  # fmt: skip
        assert "reload: queue_name changed in slave.ini; the running process keeps q1" in (
            log.read_text()
        )
        provider_db.sql("insert into t values (3, 'c')")
        wait_for("a new row", lambda: leaf_rows() == [(1,), (2,), (3,)], timeout=30)
    finally:
        for ini in (leaf, root, ticker):
            run_cli("-s", str(ini))
