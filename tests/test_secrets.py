"""No passwords at rest in the cascade, no trust in locations read from other databases, no
password fragments in errors (DESIGN I6; security review findings 3, 14, 15).

Each test is written as the attack it defends against. The password tests run on a cluster of
their own whose node roles must log in with scram-sha-256 (the shared test clusters trust
every login), so a password that is missing or wrong fails the login as it would in
production.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from londiste_rs.config import load_job_config
from londiste_rs.devtools.pgcluster import TempCluster
from londiste_rs.errors import LondisteError
from londiste_rs.pg.location import for_storing, trusted_location

ROOT_ROLE, ROOT_PW = "sec_root_owner", "RootSecret1"
LEAF_ROLE, LEAF_PW = "sec_leaf_owner", "LeafSecret2"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = run_cli(*args, env=env)
    assert out.returncode == 0, out.stderr
    return out


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def job_ini(tmp_path: Path, name: str, dsn: str, **extra: Any) -> Path:
    path = tmp_path / f"{name}.ini"
    lines = ["[londiste3]", f"db = {dsn}", "queue_name = q1", "loop_delay = 0"]
    lines += [f"logfile = {tmp_path}/log/{name}.log", f"pidfile = {tmp_path}/pid/{name}.pid"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- a cluster whose node roles log in with a password -----------------------------------------


@pytest.fixture(scope="module")
def scram_cluster(request: pytest.FixtureRequest) -> Iterator[TempCluster]:
    if request.config.getoption("--pg-dsn"):
        pytest.skip("needs a throwaway cluster whose pg_hba.conf the test can write")
    cluster = TempCluster("secrets")
    cluster.init()
    hba = cluster.datadir / "pg_hba.conf"
    rules = "".join(
        f"host all {role} 127.0.0.1/32 scram-sha-256\n" for role in (ROOT_ROLE, LEAF_ROLE)
    )
    hba.write_text(rules + hba.read_text())
    cluster.start()
    try:
        for role, pw in ((ROOT_ROLE, ROOT_PW), (LEAF_ROLE, LEAF_PW)):
            cluster.sql(f"create role {role} login password '{pw}'")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pw_dbs(scram_cluster: TempCluster) -> Iterator[tuple[str, str]]:
    """(root dsn, leaf dsn) of two fresh databases owned by the two password roles; neither
    dsn holds a password."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"root_{suffix}", f"leaf_{suffix}")
    for name, role in zip(names, (ROOT_ROLE, LEAF_ROLE), strict=True):
        scram_cluster.sql(f'create database "{name}" owner {role} template template0')
    try:
        yield (
            scram_cluster.dsn(names[0], ROOT_ROLE),
            scram_cluster.dsn(names[1], LEAF_ROLE),
        )
    finally:
        for name in names:
            with contextlib.suppress(psycopg.Error):
                scram_cluster.drop_database(name)


def dbname_of(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


def everything_stored(cluster: TempCluster, dbname: str) -> str:
    """Every row of every table of the londiste_rs schema, as text: what a backup of the
    node, or anyone who can read the schema, gets."""
    with cluster.connect(dbname) as conn:
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables"
            " where schemaname = 'londiste_rs'"
        ).fetchall()
        return "\n".join(
            str(row) for (t,) in tables for row in conn.execute(f"select * from {t}").fetchall()
        )


def test_no_password_is_stored_anywhere_in_the_cascade(tmp_path, scram_cluster, pw_dbs):
    """Finding 3: the leaf's database (or a dump of it) held the root's database-owner
    password, and the root the leaf's. Now neither holds any password, and the worker still
    logs in: the password comes from the ini's own connection strings."""
    root_dsn, leaf_dsn = pw_dbs
    root_full, leaf_full = f"{root_dsn} password={ROOT_PW}", f"{leaf_dsn} password={LEAF_PW}"
    root = job_ini(tmp_path, "root", root_full)
    leaf = job_ini(tmp_path, "leaf", leaf_full, initial_provider_location=root_full)

    out = ok(str(root), "create-root", "root")
    assert "root node root created" in out.stdout
    note = [ln for ln in out.stderr.splitlines() if "password" in ln]
    assert len(note) == 1 and "not stored" in note[0] and ".pgpass" in note[0]
    assert ROOT_PW not in out.stderr + out.stdout
    # the location given on the command line with a password (URI form) is stripped too
    leaf_db = dbname_of(leaf_dsn)
    public = f"postgresql://{LEAF_ROLE}:{LEAF_PW}@127.0.0.1:{scram_cluster.port}/{leaf_db}"
    ok(str(leaf), "create-leaf", "leaf", public)

    # the attack: read every londiste_rs table on both nodes
    for dsn in pw_dbs:
        stored = everything_stored(scram_cluster, dbname_of(dsn))
        assert "root" in stored and "leaf" in stored  # the member lists are there
        assert ROOT_PW not in stored and LEAF_PW not in stored
        assert "password=" not in stored and "Secret" not in stored

    # ... and the cascade still works: status walks both, the leaf reaches its provider
    out = run_cli(str(leaf), "status", "--json")
    assert out.returncode == 1, out.stderr  # no worker runs: status says so
    status = json.loads(out.stdout)
    assert [(n["name"], n["unreachable"]) for n in status] == [("root", None), ("leaf", None)]
    ok(str(leaf), "missing")
    ok(str(leaf), "worker")  # loop_delay = 0: one pass, exits when idle
    info = json.loads(ok(str(leaf), "node-info", "--json").stdout)
    assert info["cur_error"] is None


