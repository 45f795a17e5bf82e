"""The steps scenarios share: a replicated pair set up and torn down, catching up, verifying."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from londiste_rs.pgcluster import wait_for
from peers.base import Link, Tool
from support import verify, workload
from support.env import BenchEnv, Db

QUALIFIED = [f"public.{t}" for t in workload.TABLES]


@contextlib.contextmanager
def pair(env: BenchEnv, scale: int, tag: str, presynced: bool) -> Iterator[tuple[Db, Db]]:
    """A fresh provider database at `scale` and a fresh subscriber database (holding the same
    rows when `presynced`), both dropped afterwards."""
    src = env.provider_db(scale, tag)
    dst = env.subscriber_db(tag, scale if presynced else None)
    try:
        yield src, dst
    finally:
        env.drop(dst, src)


@contextlib.contextmanager
def replicating(env: BenchEnv, tool: Tool, scale: int, tag: str,
                timeout: float) -> Iterator[Link]:  # fmt: skip
    """`tool` replicating a fresh provider database into a subscriber that already holds the
    same rows (no initial copy), in sync and applying."""
    with pair(env, scale, tag, presynced=True) as (src, dst):
        link = tool.link(src, dst, QUALIFIED, env.logdir(f"{tag}-{src.name}"))
        try:
            link.capture()
            link.prepare()
            link.subscribe(expect_sync=True)
            wait_for(f"{tool.name} to be in sync", link.synced, timeout=timeout)
            yield link
        finally:
            link.close()


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
