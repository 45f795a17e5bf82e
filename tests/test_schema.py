"""The installer: one transaction, idempotent, no superuser, works from an installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from londiste_rs.errors import LondisteError
from londiste_rs.store import schema

REPO = Path(__file__).resolve().parent.parent


def test_install_as_owner_is_idempotent(provider_db):
    with provider_db.connect() as conn:
        assert schema.installed_version(conn) is None
        version = schema.install(conn)
        assert version == schema.package_version()
        assert schema.installed_version(conn) == version
        applied = [r[0] for r in conn.execute("select migration from londiste_rs.schema_version")]
        assert applied == sorted(name for name, _ in schema.migrations())
        assert "0001_queue" in applied
        # Second install: no new migration rows, functions re-applied without error.
        assert schema.install(conn) == version
        again = conn.execute("select count(*) from londiste_rs.schema_version").fetchone()
        assert again == (len(applied),)
        owner = conn.execute(
            "select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'londiste_rs'"
        ).fetchone()
        assert owner == ("lrs_owner",)


def test_failed_install_leaves_nothing(provider_db, monkeypatch):
    real = schema.function_files()
    broken = [*real, ("functions/zzz/broken.sql", "select * from no_such_table_anywhere;")]
    monkeypatch.setattr(schema, "function_files", lambda: broken)
    with provider_db.connect() as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            schema.install(conn)
        assert schema.installed_version(conn) is None
        gone = conn.execute("select count(*) from pg_namespace where nspname = 'londiste_rs'")
        assert gone.fetchone() == (0,)


def test_missing_create_privilege_names_the_grant(provider_db):
    with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
        admin.execute("drop role if exists lrs_nocreate")
        admin.execute("create role lrs_nocreate login")
        admin.execute(f'revoke create on database "{provider_db.name}" from public')
    try:
        dsn = provider_db.dsn.replace("user=lrs_owner", "user=lrs_nocreate")
        with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(LondisteError) as err:
            schema.install(conn)
        text = str(err.value)
        assert "\n" not in text
        assert provider_db.name in text
        assert f'GRANT CREATE ON DATABASE "{provider_db.name}" TO "lrs_nocreate"' in text
    finally:
        with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
            admin.execute("drop role lrs_nocreate")


def test_schema_of_another_owner_is_named(provider_db):
    with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
        admin.execute("create schema londiste_rs")  # owned by the superuser
    with provider_db.connect() as conn, pytest.raises(LondisteError) as err:
        schema.install(conn)
    assert "belongs to postgres" in str(err.value)
    assert 'ALTER SCHEMA londiste_rs OWNER TO "lrs_owner"' in str(err.value)


@pytest.mark.timeout(600)
def test_install_from_wheel_into_empty_database(provider_db, tmp_path):
    """A built wheel, installed elsewhere, carries the SQL: nothing is read from the repo."""
    wheels = tmp_path / "wheels"
    # A target directory of its own: sharing target/ with a concurrent `make build` could
    # clobber the library it is linking.
    env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target" / "wheel-test")}
    build = subprocess.run(
        [str(REPO / ".venv/bin/maturin"), "build", "--release", "-q", "-o", str(wheels)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("*.whl")
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    script = textwrap.dedent(
        """
        import sys, psycopg
        import londiste_rs.store.schema as s
        assert s.__file__.startswith(sys.argv[2]), s.__file__
        with psycopg.connect(sys.argv[1], autocommit=True) as conn:
            print(s.install(conn))
            print(conn.execute("select londiste_rs.version()").fetchone()[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, provider_db.dsn, str(target)],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    version = schema.package_version()
    assert out.stdout.split() == [version, version]


def test_concurrent_installs_apply_each_migration_once(provider_db):
    def install_once() -> str:
        with provider_db.connect() as conn:
            return schema.install(conn)

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: install_once(), range(4)))
    assert versions == [schema.package_version()] * 4
    rows = provider_db.sql("select migration, count(*) from londiste_rs.schema_version group by 1")
    assert sorted(r[0] for r in rows) == [name for name, _ in schema.migrations()]
    assert all(r[1] == 1 for r in rows)
