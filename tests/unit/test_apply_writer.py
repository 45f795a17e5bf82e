"""The apply's writer thread (replication/writer.py): writes in order, at most DEPTH
unfinished, the first failure raised in the caller's thread, nothing run after close."""

from __future__ import annotations

import threading

import pytest

from londiste_rs.replication.writer import StepWriter, Write

DEPTH = 2  # a write waiting behind the running one, so dropping and ordering show


def holding(started: threading.Event, release: threading.Event, done: list[str]) -> Write:
    """A write that says it started, then holds the writer until `release` (10 s at most),
    then notes itself in `done`."""

    def write() -> None:
        started.set()
        release.wait(10)
        done.append("running")

    return write


def test_writes_run_in_order_on_another_thread():
    done: list[tuple[int, str]] = []
    writer = StepWriter(depth=DEPTH)
    try:
        for i in range(20):
            writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
        writer.wait()
    finally:
        writer.close()
    assert [i for i, _ in done] == list(range(20))
    assert {name for _, name in done} == {"apply-writer"}


def test_submit_waits_while_depth_writes_are_unfinished():
    release = threading.Event()
    started = threading.Event()
    writer = StepWriter(depth=DEPTH)

    try:
        writer.submit(holding(started, release, []))
        started.wait(10)
        for _ in range(DEPTH - 1):
            writer.submit(lambda: None)  # room: returns at once
        late = threading.Thread(target=writer.submit, args=(lambda: None,))
        late.start()
        late.join(0.2)
        assert late.is_alive()  # the write beyond DEPTH waits for room
        release.set()
        late.join(10)
        assert not late.is_alive()
        writer.wait()
    finally:
        release.set()
        writer.close()


def test_the_first_failure_is_raised_and_later_writes_are_dropped():
    done: list[int] = []
    gate = threading.Event()
    writer = StepWriter(depth=DEPTH)

    def fail() -> None:
        gate.wait(10)
        raise KeyError("first")

    try:
        writer.submit(fail)
        writer.submit(lambda: done.append(1))  # queued behind the failure: never runs
        gate.set()
        with pytest.raises(KeyError, match="first"):
            writer.wait()
        with pytest.raises(KeyError, match="first"):
            writer.submit(lambda: done.append(2))
    finally:
        writer.close()
    assert done == []


def test_close_waits_for_the_running_write_and_drops_the_rest():
    done: list[str] = []
    release = threading.Event()
    started = threading.Event()
    writer = StepWriter(depth=DEPTH)
    writer.submit(holding(started, release, done))
    started.wait(10)
    writer.submit(lambda: done.append("queued"))
    threading.Timer(0.1, release.set).start()
    writer.close()
    assert done == ["running"]


def test_unthreaded_writes_run_at_once_in_the_callers_thread():
    done: list[str] = []
    writer = StepWriter(threaded=False)
    writer.submit(lambda: done.append(threading.current_thread().name))
    assert done == [threading.current_thread().name]

    def fail() -> None:
        raise KeyError("inline")

    with pytest.raises(KeyError, match="inline"):
        writer.submit(fail)
    writer.wait()
    writer.close()
