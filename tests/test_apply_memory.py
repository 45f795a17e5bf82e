"""The worker's memory while it applies a backlog many times larger than `apply_chunk_bytes`
stays within a bound proportional to `apply_chunk_bytes` (README, Performance), whatever the
batch: measured on a real worker process (its private resident memory, RssAnon), with every row
applied. And what keeps the coalescing good in that memory (early inserts of new keys) is
used only where it cannot make a batch fail."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from londiste_rs.config import load_job_config
from londiste_rs.devtools.processes import spawn_cli as spawn
from londiste_rs.devtools.processes import stop_gracefully
from londiste_rs.replication.worker import Worker
from londiste_rs.waiting import wait_for
from tests.fix_cli import ok
from tests.fix_nodes import drain, nodes, tick

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


def test_new_keys_go_in_early_only_where_the_key_is_the_only_unique_index(
    tmp_path: Path, provider_db: Any, subscriber_db: Any, caplog: Any
) -> None:
    """With a small apply_chunk_bytes the decoder inserts new keys early (before the other
    pending changes) into `hist`, whose key is its only unique index, but not into `person`:
    there a new row takes the email of a row deleted just before, which an early insert would
    find still there (and the batch would fall back to exact order)."""
    schema = """
        create table hist (id int primary key, body text not null);
        create table person (id int primary key, email text not null unique, n int);
    """
    rows = "insert into person select i, 'e' || i, 0 from generate_series(1, 300) i"
    for db in (provider_db, subscriber_db):
        db.sql(schema)
        db.sql(rows)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db, apply_chunk_bytes="64kB")
    ok(root, "add-table", "hist", "person")
    ok(leaf, "add-table", "hist", "person", "--expect-sync")
    worker = Worker(load_job_config(leaf))
    try:
        drain(worker)
        provider_db.sql(
            """
            do $$ begin
            for i in 1..300 loop
                update person set n = n + 1 where id between 1 and 300 and id % 7 = i % 7;
                delete from person where id = i;
                insert into person values (1000 + i, 'e' || i, i);
                insert into hist values (i, repeat(md5(i::text), 20));
            end loop; end $$
            """
        )
        tick(provider_db)
        with caplog.at_level(logging.WARNING, logger="londiste_rs.replication.apply"):
            drain(worker)
    finally:
        worker.close()
    for table in ("hist", "person"):
        query = f"select * from {table} order by id"
        assert subscriber_db.sql(query) == provider_db.sql(query), table
    assert "exact event order" not in caplog.text
