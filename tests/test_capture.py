"""Capture triggers: every type family round-trips exactly through record_send payloads, the
Rust decoder and binary COPY; key changes are kept; bad tables are refused clearly."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from londiste_rs._native import BatchDecoder, StepKind
from londiste_rs.errors import TableError
from londiste_rs.pg.catalog import table_layout, type_map
from londiste_rs.replication.batches import EVENT_COLUMNS
from londiste_rs.store import queue, schema
from tests.fix_nodes import tick

Q = "cq"

TYPES_DDL = """
create type mood as enum ('sad', 'ok', 'so "happy"');
create type pair as (a int, b text, m mood);
create domain posint as int check (value > 0);
create table src (
    id int primary key,
    i2 int2, i8 int8, n numeric, f4 float4, f8 float8, b bool,
    t text, vc varchar(20), ch char(3), by bytea,
    ts timestamp, tz timestamptz, d date, tm time, ttz timetz, iv interval,
    j json, jb jsonb, u uuid, ip inet, cid cidr, mac macaddr, mac8 macaddr8,
    arr int[], arr2 text[], e mood, ea mood[], c pair, ca pair[], dom posint,
    r int4range, tr tstzrange, mr int4multirange, bits varbit, pt point, mn money,
    tsv tsvector, g int generated always as (id * 2) stored
);
"""

ROWS = r"""
insert into src (id) values (1);
insert into src values (2, -32768, 9223372036854775807, 'NaN', 'NaN', '-Infinity', true,
    'quote '' dq " back\slash
newline, comma (paren) & amp = eq % pct é 日本 🎉', 'x', 'ab',
    '\x00ff5c27'::bytea, 'infinity', '-infinity', '4713-01-01 BC', '24:00:00', '23:59:59+14',
    '-178000000 years 1 mon -2 days 00:00:00.000001',
    '{"a": [1, 2.50, "x\"y"], "b": null}', '{"z": 1e400, "a": {"k": []}}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1/64', '10.0.0.0/8', '08:00:2b:01:02:03',
    '08:00:2b:01:02:03:04:05', '{{1,NULL},{3,4}}', '{"a,b","c\"d",NULL,"","NULL"}', 'so "happy"',
    '{sad,NULL,"so \"happy\""}', '(7,"x,y",ok)', '{"(1,a,sad)",NULL,"(,,)"}', 42,
    '[1,10)', '[2020-01-01 00:00+00,infinity)', '{[1,3), [5,7)}', '10110', '(1.5,-2)', '-12.34',
    'fat:1 cats:2 rat''s:3');
insert into src (id, n, f4, f8, ts, tz, iv, t, arr)
values (3, '-123456789012345678901234567890.123456789012345678901', '-0', '-0',
        '294276-12-31 23:59:59.999999', 'epoch', '0', '', '{}'),
       (4, '0.000000000000000000000000000001', 'Infinity', '1e-320', '1999-12-31 23:59:59.5',
        '2000-02-29 12:00+05:30', '1 day', repeat('big ', 300000), '[5:6]={1,2}');
"""


def install_queue(db: Any) -> Any:
    conn = db.connect()
    schema.install(conn)
    queue.create_queue(conn, Q)
    queue.register_consumer(conn, Q, "c")
    return conn


def replicate(
    conn: Any, source: str, target: str, dst: Any = None, consumer: str = "c"
) -> dict[str, int]:
    """Takes the next batch, decodes it with the Rust decoder and applies its steps to
    `target` (same columns as `source`; on `dst`, another database, when given) with binary
    COPY; returns the decoder's stats."""
    dst = dst or conn
    tick(conn, Q)
    batch = queue.next_batch(conn, Q, consumer)
    assert batch is not None
    src = table_layout(conn, source)
    out_names = [src.columns[i].name for i in src.out_cols]
    global_name = conn.execute(
        "select format('%%I.%%I', relnamespace::regnamespace::text, relname)"
        " from pg_class where oid = %s::regclass",
        [source],
    ).fetchone()[0]
    dec = BatchDecoder(exact_order=True)
    dec.add_table(global_name, src.ncols, src.key_cols, src.out_cols, src.walk_cols)
    dec.set_type_map(type_map(dst, [src]))
    query = f"copy (select {EVENT_COLUMNS} from ({queue.batch_event_sql(conn, batch.batch_id)})"
    query += " ev) to stdout (format binary)"
    with conn.cursor().copy(query) as copy:
        for chunk in copy:
            dec.feed(chunk)
    dec.finish()
    key_names = [src.columns[k].name for k in src.key_cols]
    tgt = sql.Identifier(target)
    for step in dec.drain():
        kind, payload, encoding = step.kind, step.payload, step.encoding
        if encoding:
            dst.execute(sql.SQL("set client_encoding = {}").format(sql.Literal(encoding)))
        if kind == StepKind.TRUNCATE:
            dst.execute(sql.SQL("truncate {}").format(tgt))
        else:
            # Stage the payload, delete the keys it names, insert the rows (any row step).
            names = key_names if kind == StepKind.DELETE else out_names
            cols = sql.SQL(", ").join(map(sql.Identifier, names))
            match = sql.SQL(" and ").join(
                sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key_names
            )
            with dst.transaction():
                dst.execute(
                    sql.SQL(
                        "create temp table s on commit drop as select {} from {} limit 0"
                    ).format(cols, tgt)
                )
                with dst.cursor().copy("copy s from stdin (format binary)") as cp:
                    cp.write(payload)
                dst.execute(sql.SQL("delete from {} t using s where {}").format(tgt, match))
                if kind != StepKind.DELETE:
                    dst.execute(sql.SQL("insert into {} ({}) select * from s").format(tgt, cols))
        if encoding:
            dst.execute("reset client_encoding")
    queue.finish_batch(conn, batch.batch_id)
    return dec.stats()


