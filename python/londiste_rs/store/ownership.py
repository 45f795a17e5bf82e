"""Who could plant code in a database's `londiste_rs` schema, read from the catalog only.

Whoever calls a function runs its body with their own rights (SECURITY INVOKER), and a trigger
on a table runs as whoever writes the table. So the installer, which creates the functions,
and the ticker, which calls them in every database it visits, first make sure that nobody but
the schema's owner (or a superuser) can have put or changed anything there: no object in the
schema belongs to another role, no other role may create objects in it, hold TRIGGER on its
tables, or own a function a trigger on them runs. Nothing in the schema is called to find
this out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

SCHEMA = "londiste_rs"

# Every object of the schema, with its owner, and every right or trigger through which another
# role could make the schema's users run its code. Superusers' objects are no risk: they can
# do anything anyway. Qualified throughout: the caller's search_path may be anyone's.
_FOREIGN = """
with s as (
    select n.oid, n.nspowner, n.nspacl from pg_catalog.pg_namespace n
     where n.nspname operator(pg_catalog.=) %(schema)s
), owned (kind, name, owner) as (
    select 'relation', c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner
      from pg_catalog.pg_class c, s where c.relnamespace operator(pg_catalog.=) s.oid
    union all
    select 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text, p.proowner
      from pg_catalog.pg_proc p, s where p.pronamespace operator(pg_catalog.=) s.oid
    union all
    select 'type', t.oid::pg_catalog.regtype::pg_catalog.text, t.typowner
      from pg_catalog.pg_type t, s where t.typnamespace operator(pg_catalog.=) s.oid
    union all
    select 'operator', o.oid::pg_catalog.regoperator::pg_catalog.text, o.oprowner
      from pg_catalog.pg_operator o, s where o.oprnamespace operator(pg_catalog.=) s.oid
    union all
    select 'collation', x.collname::pg_catalog.text, x.collowner
      from pg_catalog.pg_collation x, s where x.collnamespace operator(pg_catalog.=) s.oid
    union all
    select 'conversion', x.conname::pg_catalog.text, x.conowner
      from pg_catalog.pg_conversion x, s where x.connamespace operator(pg_catalog.=) s.oid
    union all
    select 'operator class', x.opcname::pg_catalog.text, x.opcowner
      from pg_catalog.pg_opclass x, s where x.opcnamespace operator(pg_catalog.=) s.oid
    union all
    select 'operator family', x.opfname::pg_catalog.text, x.opfowner
      from pg_catalog.pg_opfamily x, s where x.opfnamespace operator(pg_catalog.=) s.oid
    union all
    select 'text search configuration', x.cfgname::pg_catalog.text, x.cfgowner
      from pg_catalog.pg_ts_config x, s where x.cfgnamespace operator(pg_catalog.=) s.oid
    union all
    select 'text search dictionary', x.dictname::pg_catalog.text, x.dictowner
      from pg_catalog.pg_ts_dict x, s where x.dictnamespace operator(pg_catalog.=) s.oid
    union all
    select 'statistics object', x.stxname::pg_catalog.text, x.stxowner
      from pg_catalog.pg_statistic_ext x, s where x.stxnamespace operator(pg_catalog.=) s.oid
), found (kind, name, who) as (
    select 'owner', o.kind operator(pg_catalog.||) ' ' operator(pg_catalog.||) o.name, o.owner
      from owned o, s where o.owner operator(pg_catalog.<>) s.nspowner
    union all
    select 'create', '', a.grantee
      from s, pg_catalog.aclexplode(s.nspacl) a
     where a.privilege_type operator(pg_catalog.=) 'CREATE'
       and a.grantee operator(pg_catalog.<>) s.nspowner
    union all
    select 'trigger right', c.oid::pg_catalog.regclass::pg_catalog.text, a.grantee
      from s, pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
     where c.relnamespace operator(pg_catalog.=) s.oid
       and a.privilege_type operator(pg_catalog.=) 'TRIGGER'
       and a.grantee operator(pg_catalog.<>) s.nspowner
    union all
    select 'trigger', pg_catalog.quote_ident(t.tgname) operator(pg_catalog.||) ' ON '
           operator(pg_catalog.||) c.oid::pg_catalog.regclass::pg_catalog.text, p.proowner
      from s, pg_catalog.pg_trigger t
      join pg_catalog.pg_class c on c.oid operator(pg_catalog.=) t.tgrelid
      join pg_catalog.pg_proc p on p.oid operator(pg_catalog.=) t.tgfoid
     where c.relnamespace operator(pg_catalog.=) s.oid
       and p.proowner operator(pg_catalog.<>) s.nspowner
)
select f.kind, f.name,
       case when f.who operator(pg_catalog.=) 0 then 'PUBLIC'
            else pg_catalog.pg_get_userbyid(f.who)::pg_catalog.text end,
       case when f.who operator(pg_catalog.=) 0 then 'PUBLIC'
            else pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(f.who)) end,
       pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(s.nspowner))
  from found f cross join s
  left join pg_catalog.pg_roles r on r.oid operator(pg_catalog.=) f.who
 where not coalesce(r.rolsuper, false)
 order by 1, 2, 3
