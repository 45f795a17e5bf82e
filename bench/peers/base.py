"""What every tool under test offers the scenarios."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from support.env import Db


class Link:
    """One provider database replicated into one subscriber database.

    Scenario order: capture() on the provider, prepare() the subscriber, wait_ready(),
    subscribe() (the timed start of the initial copy), wait_synced(); then pause()/resume()
    the apply side, settle() to make everything written so far consumable, close() at the
    end. `jobs`: how many tables the initial copy may copy at once."""

    def __init__(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1):
        self.src, self.dst, self.tables, self.logdir = src, dst, list(tables), logdir
        self.jobs = jobs

    def capture(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        raise NotImplementedError

    def subscribe(self, expect_sync: bool = False, create: bool = False) -> None:
        """Starts replicating the tables; with expect_sync the subscriber already holds the
        provider's rows (no initial copy); with create it has no tables yet, and the tool
        creates them with their keys, indexes and constraints from the provider's."""
        raise NotImplementedError

    def synced(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        """Waits until the apply side is up and idle (a daemon started by prepare() has done
        a round), so a timed start measures the tool's work, not its process start-up."""

    def pause(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        """Makes every committed change consumable (e.g. ticks a queue); default nothing."""

    def worker_pids(self) -> list[int]:
        """The processes doing the apply, for memory sampling."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Tool:
    key = ""  # short name used in results
    name = ""  # shown in tables
    # True when capture happens as the changes are decoded on the source (logical decoding), so
    # the consumer must be running to measure it; queue tools capture in their trigger.
    decodes_on_source = False

    def unavailable(self, scenario: str) -> str | None:
        """Why this tool cannot run `scenario` here, or None when it can."""
        return None

    def link(self, src: Db, dst: Db, tables: Sequence[str], logdir: Path, jobs: int = 1) -> Link:
        raise NotImplementedError
