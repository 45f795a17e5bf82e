"""`-d` as a user runs it when the daemon cannot work (issue 16): the worker's and the ticker's
start-up checks run before anything detaches, so a stopped server, a wrong port, a missing
database or node is one line on the terminal with a non-zero exit, and no daemon, pidfile or
process is left behind. What fails after the start (the server stops) is retried by the
running daemon, as before."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs import daemon
from londiste_rs.devtools.pgcluster import TempCluster, free_port
from londiste_rs.waiting import wait_for
from tests.fix_cli import job_ini, ok, one_line_error, run_cli
from tests.fix_daemon import processes_with
from tests.fix_pg import OWNER

# test_worker_d_against_a_stopped_server starts a server of its own: marked here, not
# through fix_pg.
pytestmark = [pytest.mark.pg, pytest.mark.usefixtures("kill_leftover_daemons")]


def with_dsn(dsn: str, **change: Any) -> str:
    return make_conninfo(**{**conninfo_to_dict(dsn), **change})


def refused(out: Any, ini: Path, code: int) -> str:
    """The one line of a start that failed with `code`; nothing of the job is left: no
    process names its config, no pidfile, no logfile."""
    assert out.returncode == code, out.stdout + out.stderr
    assert out.stdout == ""
    msg = one_line_error(out)
    assert processes_with(ini) == []
    assert not list(ini.parent.glob("pid/*.pid"))
    assert not list(ini.parent.glob("log/*.log"))
    return msg


def test_worker_d_against_a_stopped_server(tmp_path: Path) -> None:
    with TempCluster("startup") as cluster:
        dsn = cluster.create_database("node", owner=OWNER)
        node = job_ini(tmp_path, "node", dsn, heartbeat_period=0.5)
        ok(str(node), "create-root", "root")
        cluster.stop()

        msg = refused(run_cli("-d", str(node), "worker"), node, 3)
        assert msg == (
            f"ERROR: cannot connect to node database {OWNER}@127.0.0.1:{cluster.port}/node: "
            f'connection failed: connection to server at "127.0.0.1", port {cluster.port} '
            "failed: Connection refused; is that server running? If it is, fix 'db' in node.ini"
        )
        # the foreground run makes the same checks, with the same line
        assert refused(run_cli(str(node), "worker"), node, 3) == msg

        # once it runs, a server that goes away is retried, not fatal
        cluster.start()  # on the same port
        out = run_cli("-d", str(node), "worker")
        assert out.returncode == 0 and out.stdout == out.stderr == "", out.stderr
        pid = daemon.read_pid(tmp_path / "pid/node.pid")
        assert pid is not None and processes_with(node) == [pid]
        cluster.stop()
        log = tmp_path / "log/node.log"
        wait_for("a retry", lambda: "retrying in" in log.read_text(), timeout=30)
        time.sleep(1)
        assert daemon.process_alive(pid)
        # the pidfile is checked before the database: a second copy is refused for that
        msg = one_line_error(run_cli("-d", str(node), "worker"))
        assert msg == f"ERROR: already running (pid {pid}); stop it with 'londiste-rs -s {node}'"

        cluster.start()
        wait_for("the worker to be alive again",
                 lambda: run_cli(str(node), "status").returncode == 0, timeout=60)  # fmt: skip
        ok("-s", str(node))
        assert not daemon.process_alive(pid) and processes_with(node) == []


def test_worker_d_wrong_port_missing_database_or_node(tmp_path: Path, provider_db: Any) -> None:
    port = free_port()
    node = job_ini(tmp_path, "node", with_dsn(provider_db.dsn, port=str(port)))
    msg = refused(run_cli("-d", str(node), "worker"), node, 3)
    assert f":{port}/{provider_db.name}: connection failed: " in msg
    assert msg.endswith(
        "Connection refused; is that server running? If it is, fix 'db' in node.ini"
    )

    node = job_ini(tmp_path, "node", with_dsn(provider_db.dsn, dbname="nosuchdb"))
    msg = refused(run_cli("-d", str(node), "worker"), node, 3)
    assert msg.endswith("database \"nosuchdb\" does not exist; fix 'db' in node.ini")

    node = job_ini(tmp_path, "node", provider_db.dsn)  # reachable, but no node there
    msg = refused(run_cli("-d", str(node), "worker"), node, 4)
    assert "is not a node of queue q1; create it first with 'londiste-rs node.ini create-" in msg


def ticker_ini(tmp_path: Path, base_connstr: str, databases: str) -> Path:
    path = tmp_path / "ticker.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {base_connstr}\ndatabase_list = {databases}\n"
        f"logfile = {tmp_path}/log/ticker.log\npidfile = {tmp_path}/pid/ticker.pid\n"
    )
    return path


def test_ticker_d_with_an_unreachable_base_connstr(tmp_path: Path, provider_db: Any) -> None:
    params = conninfo_to_dict(provider_db.dsn)
    params.pop("dbname")
    base = make_conninfo(**params)
    port = free_port()

    ini = ticker_ini(tmp_path, with_dsn(base, port=str(port)), provider_db.name)
    msg = refused(run_cli("ticker", "-d", str(ini)), ini, 3)
    assert msg.startswith(f"ERROR: cannot connect to database {provider_db.name} ")
    assert msg.endswith(
        "Connection refused; is that server running? If it is, fix base_connstr or "
        "database_list in ticker.ini"
    )
    # no database_list: the server is asked for them through initial_database
    ini = ticker_ini(tmp_path, with_dsn(base, port=str(port)), "")
    msg = refused(run_cli("-d", "ticker", str(ini)), ini, 3)
    assert msg.startswith("ERROR: cannot connect to database template1 ")

    ini = ticker_ini(tmp_path, base, f"{provider_db.name}, nosuchdb")
    msg = refused(run_cli("ticker", "-d", str(ini)), ini, 3)
    assert msg.endswith(
        'database "nosuchdb" does not exist; fix base_connstr or database_list in ticker.ini'
    )

    ini = ticker_ini(tmp_path, base, provider_db.name)  # all there: it starts
    out = run_cli("ticker", "-d", str(ini))
    assert out.returncode == 0, out.stderr
    pid = daemon.read_pid(tmp_path / "pid/ticker.pid")
    assert pid is not None and processes_with(ini) == [pid]
    ok("-s", str(ini))
    assert processes_with(ini) == []
