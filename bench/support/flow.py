"""The steps scenarios share: a replicated pair set up and torn down, catching up, verifying."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

from londiste_rs.waiting import wait_for
from peers.base import Link, Tool
from support import verify, workload
from support.env import BenchEnv, Db

QUALIFIED = [f"public.{t}" for t in workload.TABLES]


def pair(
    env: BenchEnv, scale: int, tag: str, presynced: bool
) -> contextlib.AbstractContextManager[tuple[Db, Db]]:
    """A fresh provider database at `scale` and a fresh subscriber database (holding the same
    rows when `presynced`), both dropped afterwards."""
    src = env.provider_db(scale, tag)
    return dropping(env, src, env.subscriber_db(tag, scale if presynced else None))


@contextlib.contextmanager
def dropping(env: BenchEnv, src: Db, dst: Db) -> Iterator[tuple[Db, Db]]:
    """(src, dst), both dropped afterwards."""
    try:
        yield src, dst
    finally:
        env.drop(dst, src)


@contextlib.contextmanager
def replicating(env: BenchEnv, tool: Tool, scale: int, tag: str, timeout: float,
                tables: Sequence[str] = tuple(QUALIFIED)) -> Iterator[Link]:  # fmt: skip
    """`tool` replicating `tables` of a fresh provider database into a subscriber that already
    holds the same rows (no initial copy), in sync and applying."""
    with pair(env, scale, tag, presynced=True) as (src, dst):
        link = tool.link(src, dst, tables, env.logdir(f"{tag}-{src.name}"))
        try:
            link.capture()
            link.prepare()
            link.subscribe(expect_sync=True)
            wait_for(f"{tool.name} to be in sync", link.synced, timeout=timeout)
            yield link
        finally:
            link.close()


def timed_copy(link: Link, timeout: float, create: bool = False) -> float:
    """Sets `link` up with its apply side up and idle, then times the initial copy: seconds
    from subscribe() (with `create`: the tool also creates the tables) until every table is
    in sync."""
    link.capture()
    link.prepare()
    link.wait_ready(timeout)
    started = time.monotonic()
    link.subscribe(create=create)
    # A fixed 20 ms poll: wait_for's growing interval (up to 0.5 s) would round copy times of
    # a second or two up by as much as a third.
    deadline = started + timeout
    while not link.synced():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for the initial copy")
        time.sleep(0.02)
    return time.monotonic() - started


def caught_up(link: Link, timeout: float) -> None:
    """Waits until the subscriber has the provider's newest history row (one writer, so that
    row was committed last and every tool applies in commit order)."""
    with link.src.connect() as conn:
        target = workload.last_hid(conn)
    link.settle()
    # A fixed 10 ms poll: wait_for's growing interval (up to 0.5 s) would round drain times of
    # a second or two up by as much as a third.
    deadline = time.monotonic() + timeout
    with link.dst.connect() as conn:
        while not (_alive(link) and workload.last_hid(conn) >= target):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for the subscriber "
                                   f"to reach history row {target}")  # fmt: skip
            time.sleep(0.01)


def _alive(link: Link) -> bool:
    link.worker_pids()  # raises when a tool's daemon died
    return True


def same(link: Link) -> tuple[bool, str]:
    """Whether the subscriber's replicated tables equal the provider's."""
    return verify.same(link.src.dsn, link.dst.dsn, link.tables)
