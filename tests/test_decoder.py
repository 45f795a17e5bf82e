"""The Rust batch decoder against a real server.

Events are captured the way the capture trigger encodes them (docs/internals.md section 3) by a
small PL/pgSQL trigger written here, read back with binary COPY, decoded in small chunks, and
the resulting steps applied to a copy of the table through staging tables; the copy must then
equal the source row for row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from londiste_rs._native import BatchDecoder, Step, StepKind
from londiste_rs.errors import DecodeError
from londiste_rs.replication.batches import EVENT_COLUMNS

EVENTS_SQL = """
create table events (
    ev_id bigserial primary key,
    ev_txid xid8 not null default pg_current_xact_id(),
    ev_type text not null,
    ev_extra1 text,
    ev_data bytea,
    ev_extra2 bytea,
    ev_extra4 text,
    ev_extra3 text
);
"""

# The capture encoding of docs/internals.md section 3, for a table whose key is `id`.
CAPTURE_SQL = """
create function capture() returns trigger language plpgsql as $$
declare
    tbl text := quote_ident(tg_table_schema) || '.' || quote_ident(tg_table_name);
begin
    if tg_op = 'TRUNCATE' then
        insert into events (ev_type, ev_extra1) values ('R', tbl);
    elsif tg_op = 'INSERT' then
        insert into events (ev_type, ev_extra1, ev_data) values ('I', tbl, record_send(new));
    elsif tg_op = 'UPDATE' then
        insert into events (ev_type, ev_extra1, ev_data, ev_extra2)
        values ('U', tbl, record_send(new),
                case when old.id is distinct from new.id then record_send(row(old.id)) end);
    else
        insert into events (ev_type, ev_extra1, ev_data)
        values ('D', tbl, record_send(row(old.id)));
    end if;
    return null;
end $$;
"""

EVENTS_COPY = f"copy (select {EVENT_COLUMNS} from events order by ev_id) to stdout (format binary)"

ODD_TEXT = 'a\'b\\c\n,(x)&=%é\t"{}" ☃ NULL'


def capture(conn: psycopg.Connection[Any], table: str) -> None:
    for when in ("insert or update or delete on {} for each row", "truncate on {}"):
        conn.execute(
            sql.SQL("create trigger {} after " + when + " execute function capture()").format(
                sql.Identifier(f"cap_{when[:3]}"), sql.Identifier(table)
            )
        )


def setup(conn: psycopg.Connection[Any], ddl: str, tables: Iterable[str]) -> None:
    conn.execute(EVENTS_SQL)
    conn.execute(CAPTURE_SQL)
    conn.execute(ddl)
    for t in tables:
        capture(conn, t)


def event_stream(conn: psycopg.Connection[Any]) -> bytes:
    out = bytearray()
    with conn.cursor().copy(EVENTS_COPY) as cp:
        for block in cp:
            out += block
    return bytes(out)


def decode(
    stream: bytes,
    tables: list[tuple[str, int]],
    *,
    exact: bool = False,
    chunk: int = 7,
    chunk_bytes: int = 64 << 20,
    skip_snapshot: tuple[int, int, list[int]] | None = None,
) -> list[Step]:
    """Steps for `stream`, fed in `chunk`-byte pieces, drained whenever the decoder asks."""
    dec = BatchDecoder(chunk_bytes=chunk_bytes, exact_order=exact)
    for name, ncols in tables:
        dec.add_table(name, ncols, [0], list(range(ncols)), skip_snapshot=skip_snapshot)
    steps: list[Step] = []
    for i in range(0, len(stream), chunk):
        dec.feed(stream[i : i + chunk])
        if dec.pending_bytes() >= chunk_bytes:
            steps += dec.drain()
    dec.finish()
    steps += dec.drain()
    return steps


def apply(conn: psycopg.Connection[Any], steps: Iterable[Step], target: str) -> None:
    """Applies steps to `target` like the worker: staging by binary COPY, then set-based SQL."""
    t = sql.Identifier(target)
    cols = [r[0] for r in conn.execute(f"select * from {target} limit 0").description or []]
    upd = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in cols if c != "id"
    )
    set_from_stage = sql.SQL(", ").join(
        sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in cols if c != "id"
    )
    conn.execute(sql.SQL("create temp table if not exists up_stage (like {})").format(t))
    conn.execute("create temp table if not exists del_stage (id int)")
    for step in steps:
        kind, payload, rows, encoding = step.kind, step.payload, step.rows, step.encoding
        assert encoding is None
        if kind == StepKind.TRUNCATE:
            conn.execute(sql.SQL("truncate {}").format(t))
            continue
        stage = "del_stage" if kind == StepKind.DELETE else "up_stage"
        conn.execute(f"truncate {stage}")
        with conn.cursor().copy(f"copy {stage} from stdin (format binary)") as cp:
            cp.write(payload)
        if kind == StepKind.DELETE:
            q = sql.SQL("delete from {t} using del_stage s where {t}.id = s.id")
            cur = conn.execute(q.format(t=t))
        elif kind == StepKind.INSERT:  # keys known absent: a plain insert
            cur = conn.execute(sql.SQL("insert into {t} select * from up_stage").format(t=t))
            assert cur.rowcount == rows
        elif kind == StepKind.UPDATE:  # keys known present: every row is updated
            q = sql.SQL("update {t} set {u} from up_stage s where {t}.id = s.id")
            cur = conn.execute(q.format(t=t, u=set_from_stage))
            assert cur.rowcount == rows
        else:
            q = sql.SQL("insert into {t} select * from up_stage on conflict (id) do update set {u}")
            cur = conn.execute(q.format(t=t, u=upd))
        assert cur.rowcount <= rows


def rows_text(conn: psycopg.Connection[Any], table: str) -> list[tuple[str]]:
    return conn.execute(f"select t::text from {table} t order by id").fetchall()


TYPED_DDL = """
create table src (id int primary key, n numeric, arr int[], txt text, ts timestamptz,
                  j jsonb, b bytea, f float8);
