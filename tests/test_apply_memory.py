"""The worker's memory while it applies a backlog many times larger than `apply_chunk_bytes`
stays within a bound proportional to `apply_chunk_bytes` (README, Performance), whatever the
batch: measured on a real worker process (its private resident memory, RssAnon), with every row
applied."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from londiste_rs.devtools.processes import spawn_cli as spawn
from londiste_rs.devtools.processes import stop_gracefully
from londiste_rs.waiting import wait_for
from tests.fix_cli import ok
from tests.fix_nodes import nodes, tick

CHUNK = 2 << 20
# What the apply may add to the idle worker's memory, `apply_chunk_bytes` being CHUNK (the
# README's bound): the decoder's coalesced rows (CHUNK), the step being written (CHUNK / 8, in
# Rust, then in Python), the read-ahead's blocks, the allocator's slack. (Before the steps were
# made one at a time, it grew by about 3 × CHUNK + 8 MiB.)
BOUND = 2 * CHUNK + (8 << 20)
ROW_BYTES = 2000

SCHEMA = "create table big (id int primary key, n int not null, body text not null);"

# Rows whose text does not compress (md5s), so the events are as big on the wire as here.
FILL = """
insert into big
select i, 0, (select string_agg(md5((i * 100 + j)::text), '') from generate_series(1, %s::int) j)
  from generate_series(%s::int, %s::int) i
"""


def rss_anon(pid: int) -> int:
    """The process's private resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no RssAnon for process {pid}")


class Peak(threading.Thread):
    """Samples a process's RssAnon every 5 ms until stopped; `peak` is the largest seen."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            try:
                self.peak = max(self.peak, rss_anon(self.pid))
            except (OSError, AssertionError):
                return

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def test_memory_is_bounded_by_apply_chunk_bytes_not_by_the_batch(
    tmp_path: Path, provider_db: Any, subscriber_db: Any
) -> None:
    provider_db.sql(SCHEMA)
    subscriber_db.sql(SCHEMA)
    provider_db.sql(FILL, [ROW_BYTES // 32, 1, 4000])  # existing rows, updated below
    subscriber_db.sql(FILL, [ROW_BYTES // 32, 1, 4000])
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, apply_chunk_bytes=str(CHUNK))
    ok(root, "add-table", "big")
    ok(leaf, "add-table", "big", "--expect-sync")
    worker = spawn(leaf, "worker")
    try:
        # idle once it has applied the first tick: its memory before the backlog
        applied = tick(provider_db)
        wait_for("the first tick", lambda: _position(subscriber_db) >= applied, timeout=60)
        time.sleep(0.5)
        idle = rss_anon(worker.pid)
        # one batch of ~60 MB of row events: 16k new keys, every old key updated twice
        provider_db.sql(FILL, [ROW_BYTES // 32, 4001, 20000])
        provider_db.sql("update big set n = n + 1 where id <= 4000")
        provider_db.sql("update big set n = n + 1, body = upper(body) where id <= 4000")
        events = "select sum(octet_length(ev_data)) from londiste_rs.event_1"
        backlog = provider_db.sql(events)[0][0]
        assert backlog > 3 * BOUND, backlog
        peak = Peak(worker.pid)
        peak.start()
        last = tick(provider_db)
        wait_for("the backlog applied", lambda: _position(subscriber_db) >= last, timeout=300)
        grew = peak.stop() - idle
        assert worker.poll() is None, "the worker exited"
    finally:
        stop_gracefully(worker)
    query = "select id, n, md5(body) from big order by id"
    assert subscriber_db.sql(query) == provider_db.sql(query)
    assert grew < BOUND, f"the worker grew by {grew >> 20} MiB applying {backlog >> 20} MB"


def _position(db: Any) -> int:
    rows = db.sql("select last_tick_id from londiste_rs.local_state where queue_name = 'q1'")
    return int(rows[0][0] or 0) if rows else 0
