"""Stock londiste3 and pgqd, and pgcopydb, from Debian: find them, install them when missing
(as root). pgcopydb is optional: without it the many-tables scenario says it is not available."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from londiste_rs.devtools.pgcluster import find_bindir

DEBIAN_PACKAGES = (
    "python3-londiste",
    "pgqd",
    "postgresql-15-pgq3",
    "postgresql-15-pgq-node",
    "postgresql-15-londiste-sql",
)

# Installed like DEBIAN_PACKAGES, but the bench runs without it (it is one scenario's reference).
OPTIONAL_PACKAGES = ("pgcopydb",)

# Debian's londiste 3.11 installs its command as `londiste` (not `londiste3`), a script for the
# system python3; it must run with the system interpreter, never the project's venv.
LONDISTE = "/usr/bin/londiste"
PGQD = "pgqd"
PGCOPYDB = "pgcopydb"


class MissingDependency(RuntimeError):
    """Something the bench needs is not installed and cannot be installed here."""


def missing(optional: bool = False) -> list[str]:
    """The Debian packages among DEBIAN_PACKAGES (or OPTIONAL_PACKAGES) whose files are not
    there."""
    extdir = Path("/usr/share/postgresql") / find_bindir().parent.name / "extension"
    checks = {
        "python3-londiste": Path(LONDISTE).is_file(),
        "pgqd": shutil.which(PGQD) is not None,
        "postgresql-15-pgq3": (extdir / "pgq.control").is_file(),
        "postgresql-15-pgq-node": (extdir / "pgq_node.control").is_file(),
        "postgresql-15-londiste-sql": (extdir / "londiste.control").is_file(),
        "pgcopydb": shutil.which(PGCOPYDB) is not None,
    }
    wanted = OPTIONAL_PACKAGES if optional else DEBIAN_PACKAGES
    return [pkg for pkg in wanted if not checks[pkg]]


def ensure(say: Callable[[str], None] = print) -> None:
    """Installs the missing Debian packages when we are root; otherwise raises
    MissingDependency saying what to install. A missing optional package that cannot be
    installed is only said."""
    need, optional = missing(), missing(optional=True)
    if not need and not optional:
        return
    if os.geteuid() != 0:
        if need:
            raise MissingDependency(
                "stock londiste3 is not installed (missing Debian packages: "
                f"{' '.join(need)}); install them as root: apt-get install -y {' '.join(need)}"
            )
        say(f"not installed (not root): {' '.join(optional)}; its figures will be missing")
        return
    say(f"installing from Debian: {' '.join(need + optional)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _apt(["apt-get", "update", "-qq"], env)
    if need:
        _apt(["apt-get", "install", "-y", "-qq", *need], env)
    if optional:
        try:
            _apt(["apt-get", "install", "-y", "-qq", *optional], env)
        except MissingDependency as e:
            say(f"{e}; the bench goes on without {' '.join(optional)}")
    # Debian's postgresql package may start a cluster of its own; the bench does not use it.
    if shutil.which("pg_ctlcluster"):
        subprocess.run(["pg_ctlcluster", find_bindir().parent.name, "main", "stop"],
                       capture_output=True, check=False)  # fmt: skip
    if missing():
        raise MissingDependency(f"still missing after apt-get install: {' '.join(missing())}")


def _apt(cmd: list[str], env: dict[str, str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise MissingDependency(f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}")


def system_env() -> dict[str, str]:
    """The environment for Debian's python3 programs: without the venv's variables."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        parts = [p for p in env.get("PATH", "").split(":") if not p.startswith(venv)]
        env["PATH"] = ":".join(parts)
    return env
