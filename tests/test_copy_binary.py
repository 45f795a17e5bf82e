"""The Rust binary COPY writer, round-tripped through a real server (what it refuses:
unit/test_copy_binary.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from londiste_rs._native._testing import encode_copy

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def micros(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def test_common_types_round_trip(provider_db):
    provider_db.sql(
        "create table t (b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, t text,"
        " v varchar(10), by bytea, j jsonb, n numeric, ts timestamptz, d date, u uuid)"
    )
    ts = dt.datetime(2026, 11, 25, 21, 0, 1, 123456, tzinfo=dt.UTC)
    u = uuid.uuid4()
    rows = [
        [True, -2, 2**31 - 1, -(2**63), 1.5, float("inf"), "a'b\\c\n,(x)&=%é", "short",
         b"\x00\xff", '{"a": [1, null]}', "-12345678901234567890.0000000001", micros(ts),
         (dt.date(1999, 12, 31) - EPOCH.date()).days, u.bytes],
        [None] * 14,
        [False, 0, 0, 0, float("nan"), -0.0, "", "", b"", "null", "NaN", 0, 0, bytes(16)],
    ]  # fmt: skip
    types = ["bool", "int2", "int4", "int8", "float4", "float8", "text", "varchar", "bytea",
             "jsonb", "numeric", "timestamptz", "date", "uuid"]  # fmt: skip
    payload = encode_copy(rows, types)
    with provider_db.connect() as conn:
        with conn.cursor().copy("copy t from stdin (format binary)") as copy:
            copy.write(payload)
        got = conn.execute("select * from t order by i2 nulls last").fetchall()
        first = got[0]
        assert first[:4] == (True, -2, 2**31 - 1, -(2**63))
        assert first[4] == 1.5 and first[5] == float("inf")
        assert first[6] == "a'b\\c\n,(x)&=%é" and first[7] == "short"
        assert first[8] == b"\x00\xff" and first[9] == {"a": [1, None]}
        assert first[10] == Decimal("-12345678901234567890.0000000001")
        assert first[11] == ts and first[12] == dt.date(1999, 12, 31) and first[13] == u
        zero = got[1]
        assert zero[4] != zero[4] and str(zero[5]) == "-0.0" and zero[10].is_nan()
        assert got[2] == (None,) * 14
        # numeric keeps its display scale exactly
        assert conn.execute("select n::text from t where i2 = -2").fetchone() == (
            "-12345678901234567890.0000000001",
        )


@pytest.mark.parametrize(
    "value", ["0", "0.00", "1", "-1", "9999", "10000", "0.0001", "123.4500", "NaN", "Infinity"]
)
def test_numeric_text_matches_server(provider_db, value):
    provider_db.sql("create table n (x numeric)")
    with provider_db.connect() as conn:
        with conn.cursor().copy("copy n from stdin (format binary)") as copy:
            copy.write(encode_copy([[value]], ["numeric"]))
        (got,) = conn.execute("select x::text from n").fetchone()
        (want,) = conn.execute("select %s::numeric::text", [value]).fetchone()
        assert got == want