def test_provider_password_from_pgpass_or_remote_extra_connstr(tmp_path, scram_cluster, pw_dbs):
    """A leaf created with --provider=CONNSTR (not in its ini) has no password for the
    provider: the one-line error says where to give it, and each of libpq's passfile and
    londiste3's remote_extra_connstr then works."""
    root_dsn, leaf_dsn = pw_dbs
    root_full = f"{root_dsn} password={ROOT_PW}"
    ok(str(job_ini(tmp_path, "root", root_full)), "create-root", "root")
    leaf = job_ini(tmp_path, "leaf", f"{leaf_dsn} password={LEAF_PW}")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={root_full}")

    msg = one_line_error(run_cli(str(leaf), "missing", env={"PGPASSFILE": "/nonexistent"}))
    assert "password" in msg and ".pgpass" in msg and ROOT_PW not in msg

    # libpq's own password file, which libpq matches per host, port, database and role
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{scram_cluster.port}:*:{ROOT_ROLE}:{ROOT_PW}\n")
    passfile.chmod(0o600)
    ok(str(leaf), "missing", env={"PGPASSFILE": str(passfile)})

    # londiste3's key for what other nodes' connections need
    extra = job_ini(
        tmp_path,
        "leaf",
        f"{leaf_dsn} password={LEAF_PW}",
        remote_extra_connstr=f"password={ROOT_PW}",
    )
    ok(str(extra), "missing", env={"PGPASSFILE": "/nonexistent"})


def test_migration_scrubs_passwords_stored_by_earlier_versions(provider_db):
    """Rows written before this version (both libpq forms) lose their passwords when the
    schema is upgraded; the rest of each location stays."""
    from londiste_rs.store.schema import install

    with psycopg.connect(provider_db.dsn, autocommit=True) as conn:
        install(conn)
    rows = {
        "kv": "host=h port=5 dbname=d user=u password=OwnerSecret1",
        "kv_first": "password=Sec1 host=h",
        "kv_quoted": r"host=h password = 'Top Secret\'s' sslmode=require",
        "kv_ssl": r"host=h sslpassword=k\ ey password=p2 dbname=d",
        "uri": "postgresql://u:UriSecret@h:5432/db?sslmode=require&password=Q1&sslpassword=Z1",
        "uri_hosts": "postgres://u:UriSecret2@h1:1,h2:2/db",
        "uri_query": "postgresql://h/db?password=Q2",
        "clean": "host=h dbname=d",
    }
    for node, location in rows.items():
        provider_db.sql(
            "insert into londiste_rs.node_location (queue_name, node_name, node_location)"
            " values ('q1', %s, %s)",
            [node, location],
        )
    # back to the schema level before the scrubbing migration, then upgrade
    provider_db.sql("delete from londiste_rs.schema_version where migration like '0010%%'", [])
    with psycopg.connect(provider_db.dsn, autocommit=True) as conn:
        install(conn)
    got = dict(provider_db.sql("select node_name, node_location from londiste_rs.node_location"))
    assert got == {
        "kv": "host=h port=5 dbname=d user=u",
        "kv_first": "host=h",
        "kv_quoted": "host=h sslmode=require",
        "kv_ssl": "host=h dbname=d",
        "uri": "postgresql://u@h:5432/db?sslmode=require",
        "uri_hosts": "postgres://u@h1:1,h2:2/db",
        "uri_query": "postgresql://h/db",
        "clean": "host=h dbname=d",
    }
    # every row still is a connection string naming the same place
    for location in got.values():
        psycopg.conninfo.conninfo_to_dict(location)


# -- locations read from other databases -------------------------------------------------------


def _cfg(tmp_path: Path, **extra: str) -> Any:
    return load_job_config(job_ini(tmp_path, "n", "host=127.0.0.1 dbname=me user=op", **extra))


