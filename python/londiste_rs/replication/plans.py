"""The worker's apply plans: one per 'ok' table, built from the provider's and the local
catalog, cached until the set of tables, their copy snapshots or the provider change (and
rebuilt on every new local session: the staging tables live in it, and after an apply whose
barriers changed plans or local tables: replication/barriers.py).

A table whose provider layout cannot be applied here now (a column missing here, another
type) gets a blocked plan that says why: its rows stop the batch only when one of them has
the provider's columns; rows captured earlier, with columns that fit, still apply
(replication/shapes.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from londiste_rs.errors import LondisteError
from londiste_rs.pg.catalog import TableLayout, table_layout
from londiste_rs.pg.snapshot import Snapshot
from londiste_rs.replication.apply import TypeMap, make_type_map, order_parents_first
from londiste_rs.replication.shapes import lenient_plan
from londiste_rs.replication.table_plan import TablePlan, prepare_staging
from londiste_rs.store import queue as store_queue
from londiste_rs.store import tables as store_tables

Conn = psycopg.Connection[Any]


class PlanCache:
    def __init__(self, queue: str):
        self.queue = queue
        self.plans: list[TablePlan] = []
        self.types: TypeMap = {}
        # the provider's layout of each table, by global name (as the plans were built)
        self.provider: dict[str, TableLayout] = {}
        self.key: object = None
        # tables copied from a copy node as of a tick the provider had not reached then
        self.copy_ticks: dict[str, int] = {}

    def invalidate(self) -> None:
        self.key = None

    def get(self, local: Conn, prov: Conn, provider_location: str | None) -> list[TablePlan]:
        """The plans of the 'ok' tables, in parents-first order, staging tables ready."""
        tables = store_tables.replay_tables(local, self.queue)
        # the provider's tables as they are now: one changed there gets a plan anew
        shapes = store_tables.table_shapes(prov, [t.name for t in tables])
        key = (tuple(tables), provider_location, shapes)
        if key == self.key:
            return self.plans
        plans = []
        self.copy_ticks = {}
        self.provider = {}
        for t in tables:
            source = table_layout(prov, t.name)
            self.provider[t.name] = source
            p = lenient_plan(t.name, t.dest, source, table_layout(local, t.dest))
            p.skip_snapshot = None if t.skip_snapshot is None else t.skip_snapshot.as_tuple()
            p.shape = store_tables.table_shape(prov, t.name)
            if t.copy_tick is not None:
                self.copy_ticks[t.name] = t.copy_tick
            plans.append(p)
        self.plans = order_parents_first(local, plans)
        self.types = make_type_map(local, self.plans)
        prepare_staging(local, self.plans)
        self.key = key
        return self.plans

    def resolve_copy_ticks(self, prov: Conn, upto: int) -> dict[str, Snapshot]:
        """Skip snapshots for tables copied from a copy node as of tick T (`copy_ticks`) that
        the provider had not reached then: once this apply reaches T, the provider's tick T
        snapshot (returned, for the caller to store with the apply); before, every event of
        the table (all of them in ticks <= T, so in the copy). Sets the plans' skip
        snapshots for this apply."""
        resolved: dict[str, Snapshot] = {}
        for p in self.plans:
            tick_id = self.copy_ticks.get(p.name)
            if tick_id is None:
                continue
            if upto < tick_id:
                p.skip_snapshot = Snapshot.all_visible().as_tuple()
                continue
            tick = store_queue.get_tick(prov, self.queue, tick_id)
            if tick is None:
                raise LondisteError(
                    f"tick {tick_id}, which the copy of {p.name} is as of, is gone from the "
                    f"provider; run resync {p.name}"
                )
            p.skip_snapshot = tick.snapshot.as_tuple()
            resolved[p.name] = tick.snapshot
        return resolved