create table dst (like src including all);
"""


def test_typed_table_round_trips_through_decoder(provider_db):
    with provider_db.connect() as conn:
        setup(conn, TYPED_DDL, ["src"])
        conn.execute(
            "insert into src select i, i * 1.50, array[i, null, -i], %s || i,"
            " '2026-01-01'::timestamptz + i * interval '1 hour', jsonb_build_object('k', i),"
            " decode(lpad(to_hex(i), 8, '0'), 'hex'), i / 3.0 from generate_series(1, 60) i",
            [ODD_TEXT],
        )
        with conn.transaction():
            conn.execute("update src set txt = txt || '!', arr = '{{1,2},{3,4}}' where id % 3 = 0")
            conn.execute("update src set id = id + 1000 where id % 7 = 0")  # key change
            conn.execute("update src set id = 7 where id = 1007")  # and back again
            conn.execute("delete from src where id % 5 = 0")
            conn.execute("insert into src (id, txt) values (5, ''), (10, null)")  # reinsert
            conn.execute("insert into src (id) values (999)")
            conn.execute("delete from src where id = 999")  # insert then delete
            conn.execute("update src set n = 'NaN', f = '-Infinity', j = 'null' where id = 2")
        stream = event_stream(conn)
        for exact in (False, True):
            conn.execute("truncate dst")
            steps = decode(stream, [("public.src", 8)], exact=exact)
            apply(conn, steps, "dst")
            assert rows_text(conn, "dst") == rows_text(conn, "src"), f"exact={exact}"
        assert len(rows_text(conn, "src")) == 60 - 12 + 2


def test_truncate_barrier_and_memory_bound(provider_db):
    with provider_db.connect() as conn:
        setup(conn, TYPED_DDL, ["src"])
        conn.execute(
            "insert into src (id, txt) select i, repeat('x', 200) from generate_series(1, 300) i"
        )
        conn.execute("truncate src")
        conn.execute(
            "insert into src (id, txt) select i, %s from generate_series(1, 400) i", [ODD_TEXT]
        )
        conn.execute("update src set id = -id where id <= 100")
        stream = event_stream(conn)
        chunk_bytes = 8 << 10
        steps = decode(stream, [("public.src", 8)], chunk=4096, chunk_bytes=chunk_bytes)
        kinds = [s.kind for s in steps]
        assert kinds.count(StepKind.TRUNCATE) == 1
        # nothing of the first 300 rows survives past the barrier, and steps stay small
        assert all(len(s.payload) < chunk_bytes + 1024 for s in steps)
        assert len(steps) > 10
        apply(conn, steps, "dst")
        assert rows_text(conn, "dst") == rows_text(conn, "src")


def test_exact_order_reproduces_a_unique_value_swap(provider_db):
    with provider_db.connect() as conn:
        ddl = """
            create table u (id int primary key, code text not null unique);
            create table u_copy (like u including all);
            insert into u values (1, 'a'), (2, 'b');
            insert into u_copy select * from u;
        """
        setup(conn, ddl, ["u"])
        with conn.transaction():
            conn.execute("update u set code = 'tmp' where id = 1")
            conn.execute("update u set code = 'a' where id = 2")
            conn.execute("update u set code = 'b' where id = 1")
        stream = event_stream(conn)
        coalesced = decode(stream, [("public.u", 2)])
        assert [(s.kind, s.rows) for s in coalesced] == [(StepKind.UPDATE, 2)]
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            apply(conn, coalesced, "u_copy")
        exact = decode(stream, [("public.u", 2)], exact=True)
        assert [(s.kind, s.rows) for s in exact] == [(StepKind.UPSERT, 2), (StepKind.UPSERT, 1)]
        apply(conn, exact, "u_copy")
        assert rows_text(conn, "u_copy") == [("(1,b)",), ("(2,a)",)]


def test_skip_snapshot_joins_the_stream_after_an_initial_copy(provider_db):
    """Events visible to the copy's snapshot are skipped; one in progress during it is not."""
    with provider_db.connect() as conn, provider_db.connect() as other:
        setup(conn, TYPED_DDL, ["src"])
        conn.execute("insert into src (id, txt) select i, 'before' from generate_series(1, 20) i")
        other.execute("begin")
        other.execute("update src set txt = 'in progress' where id <= 5")
        # a later commit lifts the snapshot's xmax past the open transaction, putting it in xip
        conn.execute("insert into src (id, txt) values (50, 'between')")
        with conn.transaction():
            conn.execute("set transaction isolation level repeatable read")
            snap = conn.execute(
                "select pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,"
                " array(select pg_snapshot_xip(s)::text::bigint)"
                " from pg_current_snapshot() s"
            ).fetchone()
            conn.execute("insert into dst select * from src")
        other.execute("commit")
        conn.execute("delete from src where id > 15")
        conn.execute("insert into src (id, txt) values (100, 'after')")
        assert snap is not None
        xmin, xmax, xip = snap
        assert xip, "the open transaction must be in the snapshot's xip"
        dec = BatchDecoder()
        dec.add_table("public.src", 8, [0], list(range(8)), skip_snapshot=(xmin, xmax, xip))
        dec.feed(memoryview(event_stream(conn)))  # any buffer is accepted
        dec.finish()
        apply(conn, dec.drain(), "dst")
        assert rows_text(conn, "dst") == rows_text(conn, "src")
        stats = dec.stats()
        assert stats["skipped_snapshot"] == 21
        assert (stats["updates"], stats["deletes"], stats["inserts"]) == (5, 6, 1)


