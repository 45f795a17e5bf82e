"""Who must be trusted (issue #11 item 8, review finding 6): add-table warns, one line per
table, when a table's code would run as londiste-rs's role but belongs to another role: on a
branch or leaf, destination tables owned by another role with triggers, rules or row level
security (the worker runs them when it applies rows); on the root, tables with row level
security owned by another role (it filters every subscriber's initial copy)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args], capture_output=True, text=True, timeout=120
    )


def job_ini(tmp_path: Path, name: str, dsn: str) -> Path:
    path = tmp_path / f"{name}.ini"
    lines = ["[londiste3]", f"db = {dsn}", "queue_name = q1", "loop_delay = 0.1"]
    lines += [f"logfile = {tmp_path}/log/{name}.log", f"pidfile = {tmp_path}/pid/{name}.pid"]
    path.write_text("\n".join(lines) + "\n")
    return path


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    return out


def as_role(db: Any, role: str, *statements: str) -> None:
    dsn = db.cluster.dsn(db.name, role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in statements:
            conn.execute(s.encode())


def test_add_table_warns_about_tables_whose_owner_runs_code_as_the_worker(
    tmp_path, provider_db, subscriber_db
):
    """The attack of finding 6: a role that owns a replicated table on the leaf puts a
    trigger on it, which runs as the worker (the database owner) on the next apply. add-table
    says so for that table, and for one with a rule or row level security; not for tables the
    worker's role owns, nor for another role's table without such code."""
    analyst = f"analyst_{uuid.uuid4().hex[:8]}"
    tables = ("plain", "spied", "ruled", "policed", "quiet")
    for db in (provider_db, subscriber_db):  # (one server with --pg-dsn: created once)
        db.cluster.sql(
            f"do $$ begin create role {analyst} login;"
            " exception when duplicate_object then null; end $$"
        )
        for t in tables:
            db.sql(f"create table {t} (id int primary key, v text)")
    try:
        admin = subscriber_db.cluster
        for t in ("spied", "ruled", "policed", "quiet"):
            admin.sql(f"alter table {t} owner to {analyst}", subscriber_db.name)
            admin.sql(f"grant all on {t} to lrs_owner", subscriber_db.name)
        admin.sql(f"create schema {analyst} authorization {analyst}", subscriber_db.name)
        as_role(
            subscriber_db,
            analyst,
            f"create function {analyst}.spy() returns trigger language plpgsql as"
            " $$ begin raise notice 'running as %', current_user; return null; end $$",
            "create trigger spy after insert on spied for each statement"
            f" execute function {analyst}.spy()",
            "create rule ruled_r as on update to ruled do also notify ruled_changed",
            "alter table policed enable row level security",
        )
        # on the root, another role's table with row level security
        provider_db.cluster.sql(f"alter table policed owner to {analyst}", provider_db.name)
        provider_db.cluster.sql("grant all on policed to lrs_owner", provider_db.name)
        as_role(provider_db, analyst, "alter table policed enable row level security")

        root = job_ini(tmp_path, "root", provider_db.dsn)
        leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
        ok(str(root), "create-root", "root")
        out = ok(str(root), "add-table", "--all")
        warned = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert len(warned) == 1 and "public.policed" in warned[0], out.stderr
        assert "row level security" in warned[0] and "initial copy" in warned[0]

        ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")
        out = ok(str(leaf), "add-table", "--all")
        assert out.stdout.count("Table added") == len(tables)
        warned = [ln for ln in out.stderr.splitlines() if ln.strip()]
        by_table = {t: [ln for ln in warned if f"public.{t} " in ln] for t in tables}
        assert len(warned) == 3, out.stderr
        assert by_table["plain"] == [] and by_table["quiet"] == []
        for t, what in (("spied", "1 trigger"), ("ruled", "1 rule"),
                        ("policed", "row level security")):  # fmt: skip
            (line,) = by_table[t]
            assert f"owned by role {analyst}" in line and what in line
            assert "runs as lrs_owner" in line and "Who must be trusted" in line
    finally:
        for db in (subscriber_db, provider_db):
            with contextlib.suppress(psycopg.Error):
                db.cluster.drop_database(db.name)
        with contextlib.suppress(psycopg.Error):
            provider_db.cluster.sql(f"drop role if exists {analyst}")
        if subscriber_db.cluster is not provider_db.cluster:
            with contextlib.suppress(psycopg.Error):
                subscriber_db.cluster.sql(f"drop role if exists {analyst}")
