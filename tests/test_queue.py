"""The queue's semantics against a real server: batches are snapshots (I2), rotation loses
nothing (I3), tick merging, retry, ticker rules, settings."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from londiste_rs.errors import LondisteError, UsageError
from londiste_rs.store import queue, schema
from tests.fix_nodes import tick

Q = "q1"


def open_queue(db: Any, ntables: int = 3, consumers: tuple[str, ...] = ("c1",)) -> Any:
    conn = db.connect()
    schema.install(conn)
    queue.create_queue(conn, Q, ntables)
    for c in consumers:
        queue.register_consumer(conn, Q, c)
    return conn


def take(conn: Any, consumer: str = "c1", **custom: Any) -> list[str] | None:
    """The data of the consumer's next batch (as text), after finishing it; None: no batch."""
    batch = queue.next_batch(conn, Q, consumer, **custom)
    if batch is None:
        return None
    rows = conn.execute(queue.batch_event_sql(conn, batch.batch_id)).fetchall()
    assert queue.finish_batch(conn, batch.batch_id)
    return [bytes(r[6]).decode() for r in rows]


def writer(db: Any) -> Any:
    return db.connect(autocommit=False)


def emit(conn: Any, text: str) -> None:
    queue.insert_event(conn, Q, "x", text.encode())


def test_batches_follow_snapshots(provider_db):
    conn = open_queue(provider_db)
    w1, w2, w3 = writer(provider_db), writer(provider_db), writer(provider_db)
    emit(w1, "a1")  # w1 stays open across two ticks
    emit(w2, "b1")
    w2.commit()
    emit(w3, "c1")
    w3.execute("savepoint s")
    emit(w3, "c2")
    w3.execute("rollback to savepoint s")
    emit(w3, "c3")
    tick(conn)
    emit(w1, "a2")
    emit(w2, "b2")
    w2.rollback()
    w3.commit()
    tick(conn)
    w1.commit()
    tick(conn)
    assert take(conn) == ["b1"]
    assert take(conn) == ["c1", "c3"]
    assert take(conn) == ["a1", "a2"]
    assert take(conn) is None


def test_transaction_open_across_many_ticks_lands_once(provider_db):
    conn = open_queue(provider_db)
    long = writer(provider_db)
    emit(long, "long")
    for i in range(12):
        w = writer(provider_db)
        emit(w, f"short{i}")
        w.commit()
        for _ in range(15):  # move txids on, so the open one is far below the next range
            conn.execute("select pg_current_xact_id()")
        tick(conn)
    long.commit()
    tick(conn)
    for i in range(12):
        assert take(conn) == [f"short{i}"]
    batch = queue.next_batch(conn, Q, "c1")
    assert batch is not None
    text = queue.batch_event_sql(conn, batch.batch_id)
    assert "= any (" in text  # the open txid is listed, not covered by a wide range
    events = conn.execute(text).fetchall()
    assert [bytes(r[6]) for r in events] == [b"long"]