def rows_as_text(conn: Any, table: str) -> list[str]:
    q = sql.SQL("select _row::text from {} _row order by id").format(sql.Identifier(table))
    return [r[0] for r in conn.execute(q).fetchall()]


def test_every_type_family_round_trips(provider_db):
    conn = install_queue(provider_db)
    conn.execute(TYPES_DDL.encode())
    conn.execute("create table dst (like src including generated)")
    queue.capture_attach(conn, Q, "src")
    conn.execute(ROWS.encode())
    replicate(conn, "src", "dst")
    assert rows_as_text(conn, "dst") == rows_as_text(conn, "src")
    assert len(rows_as_text(conn, "src")[3]) > 1_000_000


def test_updates_deletes_key_changes_and_truncate(provider_db):
    conn = install_queue(provider_db)
    conn.execute(
        "create table src (id int, k text, v text, primary key (k, id));"
        "create table dst (like src including all)"
    )
    queue.capture_attach(conn, Q, "src")
    conn.execute("insert into src select i, 'k' || i, 'v' from generate_series(1, 6) i")
    replicate(conn, "src", "dst")
    conn.execute("update src set v = 'w' where id = 1")
    conn.execute("update src set k = 'moved' where id = 2")  # primary key update
    conn.execute("update src set id = 30, k = 'k3x' where id = 3")
    conn.execute("delete from src where id = 4")
    events = conn.execute(
        "select ev_type, ev_extra2 is not null from londiste_rs.event_1 order by ev_id desc limit 4"
    ).fetchall()
    assert events == [("D", False), ("U", True), ("U", True), ("U", False)]
    replicate(conn, "src", "dst")
    assert rows_as_text(conn, "dst") == rows_as_text(conn, "src")
    conn.execute("truncate src")
    conn.execute("insert into src values (9, 'after', 'truncate')")
    replicate(conn, "src", "dst")
    assert rows_as_text(conn, "dst") == ["(9,after,truncate)"]


def test_client_encoding_is_recorded(provider_db):
    conn = install_queue(provider_db)
    conn.execute("create table src (id int primary key, t text); create table dst (like src)")
    queue.capture_attach(conn, Q, "src")
    with provider_db.connect() as latin:
        latin.execute("set client_encoding = 'LATIN1'")
        latin.execute("insert into src values (1, %s)", ["café"])
    conn.execute("insert into src values (2, 'plain UTF8 é')")
    extra4 = conn.execute("select ev_extra4 from londiste_rs.event_1 order by ev_id").fetchall()
    assert extra4 == [("LATIN1",), (None,)]
    replicate(conn, "src", "dst")
    assert rows_as_text(conn, "dst") == ["(1,café)", '(2,"plain UTF8 é")']


