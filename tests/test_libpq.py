"""`libpq.copy_between` and `read_copy`: rows moved by the Rust loops between real servers,
both connections usable again after either side fails, and the bridge taking only open,
locked psycopg connections."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import pq

from londiste_rs import _native
from londiste_rs.errors import CopySourceFailed
from londiste_rs.pg import libpq
from londiste_rs.waiting import wait_for

TABLE = "create table t (id int primary key, body text)"
OUT = b"copy t to stdout (format binary)"
IN = b"copy t from stdin (format binary)"


@contextlib.contextmanager
def _pair(provider_db, subscriber_db) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    src = provider_db.connect(autocommit=False)
    dst = subscriber_db.connect(autocommit=False)
    with src, dst:
        yield src, dst


def _rows(db) -> list[tuple[int, int, str]]:
    return db.sql("select id, length(body), md5(body) from t order by id")


def test_rows_arrive_whole_including_rows_larger_than_a_block(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        db.sql(TABLE)
    provider_db.sql("insert into t select g, md5(g::text) from generate_series(1, 30000) g")
    # rows of 1 MB and 3 MB: larger than the relay's 256 KiB block
    provider_db.sql("insert into t values (-1, repeat('x', 1 << 20)), (-2, repeat('y', 3 << 20))")
    with _pair(provider_db, subscriber_db) as (src, dst):
        rows, moved = libpq.copy_between(src, OUT, dst, IN)
        dst.commit()
    assert rows == 30002
    assert moved > (4 << 20)
    assert _rows(subscriber_db) == _rows(provider_db)


def test_target_error_is_raised_and_both_connections_recover(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        db.sql(TABLE)
    # the target fails on the first row, while most of the stream is still to come
    provider_db.sql("insert into t select g, md5(g::text) from generate_series(1, 100000) g")
    subscriber_db.sql("insert into t values (1, 'already here')")
    with _pair(provider_db, subscriber_db) as (src, dst):
        with pytest.raises(psycopg.errors.UniqueViolation, match="t_pkey"):
            libpq.copy_between(src, OUT, dst, IN)
        src.rollback()
        dst.rollback()
        assert src.execute("select count(*) from t").fetchone() == (100000,)
        assert dst.execute("select count(*) from t").fetchone() == (1,)


def test_source_error_is_raised_and_nothing_is_written(provider_db, subscriber_db):
    subscriber_db.sql(TABLE)
    with _pair(provider_db, subscriber_db) as (src, dst):
        with pytest.raises(psycopg.errors.UndefinedTable, match='"t" does not exist'):
            libpq.copy_between(src, OUT, dst, IN)
        src.rollback()
        dst.rollback()
        assert dst.execute("select count(*) from t").fetchone() == (0,)
        assert src.execute("select 1").fetchone() == (1,)


def test_target_error_wins_over_the_cancel_it_caused(provider_db, subscriber_db):
    """The target fails on its first row while the source still streams; cancelling the
    source (as the copy's monitor does on seeing the target fail) ends the relay at once, and
    the error raised is the target's, not the cancel."""
    subscriber_db.sql(TABLE)
    subscriber_db.sql("insert into t values (1, 'already here')")
    # a select-list SRF streams (in FROM it would be materialized first)
    endless = b"copy (select generate_series(1, 200000000), 'p') to stdout (format binary)"
    with _pair(provider_db, subscriber_db) as (src, dst):
        pid = dst.info.backend_pid

        def cancel_once_the_target_failed() -> None:
            aborted = "select state = 'idle in transaction (aborted)' from pg_stat_activity"
            wait_for("the target to fail",
                     lambda: subscriber_db.sql(f"{aborted} where pid = {pid}") == [(True,)],
                     timeout=60)  # fmt: skip
            src.cancel_safe()

        watcher = threading.Thread(target=cancel_once_the_target_failed)
        watcher.start()
        # in an explicit transaction, as initial_copy's writers: a failed COPY leaves it aborted
        with pytest.raises(psycopg.errors.UniqueViolation, match="t_pkey"), dst.transaction():
            libpq.copy_between(src, endless, dst, IN)
        watcher.join()
        src.rollback()
        dst.rollback()
        assert src.execute("select 1").fetchone() == (1,)
        assert dst.execute("select count(*) from t").fetchone() == (1,)


def test_the_libpq_found_is_psycopgs_and_mapped_here():
    path = _native.libpq_path()
    assert Path(path).name.startswith("libpq")
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if line.count(" ") >= 5}
    assert os.path.realpath(path) in {os.path.realpath(p) for p in mapped if p.startswith("/")}


def test_rust_takes_only_locked_open_psycopg_connections(provider_db, subscriber_db):
    with _pair(provider_db, subscriber_db) as (src, dst):
        with pytest.raises(TypeError, match=r"expected a psycopg\.Connection, not int"):
            _native.relay(src.pgconn.pgconn_ptr, dst)
        with pytest.raises(RuntimeError, match="lock"):
            _native.relay(src, dst)
        with pytest.raises(RuntimeError, match="lock"):
            _native.ReadAhead(src, 1 << 20)
        with src.lock, pytest.raises(ValueError, match="two connections"):
            _native.relay(src, src)
        # both still usable: nothing was started on them
        assert src.execute("select 1").fetchone() == (1,)
        dst.close()
        with src.lock, dst.lock, pytest.raises(psycopg.OperationalError, match="closed"):
            _native.relay(src, dst)


def test_read_copy_holds_the_lock_and_raises_the_source_error(provider_db):
    provider_db.sql(TABLE)
    provider_db.sql("insert into t select g, 'x' from generate_series(1, 1000) g")
    with provider_db.connect(autocommit=False) as conn:
        chunks = libpq.read_copy(conn, OUT, 1 << 10)
        first = next(chunks)
        assert first.startswith(b"PGCOPY\n\xff\r\n\0")
        assert conn.lock.locked()  # no other thread can query meanwhile
        rest = b"".join(chunks)
        assert not conn.lock.locked()
        assert len(first) + len(rest) > 1000 * 10
        conn.rollback()
        failing = b"copy (select 1 / (g - 500) from generate_series(1, 1000) g) to stdout"
        with pytest.raises(psycopg.errors.DivisionByZero):
            b"".join(libpq.read_copy(conn, failing, 1 << 10))
        assert not conn.lock.locked()
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)


def test_read_copy_of_a_killed_source_raises_and_lets_go(provider_db):
    endless = b"copy (select generate_series(1, 200000000), 'p') to stdout (format binary)"
    with provider_db.connect(autocommit=False) as conn:
        chunks = libpq.read_copy(conn, endless, 1 << 16)
        next(chunks)
        pid = conn.info.backend_pid
        assert provider_db.sql(f"select pg_terminate_backend({pid})") == [(True,)]
        # libpq reports the server's FATAL message (or, failing that, the lost connection)
        with pytest.raises((psycopg.OperationalError, CopySourceFailed)):
            for _ in chunks:
                pass
        assert not conn.lock.locked()
        assert conn.pgconn.status == pq.ConnStatus.BAD
