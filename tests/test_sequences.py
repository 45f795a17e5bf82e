"""Sequence sync between two clusters: forward only, exact on cut-over."""

from __future__ import annotations

import pytest

from londiste_rs.errors import TableError
from londiste_rs.pg import ddl
from londiste_rs.tables import sequences


def _next(db, seq: str) -> int:
    return int(db.sql(f"select nextval('{seq}')")[0][0])


def test_sequences_never_move_backwards(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        db.sql("create sequence up")
        db.sql("create sequence down increment by -1 maxvalue -1 start with -1")
        db.sql('create schema "S"')
        db.sql('create sequence "S"."Fresh"')
    for _ in range(10):
        _next(provider_db, "up")
        _next(provider_db, "down")
    with provider_db.connect() as src, subscriber_db.connect() as dst:
        out = sequences.sync(src, dst, ["up", "down", '"S".*'])
        assert [(str(s.name), s.provider, s.before, s.changed) for s in out] == [
            ("public.up", 11, 1, True),
            ("public.down", -11, -1, True),
            ('"S"."Fresh"', 1, 1, False),  # never called on either side
        ]
        assert _next(subscriber_db, "up") == 11 and _next(subscriber_db, "down") == -11
        # The subscriber is now ahead: a sync leaves it alone.
        for _ in range(5):
            _next(subscriber_db, "up")
        out = sequences.sync(src, dst, ["up"])
        assert out[0].changed is False and _next(subscriber_db, "up") == 17
        # The provider moves on past the subscriber: forward again.
        provider_db.sql("select setval('up', 100)")
        assert sequences.sync(src, dst, ["up"])[0].changed
        assert _next(subscriber_db, "up") == 101


def test_exact_sync_for_cut_over(provider_db, subscriber_db):
    for db in (provider_db, subscriber_db):
        db.sql("create sequence s")
    provider_db.sql("select setval('s', 40)")
    subscriber_db.sql("select setval('s', 90)")
    with provider_db.connect() as src, subscriber_db.connect() as dst:
        assert not sequences.sync(src, dst, ["s"])[0].changed
        out = sequences.sync(src, dst, ["s"], exact=True)
        assert (out[0].provider, out[0].before, out[0].changed) == (41, 91, True)
    assert _next(subscriber_db, "s") == 41


def test_missing_sequence_and_create(provider_db, subscriber_db):
    provider_db.sql("create sequence only_src increment by 10 start with 1000 cache 5")
    provider_db.sql("select nextval('only_src')")
    with provider_db.connect() as src, subscriber_db.connect() as dst:
        with pytest.raises(TableError, match="does not exist on the subscriber"):
            sequences.sync(src, dst, ["only_src"])
        assert ddl.create_sequence(src, dst, "only_src") is True
        assert ddl.create_sequence(src, dst, "only_src") is False
        assert sequences.sync(src, dst, ["only_src"])[0].changed
    # With cache 5 the provider's sessions may already hold values up to 1040: the subscriber
    # continues after what the provider has allocated, not after what it has used.
    assert provider_db.sql("select last_value from only_src") == [(1040,)]
    assert _next(subscriber_db, "only_src") == 1050
    assert subscriber_db.sql(
        "select seqstart, seqincrement, seqcache from pg_sequence"
        " where seqrelid = 'only_src'::regclass"
    ) == [(1000, 10, 5)]
