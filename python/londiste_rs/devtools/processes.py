"""Running londiste-rs verbs as child processes (the demo's ticker and workers; fault tests)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def spawn_cli(*args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Starts `londiste-rs ARGS...` with this interpreter, output discarded (verbs log to their
    logfile)."""
    return subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_gracefully(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGINT (the verbs' safe stop), then SIGKILL if it has not exited within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
