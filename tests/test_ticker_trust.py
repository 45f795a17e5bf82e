"""The ticker runs only code it may trust (review finding 2), and names the consumers that hold
back rotation (finding 9). Each test runs `londiste-rs ticker` as a real process against a
cluster of its own, so visiting every database sees only the databases made here."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from londiste_rs.devtools.pgcluster import TempCluster
from londiste_rs.store import schema
from londiste_rs.waiting import wait_for

OWNER = "lrs_owner"


@pytest.fixture(scope="module")
def cluster() -> Iterator[TempCluster]:
    c = TempCluster("ticker-trust").start()
    try:
        yield c
    finally:
        c.destroy()


def run(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode() if params is None else query, params)
        return cur.fetchall() if cur.description else []


def role(cluster: TempCluster, name: str) -> str:
    """A login role (made once per cluster); its DSN for the database is cluster.dsn(db, name)."""
    if not cluster.sql(f"select 1 from pg_roles where rolname = '{name}'"):
        cluster.sql(f'create role "{name}" login')
    return name


def queue_db(cluster: TempCluster, name: str, owner: str | None = OWNER) -> str:
    """A database with our schema installed by `owner` (None: the superuser) and queue q that
    ticks as soon as it has an event; returns the installer's DSN."""
    if owner is None:
        cluster.create_database(name)
        dsn = cluster.dsn(name)
    else:
        dsn = cluster.create_database(name, owner=owner)
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.install(conn)
        conn.execute("select londiste_rs.create_queue('q')")
        conn.execute("select londiste_rs.set_queue_config('q', 'ticker_max_lag', '0')")
    return dsn


# A londiste_rs schema as an attacker makes it: the ticker's first call makes them superuser.
FAKE_SCHEMA = """
create schema londiste_rs;
create table londiste_rs.pwned (who text);
grant insert on londiste_rs.pwned to public;
grant usage on schema londiste_rs to public;
create function londiste_rs.ticker() returns int language plpgsql as $$
begin
    insert into londiste_rs.pwned values (current_user);
    execute 'alter role ' || quote_ident(session_user) || ' superuser';
    return 0;
end $$;
create function londiste_rs.maint_retry_events() returns int language sql as 'select 0';
create function londiste_rs.maint_operations(out func_name text, out func_arg text)
returns setof record language sql as $$ select 'londiste_rs.ticker', null::text $$;
"""


def ticks(dsn: str) -> int:
    return int(run(dsn, "select count(*) from londiste_rs.tick")[0][0])


