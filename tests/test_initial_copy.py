"""The initial copy between two separate clusters: ranges, snapshot exactness, column rules,
index/FK deferral, progress."""

from __future__ import annotations

import logging
import threading

import pytest

from londiste_rs.errors import TableError
from londiste_rs.progress import Progress
from londiste_rs.tables.initial_copy import CopyFailed, copy_table, copy_tables
from londiste_rs.waiting import wait_for

ACCOUNTS = "create table {} (aid int primary key, bid int, abalance int, filler char(84))"


def digest(db, table: str, key: str = "aid") -> tuple[int, str]:
    row = db.sql(f"select count(*), md5(coalesce(string_agg(t::text, '|' order by {key}), ''))"
                 f" from {table} t")  # fmt: skip
    return row[0]


def test_ranges_in_parallel_equal_the_source(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        db.sql(ACCOUNTS.format("accounts"))
    provider_db.sql(
        "insert into accounts select g, g % 7, g * 3 - 100000, md5(g::text)"
        " from generate_series(1, 200000) g"
    )
    provider_db.sql("delete from accounts where aid % 1000 = 0")  # holes in the heap
    subscriber_db.sql("insert into accounts values (-1, 0, 0, 'stale row, truncated')")
    seen: list[Progress] = []
    res = copy_table(
        provider_db.dsn, subscriber_db.dsn, "accounts", jobs=4, min_range_bytes=1,
        progress=seen.append, progress_interval=0.05,
    )  # fmt: skip
    assert res.ranges == 4 and res.format == "binary"
    assert res.rows == 199800
    assert digest(subscriber_db, "accounts") == digest(provider_db, "accounts")
    assert seen[-1].done and seen[-1].rows == 199800
    assert all(p.rows <= 199800 for p in seen)


def test_snapshot_is_exact_under_concurrent_writers(provider_db, subscriber_db):
    """Writers commit on the provider before, during and after the copy. A writer's row is in
    the copy exactly when the returned snapshot sees the writer's transaction."""
    for db in (provider_db, subscriber_db):
        db.sql("create table w (id bigint primary key, txid xid8, pad text)")
    provider_db.sql(
        "insert into w select -g, '0', repeat('x', 200) from generate_series(1, 100000) g"
    )
    stop = threading.Event()
    committed: list[tuple[int, int]] = []  # (id, txid)
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            with provider_db.connect(autocommit=False) as conn:
                for i in range(base, base + 1_000_000):
                    if stop.is_set():
                        return
                    txid = conn.execute(
                        "insert into w values (%s, pg_current_xact_id(), 'w')"
                        " returning txid::text::int8",
                        [i],
                    ).fetchone()[0]
                    conn.execute("select pg_sleep(0.002)")  # keep transactions in flight
                    conn.commit()
                    committed.append((i, txid))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k * 10_000_000,)) for k in (1, 2, 3)]
    for t in threads:
        t.start()
    try:
        wait_for("writers to commit", lambda: len(committed) >= 30, timeout=60)
        res = copy_table(provider_db.dsn, subscriber_db.dsn, "w", jobs=3, min_range_bytes=1)
        after = len(committed)
        wait_for("writers to commit after the copy", lambda: len(committed) >= after + 30)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert res.ranges == 3
    copied = {r[0] for r in subscriber_db.sql("select id from w where id > 0")}
    visible = {i for i, txid in committed if res.snapshot.visible(txid)}
    assert visible and len(visible) < len(committed)
    assert copied == visible
    # The server agrees with Snapshot.visible on every writer's transaction.
    server = dict(
        provider_db.sql(
            "select x::text::int8, pg_visible_in_snapshot(x, %s::pg_snapshot)"
            " from unnest(%s::text[]::xid8[]) x",
            [str(res.snapshot), [str(t) for _, t in committed]],
        )
    )
    assert server == {t: res.snapshot.visible(t) for _, t in committed}
    assert subscriber_db.sql("select count(*) from w where id < 0")[0][0] == 100000