def test_a_batch_spanning_ticks_reads_what_its_ticks_batches_read(provider_db):
    # What a lagging worker reads in one scan (next_batch_span over several ticks) is every
    # event of the one-tick batches between, each once, in ev_id order, with a transaction
    # open across the ticks and one rolled back; the span stops at the events bound.
    conn = open_queue(provider_db, consumers=("one", "span"))
    long = writer(provider_db)
    emit(long, "long1")
    ticks = [tick(conn)]
    for i in range(4):
        w = writer(provider_db)
        emit(w, f"w{i}")
        if i == 2:
            w.rollback()
        else:
            w.commit()
        for _ in range(120):  # the open txid falls far below the next ranges (listed)
            conn.execute("select pg_current_xact_id()")
        ticks.append(tick(conn))
        if i == 1:
            emit(long, "long2")
    long.commit()
    last = tick(conn)
    one_by_one: list[str] = []
    while (data := take(conn, "one")) is not None:
        one_by_one += data
    assert sorted(one_by_one) == ["long1", "long2", "w0", "w1", "w3"]

    def span(max_ticks: int, max_events: int) -> tuple[Any, list[Any]]:
        b = queue.next_batch_span(conn, Q, "span", None, None, None, None, max_ticks, max_events)
        assert b is not None
        rows = conn.execute(queue.batch_event_sql(conn, b.batch_id)).fetchall()
        assert queue.finish_batch(conn, b.batch_id)
        return b, rows

    def seq(tick_id: int) -> int:
        query = "select tick_event_seq from londiste_rs.tick where tick_id = %s"
        return int(conn.execute(query, [tick_id]).fetchone()[0])

    start = conn.execute("select sub_last_tick from londiste_rs.subscription").fetchone()[0]
    with conn.transaction():  # bounded by events (rolled back: the position stays)
        b, rows = span(100, seq(ticks[1]) - seq(start))  # up to the tick after w0
        assert (b.tick_id, [bytes(r[6]).decode() for r in rows]) == (ticks[1], ["w0"])
        raise psycopg.Rollback
    with conn.transaction():  # applied up to ticks[2] already (a crash): the batch ends there
        b = queue.next_batch_span(conn, Q, "span", None, None, None, ticks[2], 100, 10**9)
        assert b is not None and (b.prev_tick_id, b.tick_id) == (start, ticks[2])
        raise psycopg.Rollback
    with conn.transaction():  # bounded by ticks
        b, rows = span(2, 10**9)
        assert (b.tick_id, b.ticks, [bytes(r[6]).decode() for r in rows]) == (ticks[1], 2, ["w0"])
        raise psycopg.Rollback
    b, rows = span(100, 10**9)
    assert (b.tick_id, b.ticks) == (last, 6)
    assert sorted(bytes(r[6]).decode() for r in rows) == sorted(one_by_one)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert queue.next_batch_span(conn, Q, "span", None, None, None, None, 100, 10**9) is None


def rotate(conn: Any) -> None:
    """What the ticker's maintenance does: every listed call, repeated while positive."""
    for func, arg in conn.execute("select * from londiste_rs.maint_operations()").fetchall():
        if func == "vacuum":
            continue
        for _ in range(5):
            if not conn.execute(f"select {func}(%s)", [arg]).fetchone()[0]:
                break


def cur_table(conn: Any) -> int:
    return int(conn.execute("select queue_cur_table from londiste_rs.queue").fetchone()[0])


def test_rotation_waits_for_a_lagging_consumer_and_loses_nothing(provider_db):
    conn = open_queue(provider_db, consumers=("fast", "slow"))
    queue.set_queue_config(conn, Q, "rotation_period", "0")
    sent: list[str] = []
    fast: list[str] = []
    for i in range(8):
        w = writer(provider_db)
        for j in range(5):
            sent.append(f"e{i}.{j}")
            emit(w, sent[-1])
        w.commit()
        tick(conn)
        fast += take(conn, "fast") or []
        rotate(conn)
        # One switch (0 -> 1) empties only the unused table 1; a second one would empty
        # table 2 and then 0, which 'slow' still needs.
        assert cur_table(conn) in (0, 1), "rotated past events 'slow' still needs"
    assert fast == sent
    slow: list[str] = []
    while (got := take(conn, "slow")) is not None:
        slow += got
    assert slow == sent
    # Both up to date: tables now rotate, and each consumer still sees every event.
    seen: set[int] = set()
    for i in range(8, 16):
        w = writer(provider_db)
        sent.append(f"e{i}")
        emit(w, sent[-1])
        w.commit()
        tick(conn)
        fast += take(conn, "fast") or []
        slow += take(conn, "slow") or []
        rotate(conn)
        seen.add(cur_table(conn))
    assert seen == {0, 1, 2}
    assert fast == sent and slow == sent
    # Old tables were emptied, not kept.
    total = conn.execute("select count(*) from londiste_rs.event_1").fetchone()[0]
    assert total < len(sent)


def test_rotation_keeps_events_of_a_writer_that_began_before_the_switch(provider_db):
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "rotation_period", "0")
    early = writer(provider_db)
    emit(early, "early")  # writes into table 0, stays open across the switch
    tick(conn)
    assert take(conn) == []
    rotate(conn)
    assert cur_table(conn) == 1
    late = writer(provider_db)
    emit(late, "late")
    late.commit()
    early.commit()
    tick(conn)
    rotate(conn)  # must not empty table 0 nor 2 while 'early' is unread
    got = take(conn)
    assert sorted(got or []) == ["early", "late"]