class Ticker:
    """`londiste-rs ticker ticker.ini` in the foreground, as a process of its own."""

    def __init__(self, workdir: Path, cluster: TempCluster, user: str, **settings: Any):
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "ticker.log"
        values = {
            "base_connstr": f"host=127.0.0.1 port={cluster.port} user={user}",
            "initial_database": "postgres",
            "logfile": str(self.log),
            "pidfile": str(workdir / "ticker.pid"),
            "ticker_period": 0.1,
            "check_period": 1,
            **settings,
        }
        ini = workdir / "ticker.ini"
        ini.write_text("[pgqd]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "londiste_rs", "ticker", str(ini)],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_log(self, what: str, timeout: float = 30) -> None:
        wait_for(f"{what!r} in the ticker's log", lambda: what in self.text(), timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_superuser_ticker_runs_no_code_of_other_roles(cluster, tmp_path):
    """E6, and a schema planted in someone else's database: visiting every database as the
    superuser, the ticker ticks only the schema a superuser installed."""
    legit = queue_db(cluster, "legit", owner=None)
    owners = queue_db(cluster, "installed_by_owner")  # a normal install, by lrs_owner
    tenant = role(cluster, "tenant")
    cluster.sql("create database tenant_db owner tenant template template0")
    run(cluster.dsn("tenant_db", tenant), FAKE_SCHEMA)
    planter = role(cluster, "planter")
    cluster.create_database("planted", owner=OWNER)
    cluster.sql("grant create on database planted to planter")
    run(cluster.dsn("planted", planter), FAKE_SCHEMA)

    ticker = Ticker(tmp_path, cluster, cluster.superuser)  # no database_list
    try:
        before = ticks(legit)
        run(legit, "select londiste_rs.insert_event('q', 'x', 'data')")
        wait_for("a tick in the superuser's schema", lambda: ticks(legit) > before)
        ticker.wait_log("tenant_db: not ticked: schema londiste_rs belongs to tenant")
        ticker.wait_log("planted: not ticked: schema londiste_rs belongs to planter")
        ticker.wait_log("installed_by_owner: not ticked: schema londiste_rs belongs to lrs_owner")
    finally:
        ticker.stop()
    log = ticker.text()
    assert "run the ticker as lrs_owner (base_connstr user=lrs_owner)" in log
    assert "the ticker connects as superuser postgres, which it does not need" in log
    assert "Traceback" not in log
    assert ticks(owners) == 1  # only create_queue's tick
    supers = cluster.sql(
        "select rolname, rolsuper from pg_roles where rolname in ('tenant', 'planter') order by 1"
    )
    assert supers == [("planter", False), ("tenant", False)]
    for db, who in (("tenant_db", tenant), ("planted", planter)):
        assert run(cluster.dsn(db, who), "select * from londiste_rs.pwned") == []


def test_owner_ticker_skips_a_schema_of_another_role_and_foreign_maintenance(cluster, tmp_path):
    mine = queue_db(cluster, "mine")
    planter = role(cluster, "planter")
    cluster.create_database("planted_too", owner=OWNER)
    cluster.sql("grant create on database planted_too to planter")
    run(cluster.dsn("planted_too", planter), FAKE_SCHEMA)
    # extra maintenance naming a function outside our schema, of a role we do not trust
    cluster.sql("grant create on schema public to planter", dbname="mine")
    run(
        cluster.dsn("mine", planter),
        "create table public.calls (who text); grant insert on public.calls to public;"
        "create function public.outside(q text) returns int language sql"
        " as 'insert into public.calls values (current_user) returning 0'",
    )
    run(mine, "select londiste_rs.set_queue_config('q', 'extra_maint', 'public.outside')")

    ticker = Ticker(tmp_path, cluster, OWNER, database_list="mine, planted_too", maint_period=0.2)
    try:
        before = ticks(mine)
        run(mine, "select londiste_rs.insert_event('q', 'x', 'data')")
        wait_for("a tick in our schema", lambda: ticks(mine) > before)
        ticker.wait_log(
            "planted_too: not ticked: schema londiste_rs belongs to planter, neither the "
            "ticker's role lrs_owner nor the database owner lrs_owner"
        )
        ticker.wait_log("mine: maintenance function public.outside skipped")
    finally:
        ticker.stop()
    assert run(cluster.dsn("mine", planter), "select * from public.calls") == []
    assert run(cluster.dsn("planted_too", planter), "select * from londiste_rs.pwned") == []


def test_a_consumer_blocking_rotation_is_named_and_max_consumer_lag_unregisters_it(
    cluster, tmp_path
):
    dsn = queue_db(cluster, "rotation")
    run(dsn, "select londiste_rs.set_queue_config('q', 'rotation_period', '1 second')")
    run(dsn, "select londiste_rs.register_consumer('q', 'ghost')")  # never reads again
    ticker = Ticker(tmp_path, cluster, OWNER, database_list="rotation", maint_period=0.2)
    try:
        run(dsn, "select londiste_rs.insert_event('q', 'x', 'data')")
        ticker.wait_log("rotation: queue q: consumer ghost holds back the rotation")
        switched = run(dsn, "select queue_switch_time from londiste_rs.queue")[0][0]
        run(dsn, "select londiste_rs.set_queue_config('q', 'max_consumer_lag', '1 second')")
        ticker.wait_log("rotation: queue q: consumer ghost unregistered")
        wait_for(
            "rotation to go on",
            lambda: run(dsn, "select queue_switch_time from londiste_rs.queue")[0][0] > switched,
        )
    finally:
        ticker.stop()
    assert run(dsn, "select count(*) from londiste_rs.subscription") == [(0,)]
    # warned once, not every maintenance round
    assert ticker.text().count("consumer ghost holds back the rotation") == 1


def test_rotation_blockers_lists_only_who_holds_rotation_back(cluster):
    dsn = queue_db(cluster, "blockers")
    run(dsn, "select londiste_rs.register_consumer('q', 'ghost')")
    run(dsn, "select londiste_rs.set_queue_config('q', 'rotation_period', '0')")
    assert run(dsn, "select londiste_rs.maint_rotate_tables_step1('q')") == [(1,)]
    run(dsn, "select londiste_rs.maint_rotate_tables_step2('q')")
    assert run(dsn, "select queue_switch_step2 is not null from londiste_rs.queue") == [(True,)]
    run(dsn, "select londiste_rs.force_tick('q')")
    run(dsn, "select londiste_rs.ticker('q')")
    run(dsn, "select londiste_rs.register_consumer('q', 'live')")  # at the tick after the switch
    rows = run(
        dsn,
        "select consumer_name, behind_switch, max_consumer_lag"
        " from londiste_rs.rotation_blockers('q')",
    )
    assert rows == [("ghost", True, None)]
    assert run(dsn, "select londiste_rs.maint_rotate_tables_step1('q')") == [(0,)]
    run(dsn, "select londiste_rs.unregister_consumer('q', 'ghost')")
    assert run(dsn, "select * from londiste_rs.rotation_blockers('q')") == []
    assert run(dsn, "select londiste_rs.maint_rotate_tables_step1('q')") == [(1,)]
