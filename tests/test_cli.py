"""The command line: help, version, one-line usage errors (londiste3's argument order is
tested without a process in unit/test_cli.py)."""

from __future__ import annotations

from tests.fix_cli import run_cli


def test_help_answers():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "londiste-rs" in out.stdout and "demo" in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("londiste-rs ")


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
