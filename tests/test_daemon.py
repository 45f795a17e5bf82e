"""The daemon machinery (londiste_rs.daemon) with real processes: pidfiles, double fork,
signals, logging. The job here is a small loop; the ticker tests run the real verb."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from londiste_rs import daemon
from londiste_rs.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kill_leftover_daemons")

# A job that loops until asked to stop; "stubborn" ignores stop requests (for -k).
JOB = """
import logging, sys, time
from collections.abc import Iterator
from pathlib import Path
from londiste_rs import daemon
from londiste_rs.errors import LondisteError

base, mode = Path(sys.argv[1]), sys.argv[2]
log = logging.getLogger("londiste_rs.testjob")

def body():
    while mode == "stubborn" or not daemon.stop_requested():
        if daemon.reload_requested():
            log.info("reloaded")
        log.debug("looping")
        if mode == "stubborn":
            time.sleep(0.05)
        else:
            daemon.sleep(30)
    log.info("stopping cleanly")

pidfile = None if mode == "nopid" else base / "pid" / "job.pid"
try:
    daemon.run("testjob", body, config=base / "job.ini", pidfile=pidfile,
               logfile=base / "log" / "job.log", daemonize=mode != "fg", verbose=1)
except LondisteError as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
"""


LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\d+) (DEBUG|INFO|WARNING|ERROR) ")


def start(base: Path, mode: str = "-d") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", JOB, str(base), mode], capture_output=True, text=True, timeout=60
    )


def logtext(base: Path) -> str:
    path = base / "log" / "job.log"
    return path.read_text() if path.exists() else ""


def test_daemonize_pidfile_stop(tmp_path: Path) -> None:
    out = start(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""  # stdio went to /dev/null
    pidfile = tmp_path / "pid" / "job.pid"
    pid = daemon.read_pid(pidfile)
    assert pid is not None and daemon.process_alive(pid)
    first = logtext(tmp_path).splitlines()[0]
    assert LINE.match(first) and first.endswith(" INFO Starting londiste-rs testjob 0.1.0")
    assert LINE.match(first).group(1) == str(pid)  # type: ignore[union-attr]
    # A detached session leader's child: not in our session, no terminal.
    assert os.getsid(pid) != os.getsid(0)

    again = start(tmp_path)
    assert again.returncode != 0
    assert again.stderr.strip() == (
        f"already running (pid {pid}); stop it with 'londiste-rs -s {tmp_path / 'job.ini'}'"
    )

    daemon.control("reload", config=tmp_path / "job.ini", pidfile=pidfile, name="testjob")
    wait_for("the reload", lambda: "INFO reloaded" in logtext(tmp_path), timeout=10)

    daemon.control("stop", config=tmp_path / "job.ini", pidfile=pidfile, name="testjob")
    assert not daemon.process_alive(pid)
    assert not pidfile.exists()
    assert "INFO stopping cleanly" in logtext(tmp_path)
    assert "testjob stopped" in logtext(tmp_path)


def test_kill_escalates_to_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert start(tmp_path, "stubborn").returncode == 0
    pidfile = tmp_path / "pid" / "job.pid"
    pid = daemon.read_pid(pidfile)
    assert pid is not None
    monkeypatch.setattr(daemon, "KILL_TIMEOUT", 1.0)
    daemon.control("kill", config=tmp_path / "job.ini", pidfile=pidfile, name="testjob")
    assert not daemon.process_alive(pid)
    assert not pidfile.exists()


def test_stale_pidfile_is_replaced(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid" / "job.pid"
    pidfile.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pidfile.write_text(dead.stdout)
    assert start(tmp_path).returncode == 0
    pid = daemon.read_pid(pidfile)
    assert pid is not None and pid != int(dead.stdout) and daemon.process_alive(pid)
    daemon.control("stop", config=tmp_path / "job.ini", pidfile=pidfile, name="testjob")
    assert not pidfile.exists()


def test_foreground_logs_to_stderr_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp_path), "fg"],
        stderr=subprocess.PIPE,
        text=True,
    )
    pidfile = tmp_path / "pid" / "job.pid"
    wait_for("the pidfile", lambda: daemon.read_pid(pidfile) == proc.pid, timeout=30)
    wait_for("the start line", lambda: "Starting" in logtext(tmp_path), timeout=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert not pidfile.exists()
    lines = err.splitlines()
    assert all(LINE.match(line) for line in lines), err
    assert lines[0].endswith("INFO Starting londiste-rs testjob 0.1.0")
    assert lines[-1].endswith("INFO testjob stopped")


def test_daemon_needs_a_pidfile(tmp_path: Path) -> None:
    out = start(tmp_path, "nopid")
    assert out.returncode != 0
    assert out.stderr.strip() == (
        f"{tmp_path / 'job.ini'}: running in the background (-d) needs a pidfile; "
        "add 'pidfile = pid/testjob.pid' to the config"
    )


def test_control_without_a_running_daemon(tmp_path: Path) -> None:
    pidfile = tmp_path / "job.pid"
    with pytest.raises(daemon.DaemonError, match=r"^testjob is not running \(no pidfile "):
        daemon.control("stop", config=tmp_path / "job.ini", pidfile=pidfile, name="testjob")
