"""`status --watch [SECONDS]`: the cascade redrawn in place on a terminal (plain, one view
after the other, when stdout is a pipe or a file) until Ctrl-C, which exits 0."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime

import psycopg

from londiste_rs.cascade.status import NodeStatus, cascade_status
from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError
from londiste_rs.pg.db import first_line, redact

# The cursor home, then each line cleared to its end, then the rest of the screen cleared:
# the view is redrawn without the flicker of clearing the whole screen first.
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"

Render = Callable[[list[tuple[int, NodeStatus]]], list[str]]


def view(cfg: JobConfig, seconds: float, render: Render) -> list[str]:
    """One view: a header line, then the cascade (or why it cannot be read this time)."""
    header = f"{datetime.now():%Y-%m-%d %H:%M:%S}  status of {cfg.queue_name} every {seconds:g}s"
    try:
        return [header, *render(cascade_status(cfg))]
    except (LondisteError, psycopg.Error) as e:  # a root restarting: keep watching
        return [header, f"ERROR: {redact(first_line(e))}"]


def watch_status(cfg: JobConfig, seconds: float, render: Render) -> None:
    tty = sys.stdout.isatty()
    try:
        while True:
            lines = view(cfg, seconds, render)
            if tty:
                sys.stdout.write(HOME + "".join(f"{ln}{CLEAR_LINE}\n" for ln in lines))
                sys.stdout.write(CLEAR_BELOW)
            else:
                sys.stdout.write("\n".join(lines) + "\n\n")
            sys.stdout.flush()
            time.sleep(seconds)
    except KeyboardInterrupt:
        if tty:
            sys.stdout.write("\n")
