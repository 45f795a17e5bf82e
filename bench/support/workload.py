"""The bench's data: pgbench's four tables (with a key on history, which every tool needs),
filled server-side, and pgbench's TPC-B-like mix (3 updates + 1 insert per transaction)."""

from __future__ import annotations

from typing import Any

import psycopg

TABLES = ("pgbench_branches", "pgbench_tellers", "pgbench_accounts", "pgbench_history")

# Like `pgbench -i`, plus a primary key on history (trigger capture needs one) and no foreign
# keys (pgbench's default). `bench_mix` lives in its own schema so that no tool replicates it.
SCHEMA = """
create table pgbench_branches (bid int primary key, bbalance int not null, filler char(88));
create table pgbench_tellers (tid int primary key, bid int not null, tbalance int not null,
                              filler char(84));
create table pgbench_accounts (aid int primary key, bid int not null, abalance int not null,
                               filler char(84));
create table pgbench_history (hid bigserial primary key, tid int, bid int, aid int, delta int,
                              mtime timestamp, filler char(22));
"""

PROVIDER_EXTRA = """
create schema bench;
create procedure bench.mix(txns int, per_commit int, scale int)
language plpgsql as $$
declare
    v_aid int; v_bid int; v_tid int; v_delta int;
begin
    for i in 1..txns loop
        v_aid := 1 + floor(random() * 100000 * scale)::int;
        v_bid := 1 + floor(random() * scale)::int;
        v_tid := 1 + floor(random() * 10 * scale)::int;
        v_delta := floor(random() * 10001)::int - 5000;
        update pgbench_accounts set abalance = abalance + v_delta where aid = v_aid;
        update pgbench_tellers set tbalance = tbalance + v_delta where tid = v_tid;
        update pgbench_branches set bbalance = bbalance + v_delta where bid = v_bid;
        insert into pgbench_history (tid, bid, aid, delta, mtime)
            values (v_tid, v_bid, v_aid, v_delta, clock_timestamp());
        if i % per_commit = 0 then
            commit;
        end if;
    end loop;
end $$;
-- Every row event touches its own key: transaction i updates account i, deletes account
-- 100000 * scale + 1 - i and inserts a new history row, so no change can be coalesced away.
create procedure bench.distinct(txns int, scale int)
language plpgsql as $$
begin
    if 2 * txns > 100000 * scale then
        raise 'bench.distinct: % transactions need scale %', txns, ceil(txns / 50000.0);
    end if;
    for i in 1..txns loop
        update pgbench_accounts set abalance = abalance + i where aid = i;
        delete from pgbench_accounts where aid = 100000 * scale + 1 - i;
        insert into pgbench_history (tid, bid, aid, delta, mtime)
            values (1, 1, i, i, clock_timestamp());
        commit;
    end loop;
end $$;
"""

EVENTS_PER_TXN = 4

ONE_TXN = (
    "update pgbench_accounts set abalance = abalance + %(delta)s where aid = %(aid)s",
    "update pgbench_tellers set tbalance = tbalance + %(delta)s where tid = %(tid)s",
    "update pgbench_branches set bbalance = bbalance + %(delta)s where bid = %(bid)s",
)
ONE_TXN_HISTORY = (
    "insert into pgbench_history (tid, bid, aid, delta, mtime)"
    " values (%(tid)s, %(bid)s, %(aid)s, %(delta)s, clock_timestamp()) returning hid"
)


def create_schema(conn: psycopg.Connection[Any], provider: bool) -> None:
    conn.execute(SCHEMA)
    if provider:
        conn.execute(PROVIDER_EXTRA)


def fill(conn: psycopg.Connection[Any], scale: int) -> None:
    """pgbench's initial data for `scale` (100000 accounts per unit), then VACUUM ANALYZE."""
    conn.execute(
        "insert into pgbench_branches select b, 0, '' from generate_series(1, %s) b", [scale]
    )
    conn.execute(
        "insert into pgbench_tellers select t, (t - 1) / 10 + 1, 0, ''"
        " from generate_series(1, %s) t",
        [10 * scale],
    )
    conn.execute(
        "insert into pgbench_accounts select a, (a - 1) / 100000 + 1, 0, ''"
        " from generate_series(1, %s) a",
        [100000 * scale],
    )
    for table in TABLES:
        conn.execute(f"vacuum analyze {table}")


def mix(conn: psycopg.Connection[Any], txns: int, scale: int, per_commit: int = 1) -> None:
    """Runs `txns` pgbench transactions server-side, committing every `per_commit` of them
    (conn must be in autocommit mode, so the procedure can commit)."""
    conn.execute("call bench.mix(%s, %s, %s)", [txns, per_commit, scale])


DISTINCT_EVENTS_PER_TXN = 3


def distinct_scale(txns: int) -> int:
    """The pgbench scale whose accounts `distinct` needs for `txns` transactions."""
    return max(1, -(-2 * txns // 100000))


def distinct(conn: psycopg.Connection[Any], txns: int, scale: int) -> None:
    """Runs `txns` transactions server-side, one commit each, whose row events (an update, a
    delete, an insert) each touch a key no other event touches (conn in autocommit mode)."""
    conn.execute("call bench.distinct(%s, %s)", [txns, scale])


def last_hid(conn: psycopg.Connection[Any]) -> int:
    """The newest history row; with one writer, history ids grow in commit order, so a
    subscriber that has it has everything committed before it."""
    row = conn.execute("select coalesce(max(hid), 0) from pgbench_history").fetchone()
    assert row is not None
    return int(row[0])
