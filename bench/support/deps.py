"""Stock londiste3 and pgqd from Debian: find them, install them when missing (as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from londiste_rs.pgcluster import find_bindir

DEBIAN_PACKAGES = (
    "python3-londiste",
    "pgqd",
    "postgresql-15-pgq3",
    "postgresql-15-pgq-node",
    "postgresql-15-londiste-sql",
)

# Debian's londiste 3.11 installs its command as `londiste` (not `londiste3`), a script for the
# system python3; it must run with the system interpreter, never the project's venv.
LONDISTE = "/usr/bin/londiste"
PGQD = "pgqd"


class MissingDependency(RuntimeError):
    """Something the bench needs is not installed and cannot be installed here."""


def missing() -> list[str]:
    """The Debian packages among DEBIAN_PACKAGES whose files are not there."""
    extdir = Path("/usr/share/postgresql") / find_bindir().parent.name / "extension"
    checks = {
        "python3-londiste": Path(LONDISTE).is_file(),
        "pgqd": shutil.which(PGQD) is not None,
        "postgresql-15-pgq3": (extdir / "pgq.control").is_file(),
        "postgresql-15-pgq-node": (extdir / "pgq_node.control").is_file(),
        "postgresql-15-londiste-sql": (extdir / "londiste.control").is_file(),
    }
    return [pkg for pkg, ok in checks.items() if not ok]


def ensure(say: Callable[[str], None] = print) -> None:
    """Installs the missing Debian packages when we are root; otherwise raises
    MissingDependency saying what to install."""
    need = missing()
    if not need:
        return
    if os.geteuid() != 0:
        raise MissingDependency(
            "stock londiste3 is not installed (missing Debian packages: "
            f"{' '.join(need)}); install them as root: apt-get install -y {' '.join(need)}"
        )
    say(f"installing stock londiste3 from Debian: {' '.join(need)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *need]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            raise MissingDependency(f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}")
    # Debian's postgresql package may start a cluster of its own; the bench does not use it.
    if shutil.which("pg_ctlcluster"):
        subprocess.run(["pg_ctlcluster", find_bindir().parent.name, "main", "stop"],
                       capture_output=True, check=False)  # fmt: skip
    if missing():
        raise MissingDependency(f"still missing after apt-get install: {' '.join(missing())}")


def system_env() -> dict[str, str]:
    """The environment for Debian's python3 programs: without the venv's variables."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        parts = [p for p in env.get("PATH", "").split(":") if not p.startswith(venv)]
        env["PATH"] = ":".join(parts)
    return env
