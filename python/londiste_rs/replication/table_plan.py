"""A replicated table's apply plan: the provider's row layout mapped onto the local table
(`plan_table`), and the staging tables and merge statements the apply runs for it
(`prepare_staging`). replication/apply.py applies a batch with these plans."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from londiste_rs.errors import LondisteError, TableError
from londiste_rs.pg.catalog import TableLayout, unique_only_by_key
from londiste_rs.pg.names import name_of, quoted_name

log = logging.getLogger(__name__)


@dataclass
class TablePlan:
    """How one replicated table is applied: the source row layout (from the provider's
    catalog, `layout.table_layout`) mapped onto the local target table."""

    name: str  # global name, as in ev_extra1
    source: TableLayout  # the provider's layout (its types feed the type map)
    dest: str  # the local table's name
    target: sql.Composable  # the local table, quoted
    ncols: int  # fields in a full-row payload
    key_cols: list[int]  # source indices of the key, in key order
    out_cols: list[int]  # source indices written to the upsert staging table
    key_names: list[str]
    out_names: list[str]
    identity_always: bool
    # non-key GENERATED ALWAYS identity columns: an UPDATE cannot set them (see _upsert_sql)
    fixed_names: list[str] = field(default_factory=list)
    walk_cols: list[int] = field(default_factory=list)
    skip_snapshot: tuple[int, int, list[int]] | None = None
    # the source's shape as capture writes it (ev_extra3): events of another shape are refused
    shape: str | None = None
    # with barriers (replication/barriers.py): the provider's layout cannot be applied here
    # (`problem` says why); every row of the table stops the decoder until another plan fits
    blocked: bool = False
    problem: LondisteError | None = None
    # which layout the source is: "provider" (its catalog now) or one found for a shape
    candidate: str = "provider"
    slot: int = -1  # numbers its staging tables
    upsert_stage: sql.Identifier = field(default_factory=lambda: sql.Identifier(""))
    delete_stage: sql.Identifier = field(default_factory=lambda: sql.Identifier(""))
    upsert_sql: sql.Composed | None = None
    delete_sql: sql.Composed | None = None
    # None: the table's update steps use upsert_sql (see prepare_staging)
    update_sql: sql.Composed | None = None
    missing_sql: sql.Composed | None = None
    insert_copy: sql.Composed | None = None
    # the local table has no unique index but its key: the decoder may insert new keys
    # early (BatchDecoder.early_inserts)
    early_inserts: bool = False


# -- catalog ---------------------------------------------------------------------------------
def plan_table(name: str, target: str, source: TableLayout, local: TableLayout) -> TablePlan:
    """Maps the source layout onto the local table by column name; refuses mismatched types."""
    mine = {c.name: c for c in local.columns}
    key_cols = list(source.key_cols)
    out_cols: list[int] = []
    for i, col in enumerate(source.columns):
        here = mine.get(col.name)
        if here is None:
            if i in key_cols:
                raise TableError(f"table {target} has no key column {col.name}; add it")
            log.warning("%s: column %s is not on the subscriber; ignored", target, col.name)
            continue
        if here.type_name != col.type_name:
            raise TableError(
                f"table {target}: column {col.name} is {here.type_name} here but "
                f"{col.type_name} on the provider; make the types equal"
            )
        if not here.generated:  # generated columns are computed here
            out_cols.append(i)
    names = [c.name for c in source.columns]
    out_set = {names[i] for i in out_cols}
    key_set = {names[i] for i in key_cols}
    return TablePlan(
        name=name,
        source=source,
        dest=target,
        target=name_of(target).ident,
        ncols=source.ncols,
        key_cols=key_cols,
        out_cols=out_cols,
        key_names=[names[i] for i in key_cols],
        out_names=[names[i] for i in out_cols],
        identity_always=any(c.identity_always for c in local.columns),
        fixed_names=[
            c.name
            for c in local.columns
            if c.identity_always and c.name in out_set and c.name not in key_set
        ],
        # values that embed user-defined type OIDs get the subscriber's (the type map)
        walk_cols=[i for i in source.walk_cols if i in out_cols],
    )


# -- staging and merge SQL -------------------------------------------------------------------
def prepare_staging(conn: psycopg.Connection[Any], plans: list[TablePlan]) -> None:
    """Creates this session's staging tables (committed, emptied at every commit) and the
    merge statements."""
    with conn.transaction():
        for n, p in enumerate(plans):
            prepare_plan(conn, p, n)


def prepare_plan(conn: psycopg.Connection[Any], p: TablePlan, slot: int) -> None:
    """One plan's staging tables (number `slot`, replacing any of that number: a plan that
    takes another's place mid-stream reuses its slot) and merge statements."""
    p.slot = slot
    p.upsert_stage = sql.Identifier(f"_lrs_upsert_{slot}")
    p.delete_stage = sql.Identifier(f"_lrs_delete_{slot}")
    for stage, cols in ((p.upsert_stage, p.out_names), (p.delete_stage, p.key_names)):
        conn.execute(sql.SQL("drop table if exists pg_temp.{}").format(stage))
        conn.execute(
            sql.SQL(
                "create temp table {} on commit delete rows as select {} from {} with no data"
            ).format(stage, _idents(cols), p.target)
        )
    p.upsert_sql = _upsert_sql(p)
    p.update_sql, p.missing_sql = _update_sql(p)
    p.insert_copy = sql.SQL("copy {} ({}) from stdin (format binary)").format(
        p.target, _idents(p.out_names)
    )
    p.early_inserts = unique_only_by_key(conn, quoted_name(name_of(p.dest)))
    p.delete_sql = sql.SQL("delete from {t} using {s} where {cond}").format(
        t=p.target, s=p.delete_stage, cond=_key_match(p, p.delete_stage)
    )