def test_next_batch_custom_merges_ticks(provider_db):
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "ticker_max_count", "10")  # force_tick would skew counts
    for i in range(5):
        w = writer(provider_db)
        for j in range(10):
            emit(w, f"{i}.{j}")
        w.commit()
        assert queue.ticker(conn, Q) is not None
    assert take(conn, min_interval="1 hour") is None
    assert take(conn, min_lag="1 hour") is None
    batch = queue.next_batch(conn, Q, "c1", min_count=25)
    assert batch is not None and batch.tick_id - batch.prev_tick_id == 3
    events = conn.execute(queue.batch_event_sql(conn, batch.batch_id)).fetchall()
    assert len(events) == 30
    queue.finish_batch(conn, batch.batch_id)
    assert len(take(conn, min_count=1000) or []) == 0  # not enough events yet: no batch
    assert len(take(conn) or []) == 10


def test_retry_returns_the_event_to_its_consumer_only(provider_db):
    conn = open_queue(provider_db, consumers=("c1", "c2"))
    emit(conn, "again")
    emit(conn, "once")
    tick(conn)
    batch = queue.next_batch(conn, Q, "c1")
    assert batch is not None
    events = conn.execute(queue.batch_event_sql(conn, batch.batch_id)).fetchall()
    again = next(r[0] for r in events if bytes(r[6]) == b"again")
    assert queue.event_retry(conn, batch.batch_id, again, 0)
    with pytest.raises(UsageError, match="not in batch"):
        queue.event_retry(conn, batch.batch_id, 999999, 0)
    queue.finish_batch(conn, batch.batch_id)
    assert take(conn, "c2") == ["again", "once"]
    assert conn.execute("select londiste_rs.maint_retry_events()").fetchone() == (1,)
    assert conn.execute("select londiste_rs.maint_retry_events()").fetchone() == (0,)
    tick(conn)
    batch = queue.next_batch(conn, Q, "c1")
    assert batch is not None
    rows = conn.execute(queue.batch_event_sql(conn, batch.batch_id)).fetchall()
    assert [(r[0], r[4], bytes(r[6])) for r in rows] == [(again, 1, b"again")]
    queue.finish_batch(conn, batch.batch_id)
    assert take(conn, "c2") == []


def test_events_are_ticked_after_20_ms_by_default_and_a_look_that_ticks_nothing_writes_nothing(
    provider_db,
):
    """Issue 14: the default ticker_max_lag lets a tick follow an event after 20 ms (PgQ's
    3 s made every change wait that long), and ticker() asks which queues need a tick before
    locking one, so the ticker daemon may ask every 0.02 s: a call that ticks nothing takes no
    transaction id (it writes nothing)."""
    conn = open_queue(provider_db)
    assert queue.ticker(conn, Q) is None  # just created: nothing waits
    with conn.transaction():
        assert conn.execute("select londiste_rs.ticker()").fetchone() == (0,)
        assert conn.execute("select pg_current_xact_id_if_assigned()").fetchone() == (None,)
    emit(conn, "1")
    time.sleep(0.05)  # more than the default ticker_max_lag
    assert conn.execute("select londiste_rs.ticker()").fetchone() == (1,)


def test_ticker_rules(provider_db):
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "ticker_max_count", "3")
    queue.set_queue_config(conn, Q, "ticker_max_lag", "1 hour")
    emit(conn, "1")
    emit(conn, "2")
    assert queue.ticker(conn, Q) is None
    emit(conn, "3")
    assert queue.ticker(conn, Q) is not None
    emit(conn, "4")
    assert queue.ticker(conn, Q) is None
    queue.set_queue_config(conn, Q, "queue_ticker_max_lag", "0")
    assert queue.ticker(conn, Q) is not None  # events and lag reached
    assert queue.ticker(conn, Q) is None  # no events, idle period not over
    queue.set_queue_config(conn, Q, "ticker_idle_period", "0")
    assert conn.execute("select londiste_rs.ticker()").fetchone() == (1,)
    queue.set_queue_config(conn, Q, "ticker_paused", "true")
    assert conn.execute("select londiste_rs.ticker()").fetchone() == (0,)
    assert queue.ticker(conn, Q) is None