def test_other_roles_write_without_rights_on_the_queue(provider_db):
    conn = install_queue(provider_db)
    conn.execute("create table src (id int primary key, t text); create table dst (like src)")
    queue.capture_attach(conn, Q, "src")
    with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
        admin.execute("drop role if exists lrs_app")
        admin.execute("create role lrs_app login")
    try:
        conn.execute("grant insert, update, delete on src to lrs_app")
        app_dsn = provider_db.dsn.replace("user=lrs_owner", "user=lrs_app")
        with psycopg.connect(app_dsn, autocommit=True) as app:
            app.execute("insert into src values (1, 'from app')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("select * from londiste_rs.event_1")
        replicate(conn, "src", "dst")
        assert rows_as_text(conn, "dst") == ['(1,"from app")']
    finally:
        conn.execute("revoke all on src from lrs_app")
        with psycopg.connect(provider_db.admin_dsn, autocommit=True) as admin:
            admin.execute("drop role lrs_app")


def test_tables_that_cannot_be_captured_are_refused(provider_db):
    conn = install_queue(provider_db)
    conn.execute(
        "create table nopk (a int);"
        'create table "Odd Name" (id int primary key, acl aclitem);'
        "create table parted (id int primary key) partition by range (id)"
    )
    cases = {
        "nopk": "cannot capture public.nopk: it has no primary key; add one "
        "(ALTER TABLE public.nopk ADD PRIMARY KEY (...))",
        '"Odd Name"': 'cannot capture public."Odd Name": column acl has type aclitem, '
        "which has no binary send function",
        "parted": "it is a partitioned table; add its partitions instead",
        "no_such_table": 'relation "no_such_table" does not exist',
    }
    for table, text in cases.items():
        with pytest.raises(TableError) as err:
            queue.capture_attach(conn, Q, table)
        assert text in str(err.value) and "\n" not in str(err.value)
    triggers = conn.execute("select count(*) from pg_trigger where not tgisinternal").fetchone()
    assert triggers == (0,)


def test_detach_stops_capture(provider_db):
    conn = install_queue(provider_db)
    conn.execute("create table src (id int primary key)")
    queue.capture_attach(conn, Q, "src")
    queue.capture_attach(conn, Q, "src")  # again: replaced, not doubled
    conn.execute("insert into src values (1)")
    assert queue.capture_detach(conn, Q, "src")
    assert not queue.capture_detach(conn, Q, "src")
    conn.execute("insert into src values (2)")
    count = conn.execute("select count(*) from londiste_rs.event_1").fetchone()
    assert count == (1,)


text_values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
numerics = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.adjusted() < 100
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.none() | text_values,
            st.none() | st.floats(width=64),
            st.none() | numerics,
            st.none() | st.binary(max_size=64),
            st.none() | st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=5),
            st.none() | st.lists(st.none() | text_values, max_size=4),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_encoding_round_trips_random_values(provider_db, rows):
    with provider_db.connect() as conn:
        if not conn.execute("select to_regclass('src')").fetchone()[0]:
            schema.install(conn)
            queue.create_queue(conn, Q)
            queue.register_consumer(conn, Q, "c")
            conn.execute(
                "create table src (id int primary key, t text, f float8, n numeric, b bytea,"
                " a int[], ta text[]); create table dst (like src)"
            )
            queue.capture_attach(conn, Q, "src")
        conn.execute("truncate src")
        with conn.cursor() as cur:
            cur.executemany(
                "insert into src values (%s, %s, %s, %s, %s, %s, %s)",
                [(i, *r) for i, r in enumerate(rows)],
            )
        replicate(conn, "src", "dst")
        assert rows_as_text(conn, "dst") == rows_as_text(conn, "src")


def test_user_defined_types_get_the_subscribers_oids(provider_db, subscriber_db):
    """Arrays of enums and composites embed type OIDs, which differ in another database: the
    layout's walked columns and the type map let the decoder rewrite them."""
    conn = install_queue(provider_db)
    conn.execute(TYPES_DDL.encode())
    queue.capture_attach(conn, Q, "src")
    conn.execute(ROWS.encode())
    layout = table_layout(conn, "src")
    walked = {layout.columns[i].name for i in layout.walk_cols}
    assert walked == {"ea", "c", "ca"}
    with subscriber_db.connect() as dst:
        dst.execute("create type unrelated as enum ('x')")  # shifts every OID that follows
        dst.execute(TYPES_DDL.replace("create table src", "create table dst").encode())
        assert type_map(dst, [layout])[layout.columns[27].type_oid][1] == "array"
        replicate(conn, "src", "dst", dst)
        assert rows_as_text(dst, "dst") == rows_as_text(conn, "src")
        dst.execute("drop type pair cascade")
        with pytest.raises(TableError, match=r"type public\.pair used by table src does not exist"):
            type_map(dst, [layout])


def test_text_the_client_encoding_cannot_hold_is_sent_in_the_database_encoding(provider_db):
    """A LATIN1 writer updating a row that holds Japanese text must not fail: the trigger
    falls back to the database encoding for that row."""
    conn = install_queue(provider_db)
    conn.execute(
        "create table src (id int primary key, t text, n int); create table dst (like src)"
    )
    queue.capture_attach(conn, Q, "src")
    conn.execute("insert into src values (1, '日本', 0), (2, 'café', 0)")
    with provider_db.connect() as latin:
        latin.execute("set client_encoding = 'LATIN1'")
        latin.execute("update src set n = n + 1")
        assert latin.execute("show client_encoding").fetchone() == ("LATIN1",)
    extra4 = conn.execute("select ev_extra4 from londiste_rs.event_1 order by ev_id").fetchall()
    assert extra4 == [(None,), (None,), (None,), ("LATIN1",)]
    replicate(conn, "src", "dst")
    assert rows_as_text(conn, "dst") == rows_as_text(conn, "src") == ["(1,日本,1)", "(2,café,1)"]
