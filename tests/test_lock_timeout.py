"""Operations that lock application tables are bounded by the ini's lock_timeout (security
review finding 8): an open writer transaction against add-table, remove-table and drop-node
on the root. The application's other writers must never wait behind londiste-rs for much
longer than lock_timeout, tables already done keep no lock while the next one waits, and a
table that stays locked ends the verb with one line naming it and who holds it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

LOCK_TIMEOUT = 0.5
# What a writer may wait behind a londiste-rs lock request: lock_timeout plus scheduling
# slack on a loaded two-core machine. (Without the bound it waits until the long writer ends.)
MAX_WRITER_WAIT = LOCK_TIMEOUT + 1.5
GIVE_UP = 60.0


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "londiste_rs", *args]


def ok(*args: str) -> str:
    out = subprocess.run(cli(*args), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def job_ini(tmp_path: Path, name: str, dsn: str, **extra: Any) -> Path:
    path = tmp_path / f"{name}.ini"
    lines = ["[londiste3]", f"db = {dsn}", "queue_name = q1", "loop_delay = 0.1"]
    lines += [f"logfile = {tmp_path}/log/{name}.log", f"pidfile = {tmp_path}/pid/{name}.pid"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_beside(args: list[str], work: dict[str, str], dsn: str) -> tuple[str, dict[str, float]]:
    """Runs the CLI while another application session keeps running the statements of
    `work` (name -> SQL, {i} is a fresh number), each timed. Returns the CLI's stderr (it
    must fail: a long writer holds a table) and each statement's longest wait."""
    proc = subprocess.Popen(cli(*args), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    longest = dict.fromkeys(work, 0.0)
    started = time.monotonic()
    i = 1000
    with psycopg.connect(dsn, autocommit=True) as app:
        while proc.poll() is None:
            if time.monotonic() - started > GIVE_UP:
                proc.kill()
                raise AssertionError(f"{args} still waiting after {GIVE_UP}s: unbounded")
            for name, statement in work.items():
                i += 1
                t0 = time.monotonic()
                app.execute(statement.format(i=i).encode())
                longest[name] = max(longest[name], time.monotonic() - t0)
            time.sleep(0.02)
    _, err = proc.communicate()
    assert proc.returncode != 0, err
    assert "Traceback" not in err
    return err, longest


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def captured(db: Any, table: str) -> bool:
    rows = db.sql(
        "select count(*) from pg_trigger where tgrelid = %s::regclass"
        " and tgname like '\\_londiste\\_rs\\_%%'",
        [table],
    )
    registered = db.sql("select count(*) from londiste_rs.table_info where table_name = %s",
                        [f"public.{table}"])  # fmt: skip
    return bool(rows[0][0]) and bool(registered[0][0])


def test_add_table_all_against_an_open_writer(tmp_path, provider_db):
    """An application transaction has written b_busy and stays open. add-table --all
    attaches a_done, then waits for b_busy's lock at most lock_timeout per try: writers of
    b_busy wait no longer than that, writers of a_done (done first) not at all, and the verb
    ends with one line naming b_busy, the holder's pid, and a_done as attached."""
    for t in ("a_done", "b_busy"):
        provider_db.sql(f"create table {t} (id int primary key, v text)")
    root = job_ini(tmp_path, "root", provider_db.dsn, lock_timeout=LOCK_TIMEOUT)
    ok(str(root), "create-root", "root")
    long_writer = psycopg.connect(provider_db.dsn)  # a transaction, left open
    long_writer.execute("insert into b_busy values (0, 'long transaction')")
    pid = long_writer.info.backend_pid
    try:
        err, longest = run_beside(
            [str(root), "add-table", "--all"],
            {
                "a_done": "insert into a_done values ({i}, 'app')",
                "b_busy": "insert into b_busy values ({i}, 'app')",
            },
            provider_db.dsn,
        )
        line = one_line(err)
        assert "public.b_busy" in line and f"pid {pid}" in line and "lock_timeout" in line
        assert "public.a_done" in line  # done before it, and it stays
        assert longest["b_busy"] < MAX_WRITER_WAIT, longest
        assert longest["a_done"] < MAX_WRITER_WAIT, longest
        assert captured(provider_db, "a_done") and not captured(provider_db, "b_busy")
    finally:
        long_writer.rollback()
        long_writer.close()
    # the writer has ended: the same command now finishes the job
    assert "Table added: public.b_busy" in ok(str(root), "add-table", "--all")
    assert captured(provider_db, "b_busy")


def test_remove_table_and_drop_node_against_an_open_writer(tmp_path, provider_db):
    """DROP TRIGGER needs the strongest lock, which even readers queue behind: remove-table
    and drop-node on the root wait for it at most lock_timeout per try, then stop with one
    line; nothing is half done."""
    provider_db.sql("create table busy (id int primary key, v text)")
    root = job_ini(tmp_path, "root", provider_db.dsn, lock_timeout=LOCK_TIMEOUT)
    ok(str(root), "create-root", "root")
    ok(str(root), "add-table", "busy")
    long_writer = psycopg.connect(provider_db.dsn)
    long_writer.execute("insert into busy values (0, 'long transaction')")
    try:
        err, longest = run_beside(
            [str(root), "remove-table", "busy"],
            {"read": "select count(*) from busy", "write": "insert into busy values ({i}, 'a')"},
            provider_db.dsn,
        )
        line = one_line(err)
        assert "remove-table" in line and "public.busy" in line and "not removed" in line
        assert max(longest.values()) < MAX_WRITER_WAIT, longest
        assert captured(provider_db, "busy")

        err, longest = run_beside(
            [str(root), "drop-node", "root"],
            {"read": "select count(*) from busy"},
            provider_db.dsn,
        )
        line = one_line(err)
        assert "drop-node root" in line and "lock_timeout" in line
        assert max(longest.values()) < MAX_WRITER_WAIT, longest
        assert provider_db.sql("select count(*) from londiste_rs.node_info") == [(1,)]
        assert captured(provider_db, "busy")
    finally:
        long_writer.rollback()
        long_writer.close()
    assert "Table removed: public.busy" in ok(str(root), "remove-table", "busy")
