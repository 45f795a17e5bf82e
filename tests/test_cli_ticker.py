"""`londiste-rs ticker` as a user runs it (the walkthrough's ticker.ini, log/ and pid/ relative
to the working directory): start with -d, refuse a second copy, stop with -s or -k, and refuse
bad config files with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from londiste_rs import daemon
from londiste_rs.waiting import wait_for
from tests.fix_cli import run_cli
from tests.fix_daemon import TICKER_START, started_pid

pytestmark = pytest.mark.usefixtures("kill_leftover_daemons")


def write_ticker_ini(tmp_path: Path, db: Any, **extra: object) -> Path:
    """A ticker.ini like the walkthrough's, for the database `db` (a conftest Database)."""
    base = db.dsn.replace(f"dbname={db.name}", "").strip()
    lines = [
        "[pgqd]",
        "# libpq connect string without dbname=",
        f"base_connstr = {base}",
        f"database_list = {db.name}",
        "logfile = log/ticker.log",
        "pidfile = pid/ticker.pid",
        "ticker_period = 0.2",
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "ticker.ini"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "log").mkdir(exist_ok=True)
    (tmp_path / "pid").mkdir(exist_ok=True)
    return path


def test_ticker_daemon_start_refuse_stop(tmp_path: Path, provider_db: Any) -> None:
    write_ticker_ini(tmp_path, provider_db)
    out = run_cli("ticker", "-d", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""
    pid = started_pid(tmp_path)

    # Both argument orders refuse a second copy, with one line naming the fix.
    for args in (["ticker", "-d", "ticker.ini"], ["-d", "ticker", "ticker.ini"]):
        again = run_cli(*args, cwd=tmp_path)
        assert again.returncode == 1
        assert again.stderr == (
            f"ERROR: already running (pid {pid}); "
            f"stop it with 'londiste-rs -s {tmp_path / 'ticker.ini'}'\n"
        )

    out = run_cli("-s", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not daemon.process_alive(pid)
    assert not (tmp_path / "pid/ticker.pid").exists()
    assert (
        (tmp_path / "log/ticker.log").read_text().splitlines()[-1].endswith(" INFO ticker stopped")
    )

    # Nothing left to stop: one line, non-zero.
    out = run_cli("ticker", "-s", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("ERROR: ticker is not running (no pidfile ")
    assert "Traceback" not in out.stderr


def test_global_daemon_flag_and_kill(tmp_path: Path, provider_db: Any) -> None:
    write_ticker_ini(tmp_path, provider_db)
    out = run_cli("-d", "ticker", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    pid = started_pid(tmp_path)
    out = run_cli("ticker", "-k", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not daemon.process_alive(pid)
    assert not (tmp_path / "pid/ticker.pid").exists()


def test_reload_and_stop_through_a_job_file(tmp_path: Path, provider_db: Any) -> None:
    """-r reopens the log; `-s job.ini` stops the process a job file's pidfile names."""
    write_ticker_ini(tmp_path, provider_db)
    assert run_cli("ticker", "-d", "ticker.ini", cwd=tmp_path).returncode == 0
    pid = started_pid(tmp_path)
    log = tmp_path / "log/ticker.log"
    log.rename(tmp_path / "log/ticker.log.1")  # what logrotate does before signalling
    # the ini read again: a log format changed there waits for the next start, and says so
    ini = tmp_path / "ticker.ini"
    ini.write_text(ini.read_text() + "log_format = json\n")
    out = run_cli("-r", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    wait_for("the reopened log", lambda: log.exists() and "config reloaded" in log.read_text())
    assert "reload: log_format changed in ticker.ini; the running process keeps text" in (
        log.read_text()
    )

    (tmp_path / "job.ini").write_text(
        "[londiste3]\njob_name = job\ndb = dbname=x\nqueue_name = q\npidfile = pid/ticker.pid\n"
    )
    out = run_cli("-s", "job.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not daemon.process_alive(pid)
    out = run_cli("-s", "job.ini", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("ERROR: job is not running (no pidfile ")


def test_foreground_logs_to_stderr_too(tmp_path: Path, provider_db: Any) -> None:
    write_ticker_ini(tmp_path, provider_db, stats_period=0.2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", "ticker", "ticker.ini"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = started_pid(tmp_path)
    assert pid == proc.pid
    wait_for("a stats line", lambda: "{ticks: " in (tmp_path / "log/ticker.log").read_text())
    # `-s` (SIGINT) is a safe stop for a foreground ticker too.
    out = run_cli("-s", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert TICKER_START.match(err.splitlines()[0])
    assert f"INFO {provider_db.name}: no londiste_rs schema, skipped" in err
    assert "INFO {ticks: 0, maint: 0, retry: 0, databases: 0}" in err  # every stats_period


def test_daemon_without_pidfile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ticker.ini").write_text("[pgqd]\nlogfile = ticker.log\n")
    out = run_cli("ticker", "-d", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr == (
        f"ERROR: {tmp_path / 'ticker.ini'}: running in the background (-d) needs a pidfile; "
        "add 'pidfile = pid/ticker.pid' to the config\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "ERROR: config file {ini} not found; give the path of the ticker (pgqd format)"),
        ("[londiste3]\ndb = x\n", "ERROR: {ini}: has [londiste3]; the ticker (pgqd format) "
         "needs a [pgqd] section"),
        ("[pgqd]\nticker_period = often\n", "ERROR: {ini}: [pgqd] ticker_period = 'often' is "
         "not a number; fix the value"),
        ("[pgqd]\nbase_connstr = host=x port\n", "ERROR: {abs}: [pgqd] base_connstr is not a "
         "libpq connection string (missing \"=\" after \"port\" in connection info string); "
         "write it as 'host=... port=... user=...'"),
        ("not an ini file\n", "ERROR: {ini}: cannot parse the file: File contains no section "
         "headers."),
    ],
)  # fmt: skip
def test_bad_ticker_ini_is_one_line(tmp_path: Path, content: str | None, expected: str) -> None:
    ini = tmp_path / "ticker.ini"
    if content is not None:
        ini.write_text(content)
    out = run_cli("ticker", "-d", "ticker.ini", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == expected.format(ini="ticker.ini", abs=ini) + "\n"
    assert not (tmp_path / "pid").exists()
