"""`status` as a user runs it when nothing moves (issue 16), with real daemons: a worker killed
with SIGKILL shows as not alive within the heartbeat bound, a stopped one as stopped; a root
whose events wait for a tick nobody makes names the ticker; a worker's recorded error is
shown with its age. Each such state is one ERR line with its fix and exit code 1 (with
--json too); a healthy cascade exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs import daemon
from londiste_rs.cascade.health import BEAT_SLACK, MISSED_BEATS
from londiste_rs.waiting import wait_for
from tests.fix_cli import ok, run_cli
from tests.fix_nodes import nodes

pytestmark = pytest.mark.usefixtures("kill_leftover_daemons")

PERIOD = 0.5  # the leaf's heartbeat_period here


def status(config: str) -> tuple[int, str]:
    out = run_cli(config, "status")
    assert "Traceback" not in out.stderr and out.stderr == "", out.stderr
    return out.returncode, out.stdout


def status_json(config: str) -> tuple[int, dict[str, dict[str, Any]]]:
    out = run_cli(config, "status", "--json")
    assert out.stderr == "", out.stderr
    return out.returncode, {n["name"]: n for n in json.loads(out.stdout)}


def healthy(config: str) -> bool:
    return run_cli(config, "status").returncode == 0


def start(config: str) -> int:
    ok("-d", config, "worker")
    pid = daemon.read_pid(Path(config).parent / "pid" / f"{Path(config).stem}.pid")
    assert pid is not None
    return pid


def stop_all(*configs: str | Path) -> None:
    for config in configs:
        run_cli("-s", str(config))


def test_a_killed_worker_is_not_alive_within_the_heartbeat_bound(
    tmp_path: Path, provider_db: Any, subscriber_db: Any
) -> None:
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, heartbeat_period=PERIOD)
    try:
        start(root)
        pid = start(leaf)
        wait_for("both workers to beat", lambda: healthy(leaf), timeout=30)
        code, text = status(leaf)
        assert code == 0 and "ERR" not in text and "attention" not in text
        host = socket.gethostname()
        assert f"    Worker: alive (pid {pid} on {host}, " in text
        assert re.search(r"\n    Queue: last tick \d+ \d+s ago \(by the ticker\), 0 events", text)
        code, by_name = status_json(leaf)
        assert code == 0
        assert [(n["worker_alive"], n["needs_attention"], n["problems"]) for n in
                by_name.values()] == [(True, False, [])] * 2  # fmt: skip
        assert by_name["slave"]["worker"]["pid"] == pid
        assert by_name["slave"]["worker"]["period"] == PERIOD

        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for("status to see the leaf's worker dead",
                 lambda: not healthy(leaf), timeout=30)  # fmt: skip
        took = time.monotonic() - killed
        bound = MISSED_BEATS * PERIOD + BEAT_SLACK
        assert took < bound + 3.0  # + one status run on a loaded machine
        code, text = status(leaf)
        assert code == 1
        assert "      Worker: NOT ALIVE (last heartbeat " in text
        lines = [ln.strip() for ln in text.splitlines() if "ERR" in ln]
        assert len(lines) == 1
        silent = (
            rf"its worker is silent: no heartbeat for \d+s \(pid {pid} on {host}; one was due "
            r"every 0.5s\): it died or cannot reach this database; see its log, then start it "
            r"again with 'londiste-rs slave.ini -d worker'"
        )
        assert re.fullmatch(f"ERR: {silent}", lines[0]), lines[0]
        assert text.splitlines()[-1] == "1 problem needs attention (exit code 1)"
        code, by_name = status_json(leaf)
        assert code == 1
        assert by_name["slave"]["worker_alive"] is False and by_name["slave"]["needs_attention"]
        assert by_name["master"]["problems"] == []
        assert [re.fullmatch(silent, p) is not None for p in by_name["slave"]["problems"]] == [True]

        # started again over its stale pidfile: alive; then stopped cleanly: stopped
        pid = start(leaf)
        wait_for("the new worker to beat", lambda: healthy(leaf), timeout=30)
        ok("-s", leaf)
        code, text = status(leaf)
        assert code == 1
        assert re.search(
            rf"ERR: its worker stopped \d+s ago \(pid {pid} on {host}\): start it again with "
            r"'londiste-rs slave.ini -d worker'",
            text,
        ), text
        assert status_json(leaf)[1]["slave"]["worker"]["stopped_at"] is not None
    finally:
        stop_all(leaf, root)


def ticker_ini(tmp_path: Path, db: Any) -> Path:
    params = conninfo_to_dict(db.dsn)
    params.pop("dbname")
    path = tmp_path / "ticker.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\ndatabase_list = {db.name}\n"
        f"ticker_period = 0.2\nlogfile = {tmp_path}/log/ticker.log\n"
        f"pidfile = {tmp_path}/pid/ticker.pid\n"
    )
    return path


def test_no_ticker_and_a_recorded_error(
    tmp_path: Path, provider_db: Any, subscriber_db: Any
) -> None:
    """Events wait on the root and no ticker runs: the root's entry says so and names the
    ticker; once it runs, everything moves and status exits 0. Then the leaf's table goes
    away: the worker's recorded error is the finding."""
    for db in (provider_db, subscriber_db):
        db.sql("create table t (id int primary key)")
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, heartbeat_period=PERIOD)
    ok(root, "add-table", "t")
    ok(leaf, "add-table", "t")
    # a tick is due 1 s after an event (instead of 3 s): the finding comes sooner
    provider_db.sql("select londiste_rs.set_queue_config('q1', 'ticker_max_lag', '1 second')")
    ticker = ticker_ini(tmp_path, provider_db)
    try:
        start(root)
        start(leaf)
        provider_db.sql("insert into t select generate_series(1, 1204)")

        def ticker_hint() -> str | None:
            code, text = status(leaf)
            hint = [ln.strip() for ln in text.splitlines() if "no tick for" in ln]
            return text if code == 1 and hint else None

        text = wait_for("the ticker hint", ticker_hint, timeout=60)
        root_part = text.split("+--slave")[0]
        assert re.search(
            r"\n    ERR: no tick for \d+s while 1,2\d\d events wait: is `londiste-rs ticker` "
            r"running for this database\? \(if it is, its log says why it skips it\)\n",
            root_part,
        ), text
        assert re.search(r"Queue: last tick \d+ \d+s ago \(by the ticker\), 1,2\d\d events", text)
        code, by_name = status_json(leaf)
        assert code == 1 and by_name["master"]["needs_attention"]
        assert by_name["master"]["ticks"]["events_waiting"] >= 1204
        assert not by_name["slave"]["needs_attention"]  # its worker waits, alive

        ok("ticker", "-d", str(ticker))
        wait_for("the rows on the leaf",
                 lambda: subscriber_db.sql("select count(*) from t") == [(1204,)])  # fmt: skip
        wait_for("a healthy cascade", lambda: healthy(leaf), timeout=30)

        # an error the worker records (with its fix) is a finding, with its age
        subscriber_db.sql("drop table t")
        provider_db.sql("insert into t values (0)")

        def error_line() -> str | None:
            code, text = status(leaf)
            errs = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("ERR: ")]
            return errs[0] if code == 1 and errs else None

        line = wait_for("the recorded error", error_line, timeout=60)
        assert re.fullmatch(
            r"ERR: the worker's last error, \d+s ago \(it tries again until the cause is fixed; "
            r"its log has more\): .*public\.t.*",
            line,
        ), line
        code, by_name = status_json(leaf)
        assert code == 1 and by_name["slave"]["error"] and by_name["slave"]["worker_alive"]
    finally:
        stop_all(leaf, root, ticker)
