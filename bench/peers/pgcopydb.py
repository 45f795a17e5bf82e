"""pgcopydb (Debian's 0.10): copies a whole database, schema and rows, with parallel jobs. It
does not replicate afterwards, so it is no `Tool`: the many-tables scenario runs it as its
reference."""

from __future__ import annotations

import os
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
