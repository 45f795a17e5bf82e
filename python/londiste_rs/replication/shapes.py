"""Which columns a row was captured with, when its table's plan does not fit it (I7).

A plan maps the provider's table as its catalog has it now onto the local table. A batch can
hold rows captured while the table had other columns: before an EXECUTE that changed it
(every node runs the file at its place in the stream), or before a change made on the root
without execute. Each row carries the shape of its table when it was captured (internals §3):
an md5 of its columns' names and types. For a row whose shape is not the plan's, the layouts
that could be it are, in order: the provider's table now, the local table now (before an
EXECUTE is reached, it is the table as the root had it), and the leading columns of each (a
column added at the end since). The first whose shape is the row's becomes the table's plan
from that row on, if the row's fields also fit it (their number and built-in types); a shape
proves the names and types, so nothing is ever mapped by position alone. When none fits, the
table stops the batch with one line naming the table, what differs and the fix.

A column the provider has and this node lacks stops the batch with `SchemaWait`, which the
worker watches: it goes on by itself once the column exists here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs._native import Barrier
from londiste_rs.errors import DecodeError, LondisteError, TableError
from londiste_rs.pg.catalog import TableLayout, table_layout
from londiste_rs.pg.names import name_of
from londiste_rs.replication.table_plan import TablePlan, plan_table

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# The shape (sql/functions/capture/table_shape.sql) of column lists that exist nowhere as a
# table: the same text, digested the same way (tests/test_execute.py holds them equal).
_SHAPES = """
select u.i, md5(string_agg(quote_ident(u.n) || ' ' || u.t, ', ' order by u.o))
  from unnest(%s::int4[], %s::text[], %s::text[], %s::int4[]) u(i, n, t, o)
 group by u.i
"""


class SchemaWait(TableError):
    """A column the provider's rows carry is missing here: the batch stops until it exists
    (`ready` says when)."""

    def __init__(self, message: str, table: str, columns: list[str]):
        super().__init__(message)
        self.table = table
        self.columns = columns

    def ready(self, conn: Conn) -> bool:
        """Whether the local table has every missing column now."""
        row = conn.execute(
            "select count(*) from pg_catalog.pg_attribute"
            " where attrelid = pg_catalog.to_regclass(%s) and attname = any(%s)"
            " and attnum > 0 and not attisdropped",
            [self.table, self.columns],
        ).fetchone()
        return row is not None and row[0] == len(self.columns)


def column_shapes(conn: Conn, layouts: list[list[tuple[str, str]]]) -> list[str]:
    """The shape of each list of (name, type) columns."""
    ids, names, types, orders = [], [], [], []
    for i, cols in enumerate(layouts):
        for o, (n, t) in enumerate(cols):
            ids.append(i)
            names.append(n)
            types.append(t)
            orders.append(o)
    found = dict(conn.execute(_SHAPES, [ids, names, types, orders]).fetchall())
    return [str(found.get(i, "")) for i in range(len(layouts))]


def _alter(dest: str) -> str:
    return f"ALTER TABLE {dest}"


def problem(name: str, dest: str, source: TableLayout, local: TableLayout) -> LondisteError | None:
    """Why rows of `source`'s columns cannot be applied to the local table, or None."""
    here = {c.name: c for c in local.columns}
    key = {source.columns[i].name for i in source.key_cols}
    missing = [c for c in source.columns if c.name not in here]
    for c in missing:
        if c.name in key:
            return TableError(
                f"table {dest} has no column {c.name}, part of the provider's primary key; "
                "add it here as it is there"
            )
    differ = [
        (c, here[c.name]) for c in source.columns if c.name in here
        and here[c.name].type_name != c.type_name
    ]  # fmt: skip
    if differ:
        c, h = differ[0]
        ident = sql.Identifier(c.name).as_string(None)
        return TableError(
            f"table {dest}: column {c.name} is {c.type_name} on the provider but {h.type_name} "
            f"here (changed without execute); change it here ({_alter(dest)} ALTER COLUMN "
            f"{ident} TYPE {c.type_name}) and resync {name} on this node; make schema changes "
            "with execute"
        )
    if missing:
        adds = ", ".join(
            f"ADD COLUMN {sql.Identifier(c.name).as_string(None)} {c.type_name}" for c in missing
        )
        cols = ", ".join(f"{c.name} ({c.type_name})" for c in missing)
        one = len(missing) == 1
        return SchemaWait(
            f"table {dest}: column{'' if one else 's'} {cols} {'is' if one else 'are'} on the "
            f"provider but not here ({'it was' if one else 'they were'} added there without "
            f"execute); add {'it' if one else 'them'} here as on the provider ({_alter(dest)} "
            f"{adds}, with the provider's default if any) and the worker goes on by itself; "
            "make schema changes with execute",
            dest,
            [c.name for c in missing],
        )
    return None


