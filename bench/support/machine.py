"""The machine description written with every result: hardware, OS and tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from londiste_rs import __version__
from londiste_rs.devtools.pgcluster import find_bindir
from support.env import SETTINGS


def _cmd(*args: str) -> str:
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout.strip() or out.stderr.strip() or "unknown").splitlines()[0]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _deb(package: str) -> str:
    return _cmd("dpkg-query", "-W", "-f=${Version}", package)


def describe() -> str:
    root = Path(__file__).resolve().parents[2]
    commit = _cmd("git", "-C", str(root), "rev-parse", "--short", "HEAD")
    rows = [
        ("CPU", f"{_cpu()}, {os.cpu_count()} logical cores (shared with other work: figures "
                "are comparable within one run, not across machines)"),
        ("memory", _memory()),
        ("OS", f"{platform.platform()}"),
        ("PostgreSQL", _cmd(str(find_bindir() / "postgres"), "--version")),
        ("cluster settings (both)", ", ".join(f"{k}={v}" for k, v in SETTINGS.items())
         + " (plus londiste_rs.devtools.pgcluster defaults: fsync=off, full_page_writes=off)"),
        ("londiste-rs", f"{__version__} (git {commit})"),
        ("stock londiste3", f"python3-londiste {_deb('python3-londiste')}, pgqd {_deb('pgqd')}, "
                            f"pgq {_deb('postgresql-15-pgq3')} (Debian)"),
        ("pgcopydb", f"{_deb('pgcopydb')} (Debian)"),
        ("Python", platform.python_version()),
    ]  # fmt: skip
    return "\n".join(["| what | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])
