"""`execute`: schema changes through the queue (londiste3's verb, OPERATIONS-REFERENCE §1.4).

On the root, ONE transaction for all the files given: for each file not applied yet (or
with --force), an EXECUTE_BEGIN event, the file's statements (when the node needs them),
the capture functions of the tables whose columns changed generated again (so the rows
captured from now on carry the new shape, I7), the file recorded in `applied_execute`, and
the EXECUTE event. Every branch and leaf then runs the file at exactly that point of the
stream: the rows before it apply with the old columns, the rows after with the new ones.

`execute --skip FILE` records files as applied on this node without running them (on a
subscriber whose worker stopped on one of them: it goes on, without that file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, UsageError
from londiste_rs.pg.db import connect, first_line
from londiste_rs.pg.execattrs import ExecAttrs, parse_attrs
from londiste_rs.pg.locking import LockBusy, with_lock_retries
from londiste_rs.replication.execute import (
    ExecFile,
    StatementFailed,
    decide,
    record,
    run,
    skip,
)
from londiste_rs.store import execute as store_execute
from londiste_rs.store import node as store_node
from londiste_rs.store.node import require_node

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


class ExecuteError(LondisteError):
    """An execute that changed nothing: the one line says why."""


def read_files(paths: list[Path], force: bool = False) -> list[ExecFile]:
    """The files, parsed and checked before anything runs; each is known by its base name."""
    files: list[ExecFile] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: cannot be read ({e})") from None
        f = ExecFile.parse(path.name, text, force)
        if any(g.name == f.name for g in files):
            raise UsageError(f"{f.name} is given twice; files are known by their name")
        files.append(f)
    return files


def execute(cfg: JobConfig, paths: list[Path], force: bool = False) -> list[str]:
    """Runs and queues the files on the root; returns one line per file."""
    files = read_files(paths, force)
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = store_node.get_node_info(conn, queue)
        if info is not None and info.node_type != "root":
            raise UsageError(
                f"'execute' runs files on the root, which queues them for every node; "
                f"{info.node_name} is a {info.node_type}: run it with the root's config "
                f"(or mark a file as applied here with 'execute --skip FILE')"
            )
        require_node(conn, cfg, ("root",), "execute")

        def work() -> list[str]:
            return [_execute_one(conn, queue, f) for f in files]

        try:
            lines = with_lock_retries(conn, cfg.lock_timeout, work, "execute")
        except LockBusy as e:
            raise ExecuteError(
                f"execute: a statement waited for a lock longer than lock_timeout "
                f"({e.timeout:g}s) {e.tries} times; end the transactions holding the tables "
                "(or raise lock_timeout in the ini) and run it again; nothing was applied"
            ) from None
        except StatementFailed as e:
            raise ExecuteError(
                f"{e}; nothing was applied or queued (the files run in one transaction)"
            ) from None
        except psycopg.Error as e:
            raise ExecuteError(f"execute: {first_line(e)}; nothing was applied or queued") from None
    return lines


def _execute_one(conn: Conn, queue: str, f: ExecFile) -> str:
    decision = decide(conn, queue, f)
    if decision.action == "applied":
        return decision.line + " (--force runs it again)"
    begin = store_execute.queue_file(
        conn, queue, store_execute.EXECUTE_BEGIN, f.name, f.text, f.options()
    )
    if decision.action == "run":
        try:
            run(conn, queue, f)
        except StatementFailed as e:
            if isinstance(e.error, pgerrors.LockNotAvailable):
                raise e.error from None  # with_lock_retries tries the transaction again
            raise
        own = store_execute.own_events(conn, queue, begin)
        if own:  # the rows the statements changed: the nodes that run the file leave them out
            store_execute.mark(conn, queue, begin, f.options(own))
        followed = store_execute.capture_follow(conn, queue)
        line = decision.line
        if followed:
            line += f"; capture follows the new columns of {', '.join(followed)}"
    else:
        record(conn, queue, f, "not needed")
        line = decision.line
    store_execute.queue_file(conn, queue, store_execute.EXECUTE, f.name, f.text, f.options())
    return line + "; queued for every node"


def skip_files(cfg: JobConfig, paths: list[Path]) -> list[str]:
    """Records the files as applied on this node without running them; a worker paused by
    one of them is resumed."""
    queue = cfg.queue_name
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, verb="execute --skip")
        lines = []
        with conn.transaction():
            for path in paths:
                text = path.read_text(encoding="utf-8") if path.is_file() else ""
                attrs = parse_attrs(text, path.name) if text else ExecAttrs()
                skip(conn, queue, ExecFile(path.name, text, attrs, []))
                lines.append(f"{path.name}: recorded as applied on this node; not run here")
            if (
                info.paused
                and info.cur_error
                and any(info.cur_error.startswith(f"execute {p.name}:") for p in paths)
            ):
                store_node.set_paused(conn, queue, False)
                lines.append(f"node {info.node_name} resumed")
    return lines
