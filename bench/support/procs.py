"""Commands and daemons of the tools under test, with their output kept in log files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


class CommandFailed(RuntimeError):
    pass


def call(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Runs a command to completion and appends its output to `log`; any exit code."""
    out = subprocess.run(
        list(cmd), capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}(exit {out.returncode})\n")
    return out


def run(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> str:  # fmt: skip
    """Runs a command to completion, appends its output to `log`, raises on failure."""
    out = call(cmd, log, env, timeout)
    if out.returncode != 0:
        tail = (out.stderr.strip() or out.stdout.strip())[-800:]
        raise CommandFailed(f"{' '.join(cmd[:3])} ... failed ({out.returncode}): {tail}")
    return out.stdout


def pipe(out_cmd: Sequence[str], in_cmd: Sequence[str]) -> None:
    """Runs `out_cmd | in_cmd` to completion; raises CommandFailed when either fails."""
    reader = subprocess.Popen(list(out_cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = subprocess.run(list(in_cmd), stdin=reader.stdout, capture_output=True, check=False)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()
    errors = reader.stderr.read().decode()
    if reader.wait() != 0 or writer.returncode != 0:
        raise CommandFailed(f"{out_cmd[0]} | {in_cmd[0]} failed: "
                            f"{(errors + writer.stderr.decode()).strip()[-800:]}")  # fmt: skip


class Daemon:
    """A long-running process in the foreground of its own process group, logging to a file."""

    def __init__(self, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None):
        self.cmd = list(cmd)
        self.log = log
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)} &\n")
        self._out = log.open("a")
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the process group, then SIGKILL if it has not gone after `timeout`."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Children (londiste3's copy processes) share the group; make sure none is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._out.close()
