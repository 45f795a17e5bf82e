"""How one table's copy is cut into ctid ranges (read in parallel under one snapshot): every
row in exactly one range, equal block counts, no more ranges than the table is worth."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from londiste_rs.tables.copy_plan import ranges as _ranges

BLOCK = 8192
BOUND = re.compile(r"ctid (>=|<) '\((\d+),0\)'::tid")


def bounds(nblocks: int, jobs: int, min_range_bytes: int) -> list[tuple[int, float]]:
    """Each range's WHERE clause as [first block, end block) (end: inf when open)."""
    out = []
    for where in _ranges(nblocks, BLOCK, jobs, min_range_bytes):
        text = where.as_string()
        lo, hi = 0, float("inf")
        for op, block in BOUND.findall(text):
            lo, hi = (int(block), hi) if op == ">=" else (lo, int(block))
        assert text == "" or text.startswith(" WHERE ctid "), text
        out.append((lo, hi))
    return out


def test_ranges_as_sql():
    assert [w.as_string() for w in _ranges(10, BLOCK, 4, 1)] == [
        " WHERE ctid < '(2,0)'::tid",
        " WHERE ctid >= '(2,0)'::tid AND ctid < '(5,0)'::tid",
        " WHERE ctid >= '(5,0)'::tid AND ctid < '(7,0)'::tid",
        " WHERE ctid >= '(7,0)'::tid",
    ]


def test_one_unbounded_range_when_more_are_not_worth_it():
    assert [w.as_string() for w in _ranges(100, BLOCK, 1, 1)] == [""]  # one job
    assert [w.as_string() for w in _ranges(0, BLOCK, 4, 1)] == [""]  # an empty heap
    # 100 blocks are 800 kB: at 300 kB a range, two ranges
    assert bounds(100, 4, 300 << 10) == [(0, 50), (50, float("inf"))]
    assert bounds(100, 4, 8 << 20) == [(0, float("inf"))]


@given(
    nblocks=st.integers(0, 10**7),
    jobs=st.integers(1, 64),
    min_range_bytes=st.sampled_from([0, 1, BLOCK, 1 << 20, 32 << 20, 1 << 40]),
)
def test_every_block_is_in_exactly_one_range(nblocks, jobs, min_range_bytes):
    ranges = bounds(nblocks, jobs, min_range_bytes)
    worth = nblocks * BLOCK // max(min_range_bytes, 1)
    assert len(ranges) == max(1, min(jobs, worth))
    # contiguous from block 0, the last one open (rows written past nblocks are still read)
    assert ranges[0][0] == 0 and ranges[-1][1] == float("inf")
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end == start
    if len(ranges) > 1:
        sizes = [end - start for start, end in ranges[:-1]] + [nblocks - ranges[-1][0]]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == nblocks
        if min_range_bytes >= BLOCK:
            assert min(sizes) >= 1  # no range without a block to read
