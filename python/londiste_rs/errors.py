"""The one error hierarchy. Every error a user can cause is a `LondisteError` whose message is a
single line naming the problem and the fix; the CLI prints it and exits with `exit_code`."""

from __future__ import annotations

from typing import ClassVar, Literal


class LondisteError(Exception):
    """A problem the user can fix; its text says how."""

    exit_code = 1


class ConfigError(LondisteError):
    """A missing or invalid config file or key."""

    exit_code = 2


class ConnectError(LondisteError):
    """A server that cannot be reached or refuses the login."""

    exit_code = 3


class NotInstalledError(LondisteError):
    """The database has no londiste-rs schema or node where one is needed."""

    exit_code = 4


class UsageError(LondisteError):
    """A verb run with wrong arguments or on the wrong kind of node."""

    exit_code = 2


class TableError(LondisteError):
    """A table that cannot be replicated as asked (missing, no primary key, ...)."""

    exit_code = 5


class PgBinariesMissing(LondisteError):
    """PostgreSQL server programs (initdb, pg_ctl) could not be found."""

    exit_code = 6


class DecodeError(LondisteError, ValueError):
    """A batch's event stream the Rust decoder cannot read (`_native.BatchDecoder`): the
    message names the event and the problem, `ev_id` the event when it is known. The decoder
    is unusable afterwards; decode the batch again with a new one."""

    def __init__(self, message: str, ev_id: int | None = None) -> None:
        super().__init__(message)
        self.ev_id = ev_id


class CopyStreamFailed(LondisteError):
    """A COPY moved by the Rust loops (`londiste_rs.libpq`) stopped because one side failed;
    `side` says which. `libpq` raises the server's own error instead when there is one."""

    side: ClassVar[Literal["source", "target"]]


class CopySourceFailed(CopyStreamFailed):
    """The source's COPY TO STDOUT failed: its result holds the server's error."""

    side = "source"


class CopyTargetFailed(CopyStreamFailed):
    """The target refused the data of its COPY FROM STDIN: its connection says why."""

    side = "target"