def _idents(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _upsert_sql(p: TablePlan) -> sql.Composed:
    """`INSERT ... ON CONFLICT (key) DO UPDATE`. PostgreSQL refuses to UPDATE a non-key
    GENERATED ALWAYS identity column to a value, so rows whose such value changed on the
    provider (`SET col = DEFAULT` there) are deleted first and re-inserted with OVERRIDING
    SYSTEM VALUE; for all other rows it is a plain update."""
    rest = [c for c in p.out_names if c not in p.key_names and c not in p.fixed_names]
    action = (
        sql.SQL("do update set ")
        + sql.SQL(", ").join(
            sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in rest
        )
        if rest
        else sql.SQL("do nothing")
    )
    upsert = _insert_from_stage(p, action)
    if not p.fixed_names:
        return upsert
    changed = sql.SQL("delete from {t} using {s} where {keys} and ({a}) is distinct from ({b})")
    reinsert = changed.format(
        t=p.target,
        s=p.upsert_stage,
        keys=_key_match(p, p.upsert_stage),
        a=sql.SQL(", ").join(
            sql.SQL("{}.{}").format(p.target, sql.Identifier(c)) for c in p.fixed_names
        ),
        b=sql.SQL(", ").join(
            sql.SQL("{}.{}").format(p.upsert_stage, sql.Identifier(c)) for c in p.fixed_names
        ),
    )
    return reinsert + sql.SQL("; ") + upsert


def _insert_from_stage(p: TablePlan, on_conflict: sql.Composable) -> sql.Composed:
    """INSERT of the upsert staging table's rows, with the given ON CONFLICT (key) action."""
    return sql.SQL(
        "insert into {t} ({cols}) {override} select {cols} from {s} on conflict ({keys}) {act}"
    ).format(
        t=p.target,
        cols=_idents(p.out_names),
        override=sql.SQL("overriding system value" if p.identity_always else ""),
        s=p.upsert_stage,
        keys=_idents(p.key_names),
        act=on_conflict,
    )


def _update_sql(p: TablePlan) -> tuple[sql.Composed | None, sql.Composed | None]:
    """`UPDATE ... FROM` the staging table, for rows known to exist, and the insert of any that
    turn out to be missing (a subscriber that was not in sync). None when the upsert is needed
    anyway: no non-key columns, or non-key GENERATED ALWAYS identity columns (`_upsert_sql`)."""
    rest = [c for c in p.out_names if c not in p.key_names]
    if not rest or p.fixed_names:
        return None, None
    update = sql.SQL("update {t} set {sets} from {s} where {keys}").format(
        t=p.target,
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = {s}.{c}").format(c=sql.Identifier(c), s=p.upsert_stage) for c in rest
        ),
        s=p.upsert_stage,
        keys=_key_match(p, p.upsert_stage),
    )
    missing = _insert_from_stage(p, sql.SQL("do nothing"))
    return update, missing


def _key_match(p: TablePlan, stage: sql.Identifier) -> sql.Composed:
    return sql.SQL(" and ").join(
        sql.SQL("{t}.{c} = {s}.{c}").format(t=p.target, s=stage, c=sql.Identifier(c))
        for c in p.key_names
    )
