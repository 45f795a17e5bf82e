"""Daemons started by tests (a pytest plugin, see conftest.py): `kill_leftover_daemons` kills
whatever a failed test left running; `started_pid` waits for a ticker daemon to be up;
`processes_with` finds the processes whose command line names a file (a config)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from londiste_rs import daemon
from londiste_rs.waiting import wait_for

TICKER_START = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\d+) INFO Starting londiste-rs ticker "
)


@pytest.fixture
def kill_leftover_daemons(tmp_path: Path) -> Iterator[None]:
    """A failed test must not leave a daemon behind: whatever a pidfile under tmp_path still
    names is killed at the end. Modules that start daemons use it for every test
    (`pytestmark = pytest.mark.usefixtures("kill_leftover_daemons")`)."""
    yield
    for pidfile in tmp_path.glob("**/pid/*.pid"):
        pid = daemon.read_pid(pidfile)
        if pid and daemon.process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def started_pid(workdir: Path) -> int:
    """The pid of the ticker started in `workdir`, once its pidfile (pid/ticker.pid) and its
    start line (in log/ticker.log) are there, and it is alive."""
    pid: int = wait_for("the pidfile", lambda: daemon.read_pid(workdir / "pid/ticker.pid"))
    log = workdir / "log/ticker.log"
    first = log.read_text().splitlines()[0]
    m = TICKER_START.match(first)
    assert m, first
    assert int(m.group(1)) == pid
    assert daemon.process_alive(pid)
    return pid


def processes_with(arg: str | Path) -> list[int]:
    """The live processes (zombies aside) whose command line has `arg` (a config file's path,
    as the test gave it) as one of its arguments."""
    want = str(arg).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in args and daemon.process_alive(int(proc.name)):
            found.append(int(proc.name))
    return found