def test_other_events_unknown_tables_and_malformed_events(provider_db):
    with provider_db.connect() as conn:
        setup(conn, TYPED_DDL + "create table other (id int primary key);", ["src", "other"])
        conn.execute("insert into src (id) values (1)")
        conn.execute("insert into other values (1)")
        conn.execute(
            "insert into events (ev_type, ev_extra1, ev_data)"
            " values ('londiste.add-table', 'public.src', convert_to('x', 'UTF8'))"
        )
        dec = BatchDecoder()
        dec.add_table("public.src", 8, [0], list(range(8)))
        dec.feed(event_stream(conn))
        dec.finish()
        assert [s.kind for s in dec.drain()] == [StepKind.INSERT]
        assert dec.other_events() == [(3, "londiste.add-table", "public.src", b"x")]
        assert dec.stats()["skipped_table"] == 1

        (bad_id,) = conn.execute(
            "insert into events (ev_type, ev_extra1, ev_data)"
            " values ('I', 'public.src', '\\x0000000100'::bytea) returning ev_id"
        ).fetchone()
        dec = BatchDecoder()
        dec.add_table("public.src", 8, [0], list(range(8)))
        with pytest.raises(
            DecodeError, match=rf"^event {bad_id}: ev_data of table public.src"
        ) as e:
            dec.feed(event_stream(conn))
        assert e.value.ev_id == bad_id
        with pytest.raises(ValueError, match=r"feed\(\) after an error") as u:
            dec.feed(b"")
        assert not isinstance(u.value, DecodeError)  # a wrong call, not a bad stream
        dec = BatchDecoder()
        dec.add_table("public.src", 7, [0], list(range(7)))
        with pytest.raises(DecodeError, match=r"^event 1: row of table public.src has 8 fields"):
            dec.feed(event_stream(conn))
        dec = BatchDecoder()
        dec.feed(event_stream(conn)[:-1])
        with pytest.raises(DecodeError, match="ends before its trailer") as e:
            dec.finish()
        assert e.value.ev_id is None
        assert isinstance(e.value, ValueError)  # callers catching ValueError still do


