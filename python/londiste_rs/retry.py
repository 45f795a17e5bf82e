"""The one retry policy of the daemons (worker and ticker): what to do after an error.

- **transient**: a dropped connection, a server restarting, a lock timeout, a trigger on the
  subscriber that failed this time: retried with an exponential backoff;
- **permanent**: the position is lost, the schema is missing, a table's shape does not match
  what was captured, an event cannot be decoded: retrying at once cannot help. The error is
  recorded with its fix where `status` shows it, and looked at again only slowly, so that a
  fix (resync, create-*, ALTER TABLE) is noticed without restarting the daemon.

Any other exception is treated as transient too: a daemon logs it and goes on; it never dies
of an error it did not foresee (and never crash-loops on one).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from londiste_rs.errors import (
    ConnectError,
    DecodeError,
    LondisteError,
    NotInstalledError,
    TableError,
)
from londiste_rs.pg.db import first_line, redact

# A permanent error is looked at again this often (seconds), at most.
PERMANENT_POLL = 30.0


class PermanentError(LondisteError):
    """An error no retry can fix by itself; its text names the fix."""


@dataclass(frozen=True)
class Verdict:
    """What the policy says about one error."""

    transient: bool
    lost_connection: bool  # drop the connections before retrying; nothing can be recorded
    message: str  # one line, passwords redacted


def _connection_lost(e: psycopg.Error) -> bool:
    """A client-side failure (no SQLSTATE), a connection exception (class 08) or the server
    going away (57P01-57P05); not a lock or statement timeout, whose session goes on."""
    state = e.sqlstate
    return state is None or state.startswith("08") or state.startswith("57P")


def classify(e: BaseException) -> Verdict:
    if isinstance(e, ConnectError) or (
        isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)) and _connection_lost(e)
    ):
        return Verdict(True, True, redact(first_line(e)))
    if isinstance(e, (PermanentError, NotInstalledError, TableError, DecodeError)):
        # DecodeError: an event the decoder cannot read (its text names the event)
        return Verdict(False, False, redact(str(e)))
    if isinstance(e, psycopg.Error):
        return Verdict(True, False, redact(first_line(e)))
    if isinstance(e, LondisteError):
        return Verdict(True, False, redact(str(e)))
    return Verdict(True, False, redact(f"{type(e).__name__}: {first_line(e)}"))


class Backoff:
    """Exponential backoff: `first`, doubling per failure, at most `cap` seconds."""

    def __init__(self, cap: float, first: float = 0.5):
        self.cap, self.first = cap, first
        self.failures = 0

    def failed(self, verdict: Verdict | None = None) -> float:
        """Counts a failure; returns how long to wait before the next attempt."""
        self.failures += 1
        if verdict is not None and not verdict.transient:
            return max(self.cap, PERMANENT_POLL)
        return float(min(self.cap, self.first * 2 ** min(self.failures - 1, 16)))

    def reset(self) -> None:
        self.failures = 0
