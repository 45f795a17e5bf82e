"""pgcopydb (Debian's 0.10): copies a whole database, schema and rows, with parallel jobs. It
does not replicate afterwards, so it is no `Tool`: the many-tables scenario runs it as its
reference, and the compare scenario its `compare data` where the installed version has it."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from londiste_rs.devtools.pgcluster import find_bindir
from support import deps, procs
from support.env import Db

KEY = "pgcopydb"
NAME = "pgcopydb"


def unavailable() -> str | None:
    missing = deps.missing(optional=True)
    return f"not installed (missing {' '.join(missing)})" if missing else None


def clone(src: Db, dst: Db, jobs: int, logdir: Path, timeout: float) -> None:
    """`pgcopydb clone` of src into the empty dst, `jobs` tables copied and `jobs` indexes
    built at a time (tables are not split: --split-tables-larger-than stays off)."""
    # pgcopydb runs pg_dump and pg_restore from PATH: the cluster's own version first.
    env = {**os.environ, "PATH": f"{find_bindir()}:{os.environ.get('PATH', '')}"}
    procs.run(
        [deps.PGCOPYDB, "clone", "--source", src.dsn, "--target", dst.dsn,
         "--dir", str(logdir / "pgcopydb-work"), "--table-jobs", str(jobs),
         "--index-jobs", str(jobs)],
        logdir / "commands.log", env=env, timeout=timeout,
    )  # fmt: skip


@cache
def compare_unavailable() -> str | None:
    """Why `pgcopydb compare data` cannot run here, or None when it can."""
    why = unavailable()
    if why:
        return why
    out = subprocess.run([deps.PGCOPYDB, "compare", "data", "--help"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    if out.returncode != 0 or "unknown command" in out.stdout + out.stderr:
        out = subprocess.run([deps.PGCOPYDB, "--version"], capture_output=True, text=True,
                             check=False)  # fmt: skip
        version = [v for v in out.stdout.splitlines() if v.startswith("pgcopydb version")]
        return f"{version[0] if version else 'this pgcopydb'} has no `compare data` command"
    return None


def compare_data(src: Db, dst: Db, tables: list[str], logdir: Path,
                 timeout: float) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`pgcopydb compare data` of `tables` only (a filter file), whatever its exit code (not 0
    when a table differs)."""
    work = logdir / "pgcopydb-compare"
    work.mkdir(parents=True, exist_ok=True)
    filters = work / "filters.ini"
    filters.write_text("[include-only-table]\n" + "".join(f"{t}\n" for t in tables))
    return procs.call(
        [deps.PGCOPYDB, "compare", "data", "--source", src.dsn, "--target", dst.dsn,
         "--dir", str(work / "dir"), "--filters", str(filters)],
        logdir / "commands.log", timeout=timeout,
    )  # fmt: skip
