"""`status --watch [SECONDS]` (issue 15): plain views one after the other when stdout is not a
terminal, with each node's copy progress and ETA; Ctrl-C (SIGINT) exits 0. Redrawn in place
with ANSI on a terminal (a pseudo-terminal here)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

from londiste_rs.store import tables as store_tables
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok, one_line_error, run_cli
from tests.fix_nodes import nodes


def _copy_in_progress(tmp_path: Path, provider_db, subscriber_db) -> str:
    """A leaf whose copy of t has 400 of ~1000 rows, as a worker's copy round records them."""
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    for db in (provider_db, subscriber_db):
        db.sql("create table t (id int primary key)")
    ok(root, "add-table", "t")
    ok(leaf, "add-table", "t")
    with subscriber_db.connect() as conn:
        store_tables.record_progress(conn, "q1", "public.t", 400, 8192, 1000, 4.0)
    return leaf


def test_watch_in_a_pipe_prints_views_until_ctrl_c(tmp_path, provider_db, subscriber_db):
    leaf = _copy_in_progress(tmp_path, provider_db, subscriber_db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", leaf, "status", "--watch", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        while sum("status of q1 every 0.2s" in ln for ln in seen) < 2:
            line = proc.stdout.readline()
            assert line, "status --watch ended early"
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    text = "".join(seen) + rest
    assert "\x1b[" not in text  # no ANSI when not a terminal
    assert "slave (leaf)" in text and "master (root)" in text
    # 400 rows in 4 s: 100 rows/s, 600 left: ETA 6 s
    assert "Copy public.t: 400/~1,000 rows, 8.0 kB, 100 rows/s, ETA 0:06" in text


def test_watch_on_a_terminal_redraws_in_place(tmp_path, provider_db, subscriber_db):
    leaf = _copy_in_progress(tmp_path, provider_db, subscriber_db)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", leaf, "status", "--watch"],
        stdin=subprocess.DEVNULL, stdout=child, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(child)
    out = b""
    try:

        def drawn() -> bool:
            nonlocal out
            if select.select([main], [], [], 0.1)[0]:
                out += os.read(main, 65536)
            return b"every 2s" in out and b"ETA 0:06" in out

        wait_for("the first view", drawn, timeout=60)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        os.close(main)
    assert proc.returncode == 0, err
    assert out.startswith(b"\x1b[H")  # the cursor home: each view overwrites the last
    assert b"\x1b[K" in out


def test_watch_with_json_is_one_line(tmp_path):
    ini = job_ini(tmp_path, "slave", "host=127.0.0.1 port=1 dbname=none")
    err = one_line_error(run_cli(str(ini), "status", "--watch", "--json"))
    assert err == "ERROR: status: --watch redraws text; leave out --json (or --watch)"
