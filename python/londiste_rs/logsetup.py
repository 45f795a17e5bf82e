"""Logging for the long-running verbs, in skytools' format:

    2015-09-24 15:57:26,990 804 INFO Done

to the job's logfile, plus stderr when running in the foreground. `-v` shows debug lines,
`-q` only warnings and errors. A SIGHUP (reload) reopens the logfile, so logrotate's
move-then-signal works.

`log_format = json` writes one JSON object per line instead, for log shippers:

    {"time": "2026-11-27T08:15:02.120Z", "level": "INFO", "pid": 804, "node": "slave",
     "queue": "q1", "message": "applied ticks 3..4 ...", "ticks": 1, "events": 1200, ...}

`node` and `queue` come from `set_context` (null where the job has none, as the ticker);
a line's figures are what its call passed as `extra={"figures": {...}}`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from londiste_rs.errors import ConfigError

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"

# The job's node and queue, for JSON lines (set_context).
_context: dict[str, str | None] = {"node": None, "queue": None}


def set_context(*, node: str | None = None, queue: str | None = None) -> None:
    """Names the node and queue every JSON log line carries from now on."""
    _context.update(node=node, queue=queue)


def figures(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call whose numbers a JSON line should carry as fields."""
    return {"figures": values}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "pid": record.process,
            **_context,
            "message": record.getMessage(),
        }
        extra = getattr(record, "figures", None)
        if isinstance(extra, dict):
            line.update({k: v for k, v in extra.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


# Handlers this module installed on the root logger, so setup can be repeated (tests, reload).
_installed: list[logging.Handler] = []


def level_for(verbose: int, quiet: bool) -> int:
    if verbose:
        return logging.DEBUG
    return logging.WARNING if quiet else logging.INFO


def setup_logging(
    logfile: Path | None,
    *,
    to_stderr: bool,
    verbose: int = 0,
    quiet: bool = False,
    log_format: str = "text",
) -> None:
    """Sends every `londiste_rs` log line to `logfile` (if any) and to stderr (if asked), as
    text or (`log_format="json"`) as JSON lines.

    Raises ConfigError when the logfile cannot be opened; its directory is created if missing.
    """
    handlers: list[logging.Handler] = []
    if logfile is not None:
        try:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
        except OSError as e:
            raise ConfigError(
                f"cannot open logfile {logfile}: {e.strerror}; fix 'logfile' or the permissions"
            ) from None
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(level_for(verbose, quiet))
    # psycopg logs its own connection chatter at INFO; keep it out unless debugging.
    logging.getLogger("psycopg").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def reopen_logfiles() -> None:
    """Closes and reopens the logfile (after logrotate moved it away)."""
    for handler in _installed:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()


def log_to_file_only(logger: logging.Logger, level: int, message: str) -> None:
    """Writes one line to the logfile but not to stderr: for errors the CLI prints itself."""
    record = logger.makeRecord(logger.name, level, "(daemon)", 0, message, (), None)
    for handler in _installed:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