def test_generated_and_identity_columns(provider_db, subscriber_db):
    ddl = (
        "create table g (id int generated always as identity primary key, a int,"
        " b int generated always as (a * 2) stored, c text)"
    )
    provider_db.sql(ddl)
    subscriber_db.sql(ddl)
    provider_db.sql("insert into g (a, c) select g, 'r' || g from generate_series(1, 1000) g")
    provider_db.sql("delete from g where id % 3 = 0")
    res = copy_table(provider_db.dsn, subscriber_db.dsn, "public.g")
    assert res.columns == ("id", "a", "c") and res.rows == 667
    assert digest(subscriber_db, "g", "id") == digest(provider_db, "g", "id")


def test_mixed_case_quoted_names_and_common_columns(provider_db, subscriber_db, caplog):
    provider_db.sql('create schema "My Schema"')
    provider_db.sql(
        'create table "My Schema"."Mixed Case" ("Id" int primary key, "Some Col" text,'
        " only_here int)"
    )
    subscriber_db.sql('create schema "My Schema"')
    subscriber_db.sql(
        'create table "My Schema"."Mixed Case" ("Some Col" text, "Id" int primary key,'
        " local_only int default 7)"
    )
    provider_db.sql(
        """insert into "My Schema"."Mixed Case" select g, 'v' || g, g"""
        " from generate_series(1, 50) g"
    )
    with caplog.at_level(logging.WARNING):
        res = copy_table(provider_db.dsn, subscriber_db.dsn, '"My Schema"."Mixed Case"')
    assert res.rows == 50 and set(res.columns) == {"Id", "Some Col"}
    assert "only_here" in caplog.text and "local_only" in caplog.text
    got = subscriber_db.sql(
        'select sum("Id"), count(distinct "Some Col"), min(local_only)'
        ' from "My Schema"."Mixed Case"'
    )
    assert got == [(1275, 50, 7)]


def test_type_mismatch_names_the_column(provider_db, subscriber_db):
    provider_db.sql("create table m (id int primary key, v numeric(10,2))")
    subscriber_db.sql("create table m (id int primary key, v text)")
    provider_db.sql("insert into m values (1, 1.5)")
    with pytest.raises(TableError) as e:
        copy_table(provider_db.dsn, subscriber_db.dsn, "m")
    assert str(e.value).count("\n") == 0
    assert "'v'" in str(e.value) and "numeric(10,2)" in str(e.value) and "text" in str(e.value)


def test_missing_table_one_line(provider_db, subscriber_db):
    provider_db.sql("create table only_src (id int primary key)")
    with pytest.raises(TableError, match="does not exist on the subscriber"):
        copy_table(provider_db.dsn, subscriber_db.dsn, "only_src")
    with pytest.raises(TableError, match="does not exist on the provider"):
        copy_table(provider_db.dsn, subscriber_db.dsn, "nope")


def test_user_types_fall_back_to_text(provider_db, subscriber_db):
    """Arrays of enums carry the enum's OID in binary form, which differs between servers."""
    for db in (provider_db, subscriber_db):
        if db is subscriber_db:
            db.sql("create type other as enum ('z')")  # shift the OIDs on one side
        db.sql("create type mood as enum ('sad', 'ok', 'happy')")
        db.sql(
            "create table e (id int primary key, m mood, ms mood[], ts timestamptz,"
            " f float8, iv interval)"
        )
    provider_db.sql(
        "insert into e select g, 'ok', array['sad', 'happy']::mood[],"
        " '2026-01-01 12:34:56.789+02'::timestamptz + g * interval '1 day', 1.0 / g,"
        " g * interval '1 mon 2 days 3.5 seconds'"
        " from generate_series(1, 3000) g"
    )
    with provider_db.connect() as conn:  # a session whose own settings differ
        conn.execute(f"alter database {provider_db.name} set DateStyle = 'SQL, DMY'")
        conn.execute(f"alter database {provider_db.name} set IntervalStyle = 'sql_standard'")
    res = copy_table(provider_db.dsn, subscriber_db.dsn, "e", jobs=3, min_range_bytes=1)
    assert res.format == "text" and res.rows == 3000 and res.ranges == 3
    assert subscriber_db.sql("select count(*) from e where f = 1.0 / id") == [(3000,)]
    provider_db.sql(f"alter database {provider_db.name} reset all")  # same digest text
    assert digest(subscriber_db, "e", "id") == digest(provider_db, "e", "id")


