"""`Snapshot`, PostgreSQL's pg_snapshot: its text form and which transactions it sees (the
server's own answers are compared in test_initial_copy.py)."""

from __future__ import annotations

import pytest

from londiste_rs.pg.snapshot import Snapshot


def test_snapshot_text_round_trip():
    s = Snapshot.parse("10:20:12,15")
    assert (s.xmin, s.xmax, s.xip) == (10, 20, (12, 15)) and str(s) == "10:20:12,15"
    assert s.visible(9) and s.visible(13) and not s.visible(12) and not s.visible(20)
    assert s.as_tuple() == (10, 20, [12, 15])


def test_no_transaction_in_progress():
    s = Snapshot.parse("7:7:")
    assert s == Snapshot(7, 7, ()) and str(s) == "7:7:"
    assert s.visible(6) and not s.visible(7) and not s.visible(8)
    assert Snapshot.parse(str(Snapshot(1, 5, (2, 3, 4)))) == Snapshot(1, 5, (2, 3, 4))


def test_visibility_at_the_edges():
    s = Snapshot(100, 200, (100, 150))
    assert s.visible(99)  # below xmin: committed or aborted before, always decided
    assert not s.visible(100)  # xmin itself is the oldest still running
    assert s.visible(101) and s.visible(199)
    assert not s.visible(150)
    assert not s.visible(200) and not s.visible(10**12)  # xmax and later: not yet started


def test_all_visible_sees_every_transaction():
    s = Snapshot.all_visible()
    assert s.xip == () and all(s.visible(t) for t in (1, 3, 2**32 + 5, 2**61))
    assert Snapshot.parse(str(s)) == s


@pytest.mark.parametrize("text", ["", "10:20", "a:20:", "10:20:x"])
def test_text_that_is_not_a_snapshot_is_refused(text):
    with pytest.raises(ValueError):
        Snapshot.parse(text)