def blocked_plan(name: str, dest: str, source: TableLayout, why: LondisteError) -> TablePlan:
    """A plan whose rows are never applied (every row stops the decoder): the table's
    truncates still are."""
    key = list(source.key_cols)
    names = [c.name for c in source.columns]
    return TablePlan(
        name=name,
        source=source,
        dest=dest,
        target=name_of(dest).ident,
        ncols=source.ncols,
        key_cols=key,
        out_cols=key,
        key_names=[names[i] for i in key],
        out_names=[names[i] for i in key],
        identity_always=False,
        blocked=True,
        problem=why,
    )


def lenient_plan(name: str, dest: str, source: TableLayout, local: TableLayout) -> TablePlan:
    """`plan_table`, or a blocked plan saying why the layouts cannot be mapped."""
    why = problem(name, dest, source, local)
    return (
        plan_table(name, dest, source, local)
        if why is None
        else blocked_plan(name, dest, source, why)
    )


def _prefix(layout: TableLayout, n: int) -> TableLayout | None:
    """The layout of the first `n` columns (None: the key is not among them)."""
    if any(i >= n for i in layout.key_cols):
        return None
    return replace(
        layout,
        columns=layout.columns[:n],
        walk_cols=tuple(i for i in layout.walk_cols if i < n),
    )


@dataclass
class _Table:
    """What was found for one table in this pass."""

    tried: dict[str | None, set[str]]  # per row shape: candidates whose fields did not fit
    current: TableLayout | None = None  # the layout of the rows found last
    # per row shape: the layout whose shape it is (whether its rows' fields fitted or not)
    named: dict[str | None, TableLayout] = field(default_factory=dict)


