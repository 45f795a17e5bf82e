"""The systemd unit templates in docs/systemd (issue 15): systemd itself finds nothing wrong
in them, and their ExecStart lines are this CLI's verbs in its argument order, in the
foreground, stopped by SIGTERM and restarted on failure."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fix_cli import one_line_error, run_cli

UNITS = Path(__file__).parents[1] / "docs/systemd"
NAMES = ["londiste-rs-ticker@.service", "londiste-rs-worker@.service"]


def service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(UNITS / name)
    return parser["Service"]


@pytest.mark.parametrize("name", NAMES)
def test_unit_runs_the_cli_in_the_foreground(tmp_path, name):
    s = service(name)
    assert (s["Type"], s["KillSignal"], s["Restart"]) == ("simple", "SIGTERM", "on-failure")
    argv = shlex.split(s["ExecStart"].replace("%i", "missing"))
    assert argv[0] == "/usr/local/bin/londiste-rs"
    assert "-d" not in argv and "--daemon" not in argv
    # the CLI takes those arguments: a missing ini is its one-line error, exit 2
    out = run_cli(*(a.replace("/etc/londiste-rs", str(tmp_path)) for a in argv[1:]))
    assert out.returncode == 2
    assert one_line_error(out).startswith(f"ERROR: config file {tmp_path}/missing.ini not found")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("name", NAMES)
def test_systemd_finds_nothing_wrong(tmp_path, name):
    # an instance of the template, its ExecStart pointing at this venv's londiste-rs
    exe = Path(sys.executable).parent / "londiste-rs"
    text = (UNITS / name).read_text().replace("/usr/local/bin/londiste-rs", str(exe))
    unit = tmp_path / name.replace("@", "@test")
    unit.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and out.stderr == "" and out.stdout == "", out.stderr