def _secondary(db, table: str) -> list[tuple[str, ...]]:
    return db.sql(
        "select 'i', indexrelid::regclass::text, pg_get_indexdef(indexrelid) from pg_index"
        " where indrelid = %s::regclass"
        " union all select 'c', conname, pg_get_constraintdef(oid) || convalidated::text"
        " from pg_constraint where (conrelid = %s::regclass or confrelid = %s::regclass)"
        " and contype <> 'n' order by 1, 2",  # 18's NOT NULLs: never dropped for a load
        [table, table, table],
    )


def _fk_schema(db) -> None:
    db.sql("create table parent (id int primary key, code text, grp int)")
    db.sql("create index parent_code on parent (code)")
    db.sql("create unique index parent_grp_code on parent (grp, code) where grp > 0")
    db.sql("create table child (id int primary key, parent_id int references parent)")
    db.sql("alter table parent add constraint parent_self foreign key (grp) references parent")


def test_defer_indexes_restores_them(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        _fk_schema(db)
    provider_db.sql("insert into parent select g, 'c' || g, null from generate_series(1, 5000) g")
    subscriber_db.sql("insert into parent values (1, 'old', null)")
    subscriber_db.sql("insert into child values (1, 1)")
    before = _secondary(subscriber_db, "parent")
    res = copy_table(provider_db.dsn, subscriber_db.dsn, "parent", defer_indexes=True)
    assert res.rows == 5000
    assert _secondary(subscriber_db, "parent") == before
    assert digest(subscriber_db, "parent", "id") == digest(provider_db, "parent", "id")
    # The restored foreign keys are enforced.
    with pytest.raises(Exception, match="foreign key"):
        subscriber_db.sql("insert into child values (2, 999999)")


def test_referenced_target_needs_defer(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        _fk_schema(db)
    provider_db.sql("insert into parent values (1, 'a', null)")
    with pytest.raises(TableError, match="defer_indexes") as e:
        copy_table(provider_db.dsn, subscriber_db.dsn, "parent")
    assert "foreign key" in str(e.value) and "\n" not in str(e.value)


def test_defer_indexes_restored_when_the_copy_fails(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        _fk_schema(db)
    provider_db.sql("insert into parent select g, 'c' || g, null from generate_series(1, 5000) g")
    subscriber_db.sql("insert into parent values (42, 'already here', null)")
    before = _secondary(subscriber_db, "parent")
    with pytest.raises(TableError, match="duplicate key"):
        copy_table(
            provider_db.dsn, subscriber_db.dsn, "parent", defer_indexes=True, skip_truncate=True
        )
    assert _secondary(subscriber_db, "parent") == before
    assert subscriber_db.sql("select id, code from parent") == [(42, "already here")]


def test_failed_range_leaves_target_empty(provider_db, subscriber_db):
    """Several ranges commit separately; when one fails the others are cancelled and the
    target is emptied again, so no partial copy looks complete."""
    provider_db.sql("create table f (id int primary key, v int)")
    subscriber_db.sql("create table f (id int primary key, v int check (v < 19000))")
    subscriber_db.sql("create index f_v on f (v)")
    provider_db.sql("insert into f select g, g from generate_series(1, 20000) g")
    before = _secondary(subscriber_db, "f")
    with pytest.raises(TableError, match="check constraint"):
        copy_table(
            provider_db.dsn, subscriber_db.dsn, "f", jobs=4, min_range_bytes=1, defer_indexes=True
        )
    assert subscriber_db.sql("select count(*) from f") == [(0,)]
    # The primary key and the index were dropped for the load and are back.
    assert _secondary(subscriber_db, "f") == before
    assert [r[1] for r in before] == ["f_pkey", "f_v_check", "f_pkey", "f_v"]


def test_copy_tables_in_parallel(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        for t in ("a1", "a2", "a3"):
            db.sql(ACCOUNTS.format(t))
    subscriber_db.sql(ACCOUNTS.format("renamed"))
    for n, t in enumerate(("a1", "a2", "a3"), 1):
        provider_db.sql(f"insert into {t} select g, {n}, 0, '' from generate_series(1, {n}000) g")
    results = copy_tables(
        provider_db.dsn, subscriber_db.dsn, ["a1", "a2", ("a3", "renamed")], parallel_copies=3
    )
    assert [(str(r.source), str(r.dest), r.rows) for r in results] == [
        ("public.a1", "public.a1", 1000),
        ("public.a2", "public.a2", 2000),
        ("public.a3", "public.renamed", 3000),
    ]
    with pytest.raises(CopyFailed) as e:
        copy_tables(provider_db.dsn, subscriber_db.dsn, ["a1", "missing"], parallel_copies=2)
    assert [r.rows for r in e.value.results] == [1000] and list(e.value.errors) == ["missing"]


def test_copy_threads_keep_their_connections_from_table_to_table(provider_db, subscriber_db):
    """Many small tables: each copy thread writes all its tables through one subscriber
    connection (a statement trigger notes the writer's backend), not one per table."""
    subscriber_db.sql("create table writers (pid int)")
    subscriber_db.sql(
        "create function note_writer() returns trigger language plpgsql as"
        " $$ begin insert into public.writers values (pg_backend_pid()); return null; end $$"
    )
    names = [f"s{i:02d}" for i in range(12)]
    for t in names:
        for db in (provider_db, subscriber_db):
            db.sql(ACCOUNTS.format(t))
        provider_db.sql(f"insert into {t} select g, 1, 0, '' from generate_series(1, 50) g")
        subscriber_db.sql(f"create trigger w after insert on {t} execute function note_writer()")
    results = copy_tables(provider_db.dsn, subscriber_db.dsn, names, parallel_copies=2)
    assert [r.rows for r in results] == [50] * 12
    assert subscriber_db.sql("select count(*) from writers")[0][0] == 12
    assert subscriber_db.sql("select count(distinct pid) from writers")[0][0] <= 2
    for t in names:
        assert digest(subscriber_db, t) == digest(provider_db, t)


def test_copy_tables_largest_first(provider_db, subscriber_db):
    """The biggest heaps start first (no tail of big copies after the small ones); the results
    keep the order asked. A partitioned table counts with its partitions' size."""
    provider_db.sql("create table p (aid int primary key, filler text) partition by range (aid)")
    provider_db.sql("create table p1 partition of p for values from (0) to (100000)")
    subscriber_db.sql("create table p (aid int primary key, filler text)")
    for db in (provider_db, subscriber_db):
        for t in ("small", "big", "mid"):
            db.sql(ACCOUNTS.format(t))
    for t, n in (("small", 100), ("big", 5000), ("mid", 1000)):
        provider_db.sql(f"insert into {t} select g, 1, 0, '' from generate_series(1, {n}) g")
    provider_db.sql("insert into p select g, repeat('x', 100) from generate_series(1, 3000) g")
    finished: list[str] = []

    def note(p: Progress) -> None:
        if p.done:
            finished.append(p.table)

    results = copy_tables(provider_db.dsn, subscriber_db.dsn, ["small", "big", "p", "mid"],
                          parallel_copies=1, progress=note)  # fmt: skip
    assert finished == ["public.big", "public.p", "public.mid", "public.small"]
    assert [str(r.source) for r in results] == [
        "public.small", "public.big", "public.p", "public.mid",
    ]  # fmt: skip


def test_partitioned_source_and_target(provider_db, subscriber_db):
    """Rows of a partitioned table live in its partitions: read and emptied through the parent
    (FROM ONLY / TRUNCATE ONLY would see nothing or fail)."""
    for db in (provider_db, subscriber_db):
        db.sql("create table p (id int, k int, primary key (id, k)) partition by range (k)")
        db.sql("create table p1 partition of p for values from (0) to (10)")
        db.sql("create table p2 partition of p for values from (10) to (20)")
    subscriber_db.sql("insert into p values (-5, 15)")
    provider_db.sql("insert into p select g, g % 20 from generate_series(1, 3000) g")
    provider_db.sql("analyze p")
    seen: list[Progress] = []
    res = copy_table(provider_db.dsn, subscriber_db.dsn, "p", jobs=4, progress=seen.append)
    assert res.rows == 3000 and res.ranges == 1 and seen[-1].total_rows == 3000
    assert digest(subscriber_db, "p", "id") == digest(provider_db, "p", "id")
    assert subscriber_db.sql("select count(*) from p2") == [(1500,)]


def test_copy_into_the_callers_transaction(provider_db, subscriber_db):
    """With `into`, rows land in the caller's open transaction: invisible to others until the
    caller commits (with its own bookkeeping), gone if it rolls back."""
    for db in (provider_db, subscriber_db):
        db.sql(ACCOUNTS.format("acc"))
    subscriber_db.sql("create table state (snap text)")
    subscriber_db.sql("insert into acc values (-1, 0, 0, 'old')")
    provider_db.sql("insert into acc select g, 1, 0, '' from generate_series(1, 3000) g")
    with subscriber_db.connect(autocommit=False) as conn:
        # skip_truncate: a TRUNCATE would lock other readers out until the commit.
        res = copy_table(
            provider_db.dsn, subscriber_db.dsn, "acc", jobs=4, into=conn, skip_truncate=True
        )
        assert res.rows == 3000 and res.ranges == 1
        assert conn.execute("select count(*) from acc").fetchone() == (3001,)
        assert subscriber_db.sql("select count(*) from acc") == [(1,)]  # not committed yet
        conn.rollback()
    assert subscriber_db.sql("select count(*) from acc") == [(1,)]
    with subscriber_db.connect(autocommit=False) as conn:
        res = copy_table(provider_db.dsn, subscriber_db.dsn, "acc", into=conn)
        conn.execute("insert into state values (%s)", [str(res.snapshot)])
        conn.commit()
        assert conn.execute("show search_path").fetchone() == ('"$user", public',)
    assert subscriber_db.sql("select count(*), min(aid) from acc") == [(3000, 1)]
    assert subscriber_db.sql("select snap from state") == [(str(res.snapshot),)]


def test_a_target_that_fails_stops_the_read_of_its_source(provider_db, subscriber_db):
    """The target refuses the first row (in each of 2 ranges): the copy's monitor sees the
    target's COPY failed and stops the source's (libpq reports a target's error only at the
    COPY's end, so the whole source would be read). The provider's own count of rows read
    says how far it got."""
    rows = 3_000_000
    provider_db.sql("create table big (id int primary key, v int not null)")
    provider_db.sql(f"insert into big select g, g from generate_series(1, {rows}) g")
    subscriber_db.sql("create table big (id int primary key, v int not null check (v < 0))")

    def rows_read() -> int:
        stats = "select seq_tup_read from pg_stat_user_tables where relname = 'big'"
        return int(provider_db.sql(stats)[0][0])

    before = rows_read()
    with pytest.raises(TableError, match='violates check constraint "big_v_check"'):
        copy_table(provider_db.dsn, subscriber_db.dsn, "big", progress_interval=0.05,
                   jobs=2, min_range_bytes=1)  # fmt: skip
    # the reader's counts arrive when its session ends (copy_table closed it)
    wait_for("the reader's statistics", lambda: rows_read() > before, timeout=30)
    assert rows_read() - before < rows / 2
    assert subscriber_db.sql("select count(*) from big") == [(0,)]