def test_ticks_never_repeat_a_snapshot_and_refuse_old_snapshots(provider_db):
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "ticker_idle_period", "0")
    ticks = [queue.ticker(conn, Q) for _ in range(5)]
    assert all(ticks)
    snaps = conn.execute("select tick_snapshot::text from londiste_rs.tick").fetchall()
    assert len(set(snaps)) == len(snaps)
    with provider_db.connect(autocommit=False) as rr:
        rr.execute("set transaction isolation level repeatable read")
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="READ COMMITTED"):
            rr.execute("select londiste_rs.ticker(%s)", [Q])


def test_external_ticks_keep_the_providers_ids(provider_db):
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "external_ticker", "true")
    assert queue.ticker(conn, Q) is None
    emit(conn, "x")
    made = conn.execute("select londiste_rs.ticker(%s, 40, now(), 7000)", [Q]).fetchone()
    assert made == (40,)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not after the last tick"):
        conn.execute("select londiste_rs.ticker(%s, 39, now(), 7001)", [Q])
    assert take(conn) == ["x"]


def test_settings_and_names_are_checked(provider_db):
    conn = open_queue(provider_db)
    with pytest.raises(UsageError) as err:
        queue.set_queue_config(conn, Q, "ticker_speed", "1")
    assert "unknown queue setting 'ticker_speed'" in str(err.value)
    with pytest.raises(UsageError, match="invalid value 'soon' for queue setting ticker_max_lag"):
        queue.set_queue_config(conn, Q, "ticker_max_lag", "soon")
    with pytest.raises(UsageError, match="queue 'nope' does not exist"):
        queue.ticker(conn, "nope")
    with pytest.raises(UsageError, match="consumer 'zz' is not registered on queue q1"):
        queue.next_batch(conn, Q, "zz")
    with pytest.raises(UsageError, match="invalid queue name"):
        queue.create_queue(conn, "bad name; drop")
    assert not queue.create_queue(conn, Q)
    for e in (err.value,):
        assert isinstance(e, LondisteError) and "\n" not in str(e)


def test_disabled_inserts_are_refused_and_restored(provider_db):
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "disable_insert", "true")
    with pytest.raises(UsageError, match="does not accept events"):
        emit(conn, "no")
    rotate(conn)  # maintenance leaves a disabled queue alone
    queue.set_queue_config(conn, Q, "disable_insert", "false")
    emit(conn, "yes")
    tick(conn)
    assert take(conn) == ["yes"]


def test_consumers_register_at_ticks_and_queues_drop_cleanly(provider_db):
    conn = open_queue(provider_db)
    emit(conn, "before")
    first = tick(conn)
    emit(conn, "after")
    tick(conn)
    assert queue.register_consumer(conn, Q, "late", tick_id=first)
    assert take(conn, "late") == ["after"]
    with pytest.raises(UsageError, match="tick 999 of queue q1 no longer exists"):
        queue.register_consumer(conn, Q, "late", tick_id=999)
    with pytest.raises(UsageError, match="still has consumers"):
        queue.drop_queue(conn, Q)
    assert queue.unregister_consumer(conn, Q, "late")
    assert not queue.unregister_consumer(conn, Q, "late")
    assert queue.drop_queue(conn, Q, force=True)
    left = conn.execute("select count(*) from pg_class where relname like 'event\\_1%%'")
    assert left.fetchone() == (0,)


def test_events_written_with_the_tick_belong_to_it(provider_db):
    """A branch copies events and makes the provider's tick in one transaction: the events
    must land in the batch that ends at that tick, whatever else commits meanwhile."""
    conn = open_queue(provider_db)
    queue.set_queue_config(conn, Q, "external_ticker", "true")
    other = writer(provider_db)
    for n in range(5):
        with conn.transaction():
            emit(conn, f"own{n}")
            if n % 2:  # another transaction takes a txid and commits after ours began
                emit(other, "other")
                other.commit()
            made = conn.execute("select londiste_rs.ticker(%s, %s, now(), 0)", [Q, 10 + n])
            assert made.fetchone() == (10 + n,)
        got = take(conn)
        assert got is not None and f"own{n}" in got
