"""The apply's writes to the subscriber, run on a thread of their own while the worker decodes.

Without it the subscriber waits while the worker decodes the next part of the stream (a
third of the apply's time in a drain of rows that do not coalesce), and the worker waits
while the subscriber runs a merge statement (up to hundreds of milliseconds). `StepWriter`
runs the writes (a step's COPY and merge statement, a TRUNCATE) one after the other, in the
order submitted, on the apply's connection, while the caller makes the next steps from the
decoder or decodes the next input.

At most `DEPTH` writes are submitted and not finished (`submit` waits for room), so a flush's
last steps are written while the decoder already takes the next input: memory holds at most
DEPTH steps besides the one the caller is making. The first failure stops the writes: later
ones are dropped, and `submit` or `wait` raise it in the caller's thread as the failed
statement itself would have (a unique violation still sends the batch to the exact-order
fallback). `close` waits for a running write to end, so the caller never rolls back under a
statement still running.

Exact-order steps may each hold a whole chunk (not an eighth of it): their apply (the slow
fallback) writes inline, `StepWriter(threaded=False)`, so memory holds one step as before.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

Write = Callable[[], None]

# Writes submitted and not finished: the one running (the next step is made, or the next
# input decoded, meanwhile). One more waiting held another step's rows: with 2, the worker's
# peak sat at tests/test_apply_memory.py's bound (2 x apply_chunk_bytes + 8 MiB), over it
# once in three runs.
DEPTH = 1


class StepWriter:
    def __init__(self, threaded: bool = True, depth: int = DEPTH) -> None:
        self._threaded = threaded
        self._depth = depth
        self._cond = threading.Condition()
        self._queue: deque[Write] = deque()  # submitted, not started
        self._running = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def _unfinished(self) -> int:
        return len(self._queue) + self._running

    def submit(self, write: Write) -> None:
        """Runs `write` after the writes submitted before; waits while DEPTH are unfinished.
        Raises the failure of an earlier write."""
        if not self._threaded:
            write()
            return
        with self._cond:
            while self._unfinished() >= self._depth and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="apply-writer", daemon=True)
                self._thread.start()
            self._queue.append(write)
            self._cond.notify_all()

    def wait(self) -> None:
        """Waits until every write submitted is done; raises the first failure."""
        with self._cond:
            while self._unfinished() and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        """Ends the thread once a running write is done; writes not started are dropped."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                write = self._queue.popleft()
                self._running = True
            try:
                write()
            except BaseException as e:  # raised again in the caller's thread
                with self._cond:
                    self._error = e
                    self._queue.clear()  # (their steps' payloads)
            finally:
                del write  # (its step's payload)
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
