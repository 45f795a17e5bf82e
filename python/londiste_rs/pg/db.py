"""Connections: one place that opens them, maps failures to one-line errors and keeps passwords
out of every message.

Every session runs with `search_path = pg_catalog, pg_temp` (SAFE_SEARCH_PATH): nothing we run
resolves a name through a schema another role can write (a `public.format(text, text)` would
beat pg_catalog's). Our SQL names user tables schema-qualified. Like PostgreSQL's own logical
replication workers, the worker applies changes with this search_path: subscriber triggers
that fire then must qualify their names or set their own search_path. Every session also sets
`londiste_rs.replica = on` (store/session.py), which a takeover's write fence reads."""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from londiste_rs.errors import ConnectError
from londiste_rs.store.session import REPLICA_SETTING

_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_URI = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")

SAFE_SEARCH_PATH = "pg_catalog,pg_temp"


def redact(text: str) -> str:
    """Replaces every password in a connection string (key=value or URI form) with ***."""
    text = _PASSWORD_KV.sub(r"\1***", text)
    return _PASSWORD_URI.sub(r"\1***\3", text)


def describe(connstr: str) -> str:
    """A short, password-free name for a connection string: user@host:port/dbname."""
    try:
        params = conninfo_to_dict(connstr)
    except psycopg.ProgrammingError:
        return _INVALID if _holds_password(connstr) else redact(connstr)
    host = params.get("host") or "local socket"
    port = params.get("port") or "5432"
    user = str(params.get("user") or "")
    dbname = params.get("dbname") or user or "?"
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


def connect(
    connstr: str, *, autocommit: bool = False, what: str = "database", **kwargs: Any
) -> psycopg.Connection[Any]:
    """Opens a connection or raises ConnectError with one line saying what failed and where."""
    try:
        params = conninfo_to_dict(connstr)
    except psycopg.ProgrammingError as e:
        shown = _INVALID if _holds_password(connstr) else f"invalid connection string {connstr!r}"
        raise ConnectError(
            f"{what}: {shown}: {_without_fragments(first_line(e), connstr)}; "
            "write it as 'host=... port=... dbname=... user=...'"
        ) from None
    # ours last: a later -c wins over the connection string's (or PGOPTIONS') and the caller's
    given = params.get("options") or os.environ.get("PGOPTIONS")
    options = " ".join(str(o) for o in (given, kwargs.pop("options", None)) if o)
    kwargs["options"] = f"{options} -c search_path={SAFE_SEARCH_PATH} -c {REPLICA_SETTING}".strip()
    try:
        conn = psycopg.connect(
            connstr, autocommit=autocommit, application_name="londiste-rs", **kwargs
        )
    except psycopg.OperationalError as e:
        why = redact(first_line(e))
        for key in ("password", "sslpassword"):
            secret = str(params.get(key) or "")
            if len(secret) >= 3:  # (a shorter one would mangle every word it is part of)
                why = why.replace(secret, "***")
        if "password" in why:  # none supplied, or a wrong one
            why += f"; {_PASSWORD_HINT}"
        raise ConnectError(f"cannot connect to {what} {describe(connstr)}: {why}") from None
    return conn


def with_fix(e: ConnectError, setting: str) -> ConnectError:
    """`e` with the fix a daemon's start-up check names: start the server, or correct the
    `setting` (e.g. "'db' in slave.ini") that points at the wrong one. A login refused for
    its password names its fix already."""
    text = str(e)
    if "password" in text:
        return e
    if "does not exist" in text:
        return ConnectError(f"{text}; fix {setting}")
    return ConnectError(f"{text}; is that server running? If it is, fix {setting}")


_INVALID = "invalid connection string (not shown: it holds a password)"
_PASSWORD_HINT = (
    "node locations stored in the databases hold no password: give it in ~/.pgpass (or "
    "PGPASSFILE), a service file, PGPASSWORD, or the ini (README: Passwords)"
)


def _holds_password(connstr: str) -> bool:
    return "password" in connstr.lower() or _PASSWORD_URI.search(connstr) is not None


def _without_fragments(message: str, connstr: str) -> str:
    """libpq's complaint about a connection string without the parts of it that it quotes
    (such as 'missing "=" after "Secret9"'), when the string holds a password: a part of an
    unquoted password with a space would be shown."""
    if not _holds_password(connstr):
        return message
    return re.sub(r'"([^"]*)"', lambda m: m.group(0) if m.group(1) == "=" else '"***"', message)


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's text, which is what libpq puts first."""
    for line in str(e).splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("FATAL:").strip()
    return type(e).__name__
