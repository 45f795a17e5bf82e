"""Subscriber equals provider: an order-independent digest (count + md5 of the sorted row
texts) of every replicated table on both sides."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from londiste_rs.devtools.demo import table_digest


def digests(dsn: str, tables: Sequence[str]) -> dict[str, tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {t: table_digest(conn, t) for t in tables}


def same(src_dsn: str, dst_dsn: str, tables: Sequence[str]) -> tuple[bool, str]:
    """(equal, a one-line description of the first difference or of the rows compared)."""
    a, b = digests(src_dsn, tables), digests(dst_dsn, tables)
    for t in tables:
        if a[t] != b[t]:
            return False, f"{t}: provider {a[t][0]} rows, subscriber {b[t][0]} rows, digests differ"
    return True, f"{sum(n for n, _ in a.values())} rows equal in {len(tables)} tables"
