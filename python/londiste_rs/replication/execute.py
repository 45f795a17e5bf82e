"""Running an execute file on one node: on the root by the `execute` verb, on every other
node by the worker when the file's EXECUTE event comes, at its place in the stream.

A file is recorded by name (`applied_execute`): one already recorded here is not run again
(unless the root forced it). Its header attributes decide whether this node needs it
(pg/execattrs.py); `@name@` tags become the local table's name. The statements run one by
one in the caller's transaction (on a subscriber: the batch's), with the search_path the
database gives this role (as psql would), then ours again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import psycopg
from psycopg import errors as pgerrors

from londiste_rs.errors import LondisteError, UsageError
from londiste_rs.pg.execattrs import ExecAttrs, need, parse_attrs, substitute
from londiste_rs.pg.statements import Statement, split_statements, transaction_control
from londiste_rs.retry import PermanentError
from londiste_rs.store import execute as store_execute

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# A statement failing with one of these is worth retrying as it is (a lock, a deadlock...).
TRANSIENT = (
    pgerrors.LockNotAvailable,
    pgerrors.DeadlockDetected,
    pgerrors.SerializationFailure,
    pgerrors.QueryCanceled,
)

# The session's own search_path (pg/db.connect), set back after a file's statements.
OUR_SEARCH_PATH = "pg_catalog, pg_temp"

# The search_path this role gets in this database when nothing else sets it: the role's
# setting in this database, the database's, the role's, or the server's.
_USER_SEARCH_PATH = """
select coalesce(
    (select substr(s, 13) from pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
      where s like 'search_path=%'
        and (d.setdatabase, d.setrole) = (x.db, x.role)),
    (select substr(s, 13) from pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
      where s like 'search_path=%' and (d.setdatabase, d.setrole) = (x.db, 0)),
    (select substr(s, 13) from pg_catalog.pg_db_role_setting d, unnest(d.setconfig) s
      where s like 'search_path=%' and (d.setdatabase, d.setrole) = (0, x.role)),
    (select boot_val from pg_catalog.pg_settings where name = 'search_path'))
from (select (select oid from pg_catalog.pg_database
               where datname = pg_catalog.current_database()) as db,
             (select oid from pg_catalog.pg_roles where rolname = current_user) as role) x
"""


class ExecuteFailed(PermanentError):
    """A statement of an execute file failed on this node (not a lock or a lost connection)."""

    def __init__(self, message: str, file: str):
        super().__init__(message)
        self.file = file


@dataclass(frozen=True)
class ExecFile:
    """An execute file: its name (the key it is recorded by), text, header and statements."""

    name: str
    text: str
    attrs: ExecAttrs
    statements: list[Statement]
    force: bool = False

    @classmethod
    def parse(cls, name: str, text: str, force: bool = False) -> ExecFile:
        """Refuses (UsageError) a file whose quoting never ends, with an unknown header
        attribute, without statements, or with transaction control in it."""
        attrs = parse_attrs(text, name)
        statements = split_statements(text, name)
        if not statements:
            raise UsageError(f"{name} has no statements; nothing to execute")
        for n, s in enumerate(statements, 1):
            if transaction_control(s):
                raise UsageError(
                    f"{name}: statement {n} (line {s.line}: {s.first_line}) ends or splits "
                    "the transaction; execute runs each file in one transaction of its own "
                    "(with the EXECUTE event), so leave transaction control out"
                )
        return cls(name, text, attrs, statements, force)

    @classmethod
    def from_event(cls, file: str | None, data: bytes | None, extra2: bytes | None) -> ExecFile:
        """The file an EXECUTE (or EXECUTE_BEGIN) event carries."""
        options = dict(parse_qsl((extra2 or b"").decode()))
        if not file or data is None:
            raise LondisteError("an EXECUTE event without its file name or text")
        return cls.parse(file, data.decode(), options.get("force") == "1")

    def options(self, own: list[tuple[int, int]] | None = None) -> str:
        """What the events carry in ev_extra2: force, the ranges of the file's own rows."""
        opts = {"force": "1"} if self.force else {}
        if own:
            opts["own"] = ",".join(f"{lo}-{hi}" for lo, hi in own)
        return urlencode(opts)


def own_rows(extra2: bytes | None) -> list[tuple[int, int]]:
    """The ranges of row events an EXECUTE_BEGIN event names as its file's own."""
    text = dict(parse_qsl((extra2 or b"").decode())).get("own", "")
    ranges = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        ranges.append((int(lo), int(hi)))
    return ranges


Action = Literal["run", "applied", "not needed"]


@dataclass(frozen=True)
class Decision:
    """What this node does with a file, and the line that says so."""

    action: Action
    line: str

    @property
    def covers_own_rows(self) -> bool:
        """The file runs (or ran) here: the rows its statements changed on the root are not
        applied as events too."""
        return self.action != "not needed"


def decide(conn: Conn, queue: str, f: ExecFile) -> Decision:
    """Whether this node runs the file. Raises UsageError when its attributes match this node
    only in part."""
    done = store_execute.applied(conn, queue, f.name)
    if done is not None and not f.force:
        when = done.time.strftime("%Y-%m-%d %H:%M:%S")
        return Decision(
            "applied",
            f"{f.name}: already applied on this node ({done.outcome}, {when}); skipped",
        )
    tables, seqs = store_execute.local_objects(conn, queue)
    needed = need(conn, f.attrs, tables, seqs, f.name)
    if not needed.run:
        return Decision("not needed", f"{f.name}: not needed on this node (lacks {needed.why_not})")
    return Decision("run", f"{f.name}: executed {len(f.statements)} statements")


class StatementFailed(Exception):
    """Statement `number` of a file failed with `error` (the transaction is aborted)."""

    def __init__(self, f: ExecFile, number: int, error: psycopg.Error):
        s = f.statements[number - 1]
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(
            f"{f.name}: statement {number} (line {s.line}: {s.first_line}) failed: {first}"
        )
        self.error = error


def run(conn: Conn, queue: str, f: ExecFile) -> int:
    """Runs the file's statements here, in the caller's transaction, and records it. Raises
    StatementFailed (its `error` the server's) when one fails."""
    tables, seqs = store_execute.local_objects(conn, queue)
    text = substitute(conn, f.text, f.attrs, tables, seqs)
    statements = split_statements(text, f.name) if text != f.text else f.statements
    row = conn.execute(_USER_SEARCH_PATH).fetchone()
    conn.execute("select pg_catalog.set_config('search_path', %s, true)", [row[0] if row else ""])
    for n, s in enumerate(statements, 1):
        try:
            conn.execute(s.text.encode(), prepare=False)
        except psycopg.Error as e:
            raise StatementFailed(f, n, e) from e
    conn.execute("select pg_catalog.set_config('search_path', %s, true)", [OUR_SEARCH_PATH])
    record(conn, queue, f, "executed")
    return len(statements)


def record(conn: Conn, queue: str, f: ExecFile, outcome: str) -> None:
    store_execute.record(conn, queue, f.name, f.text, f.attrs.urlencoded(), outcome)


def skip(conn: Conn, queue: str, f: ExecFile) -> None:
    """Records the file as applied here without running it (execute --skip)."""
    record(conn, queue, f, "skipped")
