"""The one poll helper: every wait for a state another process or server reaches (a worker's
tick, a copy, a daemon's exit) goes through `wait_for`."""

from __future__ import annotations

import time
from typing import Any


def wait_for(what: str, check: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Polls `check()` until it returns something truthy, and returns that; raises
    TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