"""

_OWNERS = """
select pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text, o.rolsuper,
       me.rolname::pg_catalog.text, me.rolsuper,
       pg_catalog.pg_get_userbyid(d.datdba)::pg_catalog.text
  from pg_catalog.pg_roles me
  join pg_catalog.pg_database d on d.datname operator(pg_catalog.=) pg_catalog.current_database()
  left join pg_catalog.pg_namespace n on n.nspname operator(pg_catalog.=) %(schema)s
  left join pg_catalog.pg_roles o on o.oid operator(pg_catalog.=) n.nspowner
 where me.rolname operator(pg_catalog.=) current_user
"""


@dataclass(frozen=True)
class Foreign:
    """One way another role could make the schema's users run its code, and the fix."""

    problem: str
    fix: str

    def __str__(self) -> str:
        return self.problem


def _foreign(kind: str, name: str, role: str, role_ident: str, owner: str, schema: str) -> Foreign:
    if kind == "owner":
        return Foreign(
            f"{name} belongs to {role}, not to {owner}, the owner of schema {schema}",
            f"drop it, or as a superuser give it to {owner} (ALTER ... OWNER TO {owner})",
        )
    if kind == "create":
        return Foreign(
            f"{role} may create objects in schema {schema}",
            f"as {owner} run: REVOKE CREATE ON SCHEMA {schema} FROM {role_ident}",
        )
    if kind == "trigger right":
        return Foreign(
            f"{role} may create triggers on {name}",
            f"as {owner} run: REVOKE TRIGGER ON {name} FROM {role_ident}",
        )
    return Foreign(
        f"trigger {name} runs a function of {role}", f"as {owner} run: DROP TRIGGER {name}"
    )


@dataclass(frozen=True)
class SchemaOwners:
    """The schema's owner (None: no such schema), the connected role, the database's owner."""

    owner: str | None
    owner_is_superuser: bool
    me: str
    me_is_superuser: bool
    database_owner: str


def owners(conn: psycopg.Connection[Any], schema: str = SCHEMA) -> SchemaOwners:
    row = conn.execute(_OWNERS, {"schema": schema}).fetchone()
    assert row is not None  # current_user and current_database() always exist
    return SchemaOwners(row[0], bool(row[1]), row[2], bool(row[3]), row[4])


def foreign(conn: psycopg.Connection[Any], schema: str = SCHEMA) -> list[Foreign]:
    """Every object, right and trigger through which a role other than the schema's owner
    (superusers aside) could make the schema's users run its code; [] when there is none
    (or no such schema)."""
    rows = conn.execute(_FOREIGN, {"schema": schema}).fetchall()
    return [_foreign(r[0], r[1], r[2], r[3], r[4], schema) for r in rows]


def ticker_refusal(conn: psycopg.Connection[Any], schema: str = SCHEMA) -> str | None:
    """Why the ticker must not call anything in this database's schema, with the fix; None
    when it may. The ticker runs the schema's functions with its own rights, so their owner
    must be one that gains nothing from that: the ticker's own role, a superuser, or, for a
    ticker that is not a superuser, the database's owner. A superuser ticker calling another
    role's function would give that role superuser."""
    who = owners(conn, schema)
    if who.owner is None:
        return None
    trusted = (
        who.owner == who.me
        or who.owner_is_superuser
        or (not who.me_is_superuser and who.owner == who.database_owner)
    )
    if not trusted:
        if who.me_is_superuser:
            return (
                f"schema {schema} belongs to {who.owner}, and the ticker connects as superuser "
                f"{who.me}, which runs only code of its own or of another superuser (calling "
                f"{who.owner}'s functions would make {who.owner} a superuser); run the ticker "
                f"as {who.owner} (base_connstr user={who.owner})"
            )
        return (
            f"schema {schema} belongs to {who.owner}, neither the ticker's role {who.me} nor "
            f"the database owner {who.database_owner}; run the ticker as {who.owner}, or "
            f"leave this database out of database_list"
        )
    problems = foreign(conn, schema)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{problems[0]}{more}, so it could run code as the ticker; {problems[0].fix}"
    return None
