"""The command line as a user runs it: `run_cli` starts `python -m londiste_rs` as a real
process; `ok` wants it to succeed, `needs_attention` wants a `status` that finds a problem (exit 1),
`one_line_error` wants it to fail with exactly one line and
no traceback; `job_ini` writes a node's job file (a pytest plugin, see conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

# A command that hangs fails its test well before pytest-timeout's 300 s.
CLI_TIMEOUT = 120


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`londiste-rs ARGS` in `cwd` (relative log/ and pid/ paths of a config are taken from
    there, as londiste3 does)."""
    return subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        cwd=cwd,
    )


def ok(*args: str, cwd: Path | None = None) -> str:
    """The standard output of a command that must succeed."""
    out = run_cli(*args, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout


def needs_attention(*args: str, cwd: Path | None = None) -> str:
    """The standard output of a `status` that must find something needing attention (exit 1):
    in a test that steps its workers itself, no worker sends a heartbeat."""
    out = run_cli(*args, cwd=cwd)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed (on stderr, without a traceback)."""
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def job_ini(tmp_path: Path, name: str, dsn: str, queue: str = "q1", **extra: Any) -> Path:
    """`tmp_path/NAME.ini`: a job file for `dsn`'s node of `queue`, polling every 0.1 s,
    logging to tmp_path/log/ and with its pidfile in tmp_path/pid/; `extra` adds settings."""
    path = tmp_path / f"{name}.ini"
    lines = ["[londiste3]", f"db = {dsn}", f"queue_name = {queue}", "loop_delay = 0.1"]
    lines += [f"logfile = {tmp_path}/log/{name}.log", f"pidfile = {tmp_path}/pid/{name}.pid"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
