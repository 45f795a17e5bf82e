"""The command line: help, version, londiste3's argument order, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from londiste_rs.cli import normalize_argv


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args], capture_output=True, text=True, timeout=60
    )


def test_help_answers():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "londiste-rs" in out.stdout and "demo" in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("londiste-rs ")


def test_config_first_order_is_accepted():
    assert normalize_argv(["-d", "slave.ini", "worker"]) == ["-d", "worker", "slave.ini"]
    assert normalize_argv(["master.ini", "add-table", "--all"]) == [
        "add-table",
        "master.ini",
        "--all",
    ]
    assert normalize_argv(["-s", "slave.ini"]) == ["-s", "stop", "slave.ini"]
    assert normalize_argv(["ticker", "-d", "ticker.ini"]) == ["ticker", "-d", "ticker.ini"]


def test_usage_mistakes_are_one_line_errors(tmp_path):
    ini = str(tmp_path / "node.ini")
    for args, says in [
        (["no-such-verb"], "ERROR: No such command 'no-such-verb'; see 'londiste-rs --help'"),
        ([ini, "add-table", "--bogus"],
         "ERROR: No such option: --bogus; see 'londiste-rs add-table --help'"),
        (["add-table"], "ERROR: Missing argument 'CONFIG.ini'; see 'londiste-rs add-table --help'"),
    ]:  # fmt: skip
        out = run_cli(*args)
        assert out.returncode == 2
        assert out.stderr == says + "\n"
