"""The many-tables database: 40 tables of mixed sizes (4 large, 36 small), each with a primary
key, two with a secondary index and one foreign key, filled server-side.

At scale 1: 4 x 200,000 rows plus 36 tables of 1,000 to 20,000 rows, about 1.18M rows."""

from __future__ import annotations

from typing import Any

import psycopg

LARGE_ROWS = 200_000
SMALL_ROWS = (1_000, 20_000)  # the smallest and the largest of the small tables
SMALL_TABLES = 36

# Every table has these columns after its key; the values cycle, so they compress and sort like
# real data rather than a constant. No serial or identity column: londiste3's --create-full
# fails on their sequences ("relation ..._id_seq does not exist").
COLUMNS = "ref int not null, qty int, amount numeric(12,2), created timestamptz, label text"
VALUES = (
    "g % {refs} + 1, g % 100, (g % 100000) / 100.0,"
    " timestamptz '2024-01-01' + g * interval '1 second', md5(g::text)"
)

# customers and orders are referenced by name: orders.ref is a customer (the foreign key).
LARGE = ("orders", "order_lines", "events", "audit_log")
EXTRA_DDL = (
    "alter table orders add foreign key (ref) references customers (id)",
    "create index on orders (ref)",
    "create index on events (created)",
)


def layout(scale: float) -> list[tuple[str, int]]:
    """(table, rows) for every table: the large ones, then customers and the small items."""
    lo, hi = SMALL_ROWS
    small = [lo + i * (hi - lo) // (SMALL_TABLES - 1) for i in range(SMALL_TABLES)]
    tables = [(name, LARGE_ROWS) for name in LARGE]
    tables += [("customers", small[-1])]
    tables += [(f"item_{i:02d}", rows) for i, rows in enumerate(small[:-1], 1)]
    return [(name, max(10, round(rows * scale))) for name, rows in tables]


def qualified(scale: float) -> list[str]:
    return [f"public.{name}" for name, _ in layout(scale)]


def create(conn: psycopg.Connection[Any], scale: float) -> None:
    """The tables, their rows (generate_series, server-side) and VACUUM ANALYZE."""
    tables = layout(scale)
    refs = dict(tables)["customers"]
    for name, rows in tables:
        conn.execute(f"create table {name} (id bigint primary key, {COLUMNS})")
        conn.execute(
            f"insert into {name} select g, {VALUES.format(refs=refs)}"
            f" from generate_series(1, {rows}) g"
        )
    for ddl in EXTRA_DDL:
        conn.execute(ddl)
    for name, _ in tables:
        conn.execute(f"vacuum analyze {name}")
