"""The seed's londiste3 walkthrough, step by step, with `londiste3` -> `londiste-rs` and
`pgqd` -> `londiste-rs ticker`, on two separate clusters: ticker.ini, master.ini, slave.ini,
create-root, `-d master.ini worker`, create-branch, `-d slave.ini worker`, add-table --all on
both; then rows written on the master arrive on the slave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.waiting import wait_for

SCHEMA = """
create table accounts (id int primary key, owner text not null, balance numeric(12, 2));
create table transfers (id bigint generated always as identity primary key,
                        account_id int references accounts, amount numeric(12, 2),
                        at timestamptz default now());
"""


def londiste(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"{args}: {out.stderr}"
    return out


def without_dbname(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params.pop("dbname")
    return make_conninfo(**params)


def content(db: Any) -> list[Any]:
    return [
        db.sql("select * from accounts order by id"),
        db.sql("select * from transfers order by id"),
    ]


def test_walkthrough(tmp_path, provider_db, subscriber_db):
    master, slave = provider_db.dsn, subscriber_db.dsn
    provider_db.sql(SCHEMA)
    provider_db.sql(
        "insert into accounts select i, 'owner ' || i, i from generate_series(1, 500) i"
    )
    subscriber_db.sql(SCHEMA)  # "a slave database that contains ... the structure of the master"

    cfg = tmp_path / "londiste-config"
    (cfg / "log").mkdir(parents=True)
    (cfg / "pid").mkdir()
    (cfg / "ticker.ini").write_text(
        "[pgqd]\n# libpq connect string without dbname=\n"
        f"base_connstr = {without_dbname(master)}\n"
        f"database_list = {provider_db.name}\n"
        "logfile = log/ticker.log\npidfile = pid/ticker.pid\n"
    )
    (cfg / "master.ini").write_text(
        f"[londiste3]\ndb = {master}\nqueue_name = {provider_db.name}\nloop_delay = 0.5\n"
        "logfile = log/master.log\npidfile = pid/master.pid\n"
    )
    (cfg / "slave.ini").write_text(
        f"[londiste3]\ndb = {slave}\nqueue_name = {provider_db.name}\nloop_delay = 0.5\n"
        "logfile = log/yourdocs_slave.log\npidfile = pid/yourdocs_slave.pid\n"
    )
    try:
        londiste(cfg, "ticker", "-d", "ticker.ini")
        out = londiste(cfg, "master.ini", "create-root", "master", master)
        assert "Done" in out.stdout
        londiste(cfg, "-d", "master.ini", "worker")
        londiste(cfg, "slave.ini", "create-branch", "slave", slave, f"--provider={master}")
        londiste(cfg, "-d", "slave.ini", "worker")
        londiste(cfg, "master.ini", "add-table", "--all")
        londiste(cfg, "slave.ini", "add-table", "--all")

        # "Sit back, relax and the data will be replicated."
        provider_db.sql("insert into transfers (account_id, amount) select id, 1 from accounts")
        provider_db.sql("update accounts set balance = balance - 1 where id % 3 = 0")
        provider_db.sql("delete from transfers where account_id > 490")
        wait_for("the slave to equal the master",
                 lambda: content(subscriber_db) == content(provider_db), timeout=60)  # fmt: skip
        status = londiste(cfg, "slave.ini", "status").stdout
        assert "master (root)" in status and "slave (branch)" in status
        londiste(cfg, "slave.ini", "wait-root", "--timeout", "30")
    finally:
        for ini in ("slave.ini", "master.ini", "ticker.ini"):
            subprocess.run([sys.executable, "-m", "londiste_rs", "-s", ini], cwd=cfg,
                           capture_output=True, timeout=90, check=False)  # fmt: skip
    for name in ("ticker.log", "master.log", "yourdocs_slave.log"):
        assert (cfg / "log" / name).exists()