def test_a_stored_location_gives_only_where_to_connect(tmp_path, caplog):
    """Finding 15: a member database's owner writes a location that makes the operator's
    machine read its files or use its client certificate. Only host, hostaddr, port, dbname,
    user, sslmode, target_session_attrs and connect_timeout are taken."""
    cfg = _cfg(tmp_path)
    evil = (
        "host=10.0.0.9 port=6432 dbname=appdb user=lrs sslmode=require connect_timeout=5"
        " passfile=/home/op/.pgpass_prod sslkey=/home/op/.postgresql/prod.key"
        " sslcert=/home/op/prod.crt sslrootcert=/tmp/evil-ca.crt service=prod"
        " options='-c search_path=evil' application_name=x password=planted"
    )
    used = psycopg.conninfo.conninfo_to_dict(trusted_location(evil, cfg))
    assert used == {
        "host": "10.0.0.9",
        "port": "6432",
        "dbname": "appdb",
        "user": "lrs",
        "sslmode": "require",
        "connect_timeout": "5",
    }
    assert "ignored" in caplog.text and "passfile" in caplog.text and "planted" not in caplog.text
    # a database name that is a connection string (libpq may expand one) is refused
    with pytest.raises(LondisteError, match="in place of its database name"):
        trusted_location("host=h dbname='host=evil passfile=/x'", cfg)


def test_credentials_come_from_this_machines_ini(tmp_path):
    """The ini's own connection string for the same server, database and role is used as
    written (its password included); for any other node remote_extra_connstr is added, and
    its keys win (it can make sslmode stricter than a stored location says)."""
    provider = "host=10.0.0.1 port=5432 dbname=appdb user=lrs password=ProvSecret"
    cfg = _cfg(
        tmp_path,
        initial_provider_location=provider,
        remote_extra_connstr="sslmode=verify-full passfile=/etc/lrs/pgpass",
    )
    stored = for_storing(provider)
    assert "ProvSecret" not in stored
    assert trusted_location(stored, cfg) == provider
    other = "host=10.0.0.2 port=5432 dbname=appdb user=lrs sslmode=disable"
    used = psycopg.conninfo.conninfo_to_dict(trusted_location(other, cfg))
    assert used["sslmode"] == "verify-full" and used["passfile"] == "/etc/lrs/pgpass"
    assert "password" not in used


def test_a_malicious_member_location_is_not_followed_with_its_keys(
    tmp_path, provider_db, subscriber_db
):
    """The root's owner rewrites the leaf's location in the root's member list with
    passfile=, sslkey=, sslcert=, service= and options=. status and drop-node (which connect
    to every member) still reach the leaf, and libpq never looks at the planted passfile (it
    would complain about the file's permissions on stderr) or the unknown service."""
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    planted = tmp_path / "planted_pgpass"
    planted.write_text("*:*:*:*:stolen\n")
    planted.chmod(0o644)  # libpq warns about a passfile others may read, when it reads one
    evil = (
        f"{subscriber_db.dsn} passfile={planted} sslkey={tmp_path}/k sslcert={tmp_path}/c"
        " service=nosuchservice options='-c search_path=evil'"
    )
    provider_db.sql("update londiste_rs.node_location set node_location = %s"
                    " where node_name = 'leaf'", [evil])  # fmt: skip
    env = {"PGSERVICEFILE": str(tmp_path / "no_service_file")}

    out = run_cli(str(root), "status", "--json", env=env)
    assert out.returncode == 1, out.stderr  # no worker runs: status says so
    leaf_status = json.loads(out.stdout)[1]
    assert leaf_status["name"] == "leaf" and leaf_status["unreachable"] is None
    assert "password file" not in out.stderr and leaf_status["error"] is None
    assert "ignored" in out.stderr and "passfile" in out.stderr

    out = run_cli(str(root), "drop-node", "nosuchnode", env=env)
    assert "unknown node nosuchnode" in out.stderr
    assert "password file" not in out.stderr and "nosuchservice" not in out.stderr


# -- no password fragments in errors -----------------------------------------------------------


def test_config_error_names_the_key_not_the_value(tmp_path):
    """Finding 14: configparser's interpolation error quoted the value after '%'."""
    ini = job_ini(tmp_path, "pct", "host=127.0.0.1 port=1 dbname=x password=50%offSecret")
    msg = one_line_error(run_cli(str(ini), "status"))
    assert "offSecret" not in msg and "50%" not in msg
    assert "db" in msg and "%%" in msg
    ini = job_ini(tmp_path, "ref", "host=127.0.0.1 password=Ref%(nokey)sSecret")
    msg = one_line_error(run_cli(str(ini), "status"))
    assert "Secret" not in msg and "Ref" not in msg and " db:" in msg


def test_connect_error_shows_no_fragment_of_the_password(tmp_path):
    """Finding 14: an unquoted password with a space made libpq's message quote the part
    after the space ('missing "=" after "Secret9"')."""
    ini = job_ini(tmp_path, "sp", "host=127.0.0.1 port=1 dbname=x user=u password=Top Secret9")
    msg = one_line_error(run_cli(str(ini), "status"))
    assert "Secret9" not in msg and "Top" not in msg
    assert "invalid connection string" in msg and "password" in msg
    # a refused login: the message may name the user, never the password
    ini = job_ini(tmp_path, "refused", "host=127.0.0.1 port=1 dbname=x user=u password=Zq9Secret")
    msg = one_line_error(run_cli(str(ini), "status"))
    assert "Zq9Secret" not in msg and "cannot connect" in msg