def test_type_map_rewrites_enum_array_oids(provider_db, subscriber_db):
    """Enum OIDs differ between databases; array values embed them. PostgreSQL only checks
    embedded OIDs of builtin types, so both forms apply, but with a type map the payload carries
    the subscriber's OIDs."""
    ddl = "create type mood as enum ('sad', 'ok', 'happy');" + (
        " create table m (id int primary key, moods mood[]);"
    )
    with provider_db.connect() as src, subscriber_db.connect() as dst:
        dst.execute("create type filler as enum ('x')")  # shifts the subscriber's OIDs
        dst.execute(ddl)
        setup(src, ddl, ["m"])
        src.execute("insert into m values (1, '{happy,null,sad}'), (2, '{}'), (3, null)")
        stream = event_stream(src)
        oids = "select 'mood'::regtype::oid::int, 'mood[]'::regtype::oid::int"
        (s_enum, s_arr), (d_enum, d_arr) = (
            src.execute(oids).fetchone(),
            dst.execute(oids).fetchone(),
        )
        assert s_enum != d_enum

        def embedded(payload: bytes, oid: int) -> int:
            return payload.count(oid.to_bytes(4, "big"))

        (plain,) = decode(stream, [("public.m", 2)])
        assert (embedded(plain.payload, s_enum), embedded(plain.payload, d_enum)) == (2, 0)

        dec = BatchDecoder()
        dec.add_table("public.m", 2, [0], [0, 1], walk_cols=[1])
        dec.set_type_map({s_enum: (d_enum, "scalar", None), s_arr: (d_arr, "array", s_enum)})
        dec.feed(stream)
        dec.finish()
        steps = dec.drain()
        assert (embedded(steps[0].payload, s_enum), embedded(steps[0].payload, d_enum)) == (0, 2)
        apply(dst, steps, "m")
        assert rows_text(dst, "m") == rows_text(src, "m")
        with pytest.raises(ValueError, match='unknown kind "enum"'):
            dec.set_type_map({s_enum: (d_enum, "enum", None)})