class ShapeResolver:
    """Finds plans for rows of other shapes, during one pass over a stream."""

    def __init__(self, conn: Conn, provider: dict[str, TableLayout]):
        self.conn = conn
        self.provider = provider  # the provider's layout of each table, by global name
        self.local: dict[str, TableLayout] = {}
        self.tables: dict[str, _Table] = {}

    def local_changed(self) -> None:
        """The local tables may have other columns now (an execute ran)."""
        self.local.clear()

    def local_layout(self, dest: str) -> TableLayout:
        if dest not in self.local:
            self.local[dest] = table_layout(self.conn, dest)
        return self.local[dest]

    def default_plan(self, plan: TablePlan) -> TablePlan:
        """The plan of the provider's layout on the local table as it is now."""
        p = lenient_plan(plan.name, plan.dest, self.provider[plan.name],
                         self.local_layout(plan.dest))  # fmt: skip
        p.skip_snapshot = plan.skip_snapshot
        p.shape = self.provider_shape(plan)
        return p

    def provider_shape(self, plan: TablePlan) -> str | None:
        return (
            plan.shape if plan.candidate == "provider" else self._shape_of(self.provider[plan.name])
        )

    def _shape_of(self, layout: TableLayout) -> str:
        return column_shapes(self.conn, [[(c.name, c.type_name) for c in layout.columns]])[0]

    def resolve(self, plan: TablePlan, b: Barrier) -> TablePlan:
        """The plan for the row `b` stopped at (and the rows of its shape after it); raises
        the table's stop when there is none."""
        name, dest = plan.name, plan.dest
        state = self.tables.setdefault(name, _Table({}))
        tried = state.tried.setdefault(b.shape, set())
        if b.problem is not None:
            tried.add(plan.candidate)
        provider = self.provider[name]
        local = self.local_layout(dest)
        if b.shape is None:
            # a row captured before shapes were recorded, or a blocked table's
            if plan.problem is not None:
                raise plan.problem
            raise TableError(
                f"table {dest}: event {b.ev_id} does not fit its columns here ({b.problem}) "
                f"and carries no shape to find the ones it was captured with; resync {name} "
                "on this node"
            )
        candidates: list[tuple[str, TableLayout]] = [("provider", provider), ("local", local)]
        for origin, layout in (("provider", provider), ("local", local)):
            for n in range(layout.ncols - 1, 0, -1):
                pre = _prefix(layout, n)
                if pre is not None:
                    candidates.append((f"{origin}[:{n}]", pre))
        candidates = [(k, lay) for k, lay in candidates if k not in tried]
        shapes = column_shapes(
            self.conn, [[(c.name, c.type_name) for c in lay.columns] for _, lay in candidates]
        )
        for (key, layout), shape in zip(candidates, shapes, strict=True):
            if shape != b.shape:
                continue
            state.named[b.shape] = layout
            if state.current is not None:
                self._refuse_dropped(plan, b, state.current, layout, local)
            if key == "provider" and plan.candidate == "provider" and plan.problem is not None:
                raise plan.problem
            why = problem(name, dest, layout, local)
            if why is not None:
                raise why
            new = plan_table(name, dest, layout, local)
            new.skip_snapshot = plan.skip_snapshot
            new.shape = b.shape
            new.candidate = key
            state.current = layout
            log.debug(
                "%s: rows from event %d on were captured with columns (%s): applied as such",
                dest, b.ev_id, ", ".join(c.name for c in layout.columns),
            )  # fmt: skip
            return new
        raise self._unknown(plan, b, provider, local, state.named.get(b.shape))

    def _refuse_dropped(
        self,
        plan: TablePlan,
        b: Barrier,
        earlier: TableLayout,
        now: TableLayout,
        local: TableLayout,
    ) -> None:
        """Rows of the table had the columns of `earlier`, the next ones have those of `now`: a
        column `earlier` has and `now` lacks, still here, was dropped on the provider without
        execute (with execute it would be gone here before these rows)."""
        gone = {c.name for c in earlier.columns} - {c.name for c in now.columns}
        here = [c.name for c in local.columns if c.name in gone]
        if here:
            raise self._dropped(plan, b, here)

    def _retyped(
        self, plan: TablePlan, b: Barrier, columns: list[tuple[str, str, str]]
    ) -> TableError:
        alters = ", ".join(
            f"ALTER COLUMN {sql.Identifier(n).as_string(None)} TYPE {there}"
            for n, there, _ in columns
        )
        what = ", ".join(f"{n} ({there} there, {here} here)" for n, there, here in columns)
        return TableError(
            f"table {plan.dest}: column {what} was retyped on the provider without execute "
            f"(event {b.ev_id} has a value of the new type); change it here too "
            f"({_alter(plan.dest)} {alters}) and resync {plan.name} on this node; make "
            "schema changes with execute"
        )

    def _dropped(self, plan: TablePlan, b: Barrier, columns: list[str]) -> TableError:
        drops = ", ".join(f"DROP COLUMN {sql.Identifier(c).as_string(None)}" for c in columns)
        return TableError(
            f"table {plan.dest}: column {', '.join(columns)} was dropped on the provider without "
            f"execute (event {b.ev_id} has no value for it); drop it here too "
            f"({_alter(plan.dest)} {drops}) and resync {plan.name} on this node; make schema "
            "changes with execute"
        )

    def _unknown(
        self,
        plan: TablePlan,
        b: Barrier,
        provider: TableLayout,
        local: TableLayout,
        named: TableLayout | None,
    ) -> LondisteError:
        """No layout fits the row: one line with what differs and the fix."""
        mine = {c.name: c for c in local.columns}
        theirs = {c.name: c for c in provider.columns}
        misfit = b.problem or ""
        if misfit and named is not None:
            # the row's shape names columns its fields do not fit: the columns were changed
            # on the root without execute, and its capture still writes the old shape
            if "fields, expected" in misfit:
                gone = [c.name for c in named.columns if c.name not in theirs]
                if gone:
                    return self._dropped(plan, b, gone)
            elif "has type" in misfit:
                retyped = [
                    (c.name, theirs[c.name].type_name, c.type_name)
                    for c in named.columns
                    if c.name in theirs and theirs[c.name].type_name != c.type_name
                ]
                if retyped:
                    return self._retyped(plan, b, retyped)
        diffs = [f"{n} only on the provider" for n in theirs if n not in mine]
        diffs += [f"{n} only here" for n in mine if n not in theirs]
        diffs += [
            f"{n} is {theirs[n].type_name} there, {mine[n].type_name} here"
            for n in theirs if n in mine and theirs[n].type_name != mine[n].type_name
        ]  # fmt: skip
        differ = f" (the tables differ: {', '.join(diffs)})" if diffs else ""
        fix = (
            f"make the table here like the provider's{differ} and run resync {plan.name} on "
            "this node (make schema changes with execute)"
        )
        if misfit:
            kind = "type" if "has type" in misfit else "number"
            return DecodeError(
                f"event {b.ev_id}: table {plan.name} has fields of another {kind} in this "
                f"event than in the columns it was captured with: a column was dropped or "
                f"retyped on the provider without execute; {fix}",
                b.ev_id,
            )
        return DecodeError(
            f"event {b.ev_id}: table {plan.name} had other columns when this event was "
            f"captured (shape {b.shape}) than the provider's table and this one have now: they "
            f"were changed on the provider without execute while events were queued; {fix}",
            b.ev_id,
        )
