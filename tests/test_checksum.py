"""compare's checksums and bisection (operations/checksum.py, compare.compare_table) on real
tables in two databases: every kind of key cut, every natively hashed type, NULLs, and keys
spread over all of bigint. The CLI, the cascade and the consistent point are in test_compare."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from londiste_rs.operations.compare import ROWS_LEVEL, TableDiff, compare_table, key_order, pair
from londiste_rs.operations.consistent import Frozen, _snapshot

TYPES = """create type mood as enum ('sad', 'ok');
create table t (id int8 primary key, b bool, i2 int2, i4 int4, i8 int8, tx text, o oid,
                ch char(4), vc varchar(9), ts timestamp, tz timestamptz, u uuid, n numeric,
                j jsonb, d date, iv interval, a int[], m mood, f float8, by bytea);"""
ROW = """insert into t select g, g % 2 = 0, g, g, g, 'x' || g, g, 'c', 'v' || g,
         '2020-01-01'::timestamp + g * interval '1 s', '2020-01-01 00:00+02'::timestamptz,
         md5(g::text)::uuid, g / 7.0, jsonb_build_object('k', g), date '2020-01-01' + g,
         g * interval '1 min', array[g, 1], 'ok', g / 3.0, '\\x00ff'
         from generate_series(1, 5000) g;"""


@contextlib.contextmanager
def _frozen(provider_db, subscriber_db) -> Iterator[Frozen]:
    with _snapshot(provider_db.dsn, "provider") as a, _snapshot(subscriber_db.dsn, "node") as b:
        yield Frozen(a, b, 0, provider_db.dsn)


def _diff(provider_db, subscriber_db, table: str = "public.t") -> TableDiff:
    with _frozen(provider_db, subscriber_db) as f, ThreadPoolExecutor(2) as pool:
        return compare_table(f, pair(f, table, None), pool)


def _found(d: TableDiff) -> tuple[list[tuple[str, ...]], ...]:
    return d.missing, d.extra, d.different


def _both(provider_db, subscriber_db, ddl: str) -> None:
    provider_db.sql(ddl)
    subscriber_db.sql(ddl)


def test_every_type_is_hashed_and_a_change_in_any_column_is_found(provider_db, subscriber_db):
    _both(provider_db, subscriber_db, TYPES + ROW)
    assert _found(_diff(provider_db, subscriber_db)) == ([], [], [])
    changes = {
        "b": "not b", "i2": "-i2", "i4": "i4 + 1", "i8": "null", "tx": "tx || ' '", "o": "0",
        "ch": "'d'", "vc": "null", "ts": "ts + interval '1 us'", "tz": "tz + interval '1 us'",
        "u": "md5('x')::uuid", "n": "n + 0.000001", "j": "'{}'", "d": "d + 1",
        "iv": "interval '1 day'", "a": "array[1]", "m": "'sad'", "f": "f * 3", "by": "'\\x00'",
    }  # fmt: skip
    for i, (col, expr) in enumerate(changes.items()):
        subscriber_db.sql(f"update t set {col} = {expr} where id = {100 + i * 200}")
    provider_db.sql("update t set tx = null where id = 4001")  # a NULL on the provider only
    d = _diff(provider_db, subscriber_db)
    want = sorted([(str(100 + i * 200),) for i in range(len(changes))] + [("4001",)], key=key_order)
    assert want[0] == ("100",) and want[-1] == ("4001",)  # in the order of the values
    assert _found(d) == ([], [], want)
    assert (d.provider_rows, d.local_rows) == (5000, 5000)


def test_a_composite_key_whose_first_column_holds_one_value_is_cut_at_keys(
    provider_db, subscriber_db
):
    ddl = """create table t (a int, b text, v int, primary key (a, b));
             insert into t select g % 3, lpad(g::text, 6, '0'), g
             from generate_series(1, 9000) g;"""
    _both(provider_db, subscriber_db, ddl)
    subscriber_db.sql("""delete from t where a = 1 and b = '004000';
                         insert into t values (1, 'zzz', 0);
                         update t set v = -1 where a = 2 and b in ('000002', '008999');""")
    assert _found(_diff(provider_db, subscriber_db)) == (
        [("1", "004000")],
        [("1", "zzz")],
        [("2", "000002"), ("2", "008999")],
    )


def test_a_text_key_is_cut_at_boundaries(provider_db, subscriber_db):
    ddl = """create table t (k text primary key, v int);
             insert into t select md5(g::text), g from generate_series(1, 7000) g;"""
    _both(provider_db, subscriber_db, ddl)
    subscriber_db.sql("update t set v = 0 where v in (10, 6000); delete from t where v = 77")
    missing, extra, different = _found(_diff(provider_db, subscriber_db))
    rows = dict(provider_db.sql("select k, v from t where v in (10, 77, 6000)"))
    assert missing == [(k,) for k, v in rows.items() if v == 77] and extra == []
    assert different == sorted((k,) for k, v in rows.items() if v != 77)


@pytest.mark.parametrize("spread", ["dense", "all of bigint"])
def test_integer_keys_dense_or_spread_over_all_of_bigint(provider_db, subscriber_db, spread):
    keys = (
        "g"
        if spread == "dense"
        else "case g % 3 when 0 then g when 1 then -9223372036854775807 + g "
        "else 9223372036854775807 - g end"
    )
    ddl = f"""create table t (id int8 primary key, v int);
              insert into t select {keys}, g from generate_series(1, {ROWS_LEVEL * 4}) g;"""
    _both(provider_db, subscriber_db, ddl)
    picked = provider_db.sql("select id::text from t where v in (5, 3001, 7000) order by t.id")
    subscriber_db.sql("update t set v = -v where v in (5, 3001, 7000)")
    subscriber_db.sql("insert into t values (-9223372036854775808, 0)")
    d = _diff(provider_db, subscriber_db)
    assert _found(d) == ([], [("-9223372036854775808",)], [tuple(p) for p in picked])


def test_one_side_empty(provider_db, subscriber_db):
    _both(provider_db, subscriber_db, "create table t (id int primary key)")
    provider_db.sql(f"insert into t select generate_series(1, {ROWS_LEVEL * 3})")
    d = _diff(provider_db, subscriber_db)
    assert len(d.missing) == ROWS_LEVEL * 3 and not d.extra and not d.different
    assert (d.provider_rows, d.local_rows) == (ROWS_LEVEL * 3, 0)
