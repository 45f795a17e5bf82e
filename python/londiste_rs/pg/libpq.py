"""COPY data moved by libpq in Rust on psycopg's connections (`_native.relay`,
`_native.ReadAhead`, rust/src/pq.rs).

A server sends a COPY's data one message per row; taking them one Python call each costs more
CPU than the servers spend on them. Python starts each COPY and reads its result; Rust runs
only the data loop, with the functions of the very libpq psycopg runs on (found by Rust among
the loaded libraries, checked against psycopg's version). Rust takes psycopg `Connection`
objects, never addresses, and only while their `lock` is held here: the lock psycopg's own
`Cursor.execute` takes, so no other thread runs a query on a connection Rust is using. Do not
`close()` a connection while a copy runs on it (psycopg's close takes no lock).
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq

from londiste_rs._native import ReadAhead, relay
from londiste_rs.errors import CopySourceFailed, CopyTargetFailed


def copy_between(src: psycopg.Connection[Any], copy_out: bytes,
                 dst: psycopg.Connection[Any], copy_in: bytes) -> tuple[int, int]:  # fmt: skip
    """Runs `copy_out` (COPY ... TO STDOUT) on `src` and `copy_in` (COPY ... FROM STDIN) on
    `dst` and moves the data between them in Rust, without the GIL. Returns (rows written,
    bytes moved). A failure on either side raises the server's error and leaves neither COPY
    running (a transaction they were in has failed, for the caller to roll back)."""
    with src.lock, dst.lock:
        _start(dst, copy_in, pq.ExecStatus.COPY_IN)
        try:
            _start(src, copy_out, pq.ExecStatus.COPY_OUT)
        except BaseException:
            _abort_copy_in(dst)
            raise
        source_failed: CopySourceFailed | None = None
        try:
            moved = relay(src, dst)
        except CopyTargetFailed as e:
            _stop_copy_out(src)
            _results(dst)  # raises the target's error
            raise psycopg.OperationalError(_text(dst, dst.pgconn.error_message)) from e
        except CopySourceFailed as e:
            source_failed = e
        try:
            _results(src)  # raises the source's error, if it failed
            if source_failed is not None:  # failed without an error: keep nothing
                raise source_failed
        except psycopg.errors.QueryCanceled as e:
            # cancelled because the target failed first (the copy's monitor does that): the
            # target's error is the one to report
            _abort_copy_in(dst, e)
            raise
        except BaseException:
            _abort_copy_in(dst)
            raise
        res = _end_copy_in(dst, None)
        return int(res.command_tuples or 0), moved


def read_copy(conn: psycopg.Connection[Any], copy_out: bytes, chunk: int) -> Iterator[bytes]:
    """The data of `copy_out` (COPY ... TO STDOUT) in chunks of at least `chunk` bytes (the
    last one smaller), read ahead in Rust by a thread of its own while the caller works on
    the previous chunks. `conn`'s lock is held until the iterator ends, so the caller must
    not use `conn` meanwhile. Closing the iterator early cancels the COPY. The source's error
    is raised after its last chunk."""
    with conn.lock:
        _start(conn, copy_out, pq.ExecStatus.COPY_OUT)
        reader = ReadAhead(conn, chunk)
        try:
            yield from reader
        except BaseException:  # also GeneratorExit: the consumer stopped early
            _stop_copy_out(conn, reader)
            raise
        try:
            reader.close()
        except CopySourceFailed:
            _results(conn)  # raises the source's error
            raise  # failed without an error
        res = _results(conn)
        if res is None or res.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.OperationalError(f"the COPY ended without its result: "
                                           f"{_text(conn, conn.pgconn.error_message)}")  # fmt: skip


def _text(conn: psycopg.Connection[Any], message: bytes) -> str:
    return message.decode(conn.info.encoding, "replace").strip() or "connection failed"


def _wait(pg: pq.abc.PGconn, write: bool = False) -> None:
    """Waits, without the GIL, until the connection's socket can be read (or written)."""
    poller = select.poll()
    poller.register(pg.socket, select.POLLOUT if write else select.POLLIN)
    poller.poll()


def _next_result(pg: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pg.is_busy():  # get_result() would block holding the GIL
        _wait(pg)
        pg.consume_input()
    return pg.get_result()


def _results(conn: psycopg.Connection[Any]) -> pq.abc.PGresult | None:
    """All the remaining results of the running query: the first one, or the server's error
    raised once the connection is ready for the next query."""
    first = error = None
    while (res := _next_result(conn.pgconn)) is not None:
        if res.status == pq.ExecStatus.FATAL_ERROR:
            error = error or res
        first = first or res
    if error is not None:
        raise psycopg.errors.error_from_result(error, encoding=conn.info.encoding)
    return first


def _start(conn: psycopg.Connection[Any], query: bytes, status: pq.ExecStatus) -> None:
    pg = conn.pgconn
    pg.send_query(query)
    while pg.flush() == 1:  # the connection is non-blocking: send all of the query
        _wait(pg, write=True)
    res = _next_result(pg)
    if res is not None and res.status == status:
        return
    if res is not None and res.status == pq.ExecStatus.FATAL_ERROR:
        _results(conn)  # the rest of the query's results
        raise psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    raise psycopg.ProgrammingError(f"{query[:60]!r} did not start a COPY")


def _end_copy_in(conn: psycopg.Connection[Any], error: bytes | None) -> pq.abc.PGresult:
    """Ends the COPY FROM STDIN on `conn` and returns its result; with `error`, aborts it
    (the server then fails it with that message)."""
    pg = conn.pgconn
    while (r := pg.put_copy_end(error)) == 0:  # non-blocking: wait for room to send
        _wait(pg, write=True)
    if r < 0:
        raise psycopg.OperationalError(_text(conn, pg.error_message))
    while pg.flush() == 1:
        _wait(pg, write=True)
    res = _results(conn)
    if res is None or res.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.InternalError("a COPY FROM STDIN ended without its result")
    return res


_ABORTED = b"the copy's source failed"


def _abort_copy_in(conn: psycopg.Connection[Any], cause: BaseException | None = None) -> None:
    """Ends the COPY FROM STDIN on `conn` as failed, while the caller raises the source's
    error; with `cause`, the target's own earlier error (if it had one) is raised instead,
    from `cause`."""
    try:
        _end_copy_in(conn, _ABORTED)
    except psycopg.Error as e:
        if cause is not None and _ABORTED.decode() not in str(e):
            raise e from cause
    except OSError:
        pass


def _stop_copy_out(conn: psycopg.Connection[Any], reader: ReadAhead | None = None) -> None:
    """Cancels the COPY TO STDOUT on `conn` and drops what it still sends (after `reader`,
    reading it, has stopped)."""
    with contextlib.suppress(psycopg.Error, OSError):
        conn.cancel_safe(timeout=5)
        if reader is not None:
            with contextlib.suppress(CopySourceFailed):  # the cancel fails the COPY
                reader.close()
        pg = conn.pgconn
        # (raises "no COPY in progress" when the reader had read the COPY to its end)
        with contextlib.suppress(psycopg.Error):
            while (n := pg.get_copy_data(0)[0]) >= 0:
                if n == 0:
                    _wait(pg)
                    pg.consume_input()
        _results(conn)  # the COPY's own result: left unread, the next query would fail
