"""Tables whose owner can run code as londiste-rs (README "Who must be trusted").

On a subscriber the worker writes every replicated table as its own role, so the triggers
and rules on a table, and the expressions of its row level security policies, run as the
worker: whoever owns the table (and so can change them at any time) runs code as the
worker. On a provider the initial copy reads each table as the copying role, so the table's
policies filter the copy and their expressions run as that role. `foreign_code` finds the
tables where that owner is another role (one the current role is not a member of).
"""

from __future__ import annotations

from typing import Any

import psycopg

# Per table (a name as SQL reads it): its owner, the current role and whether it is a member
# of the owner, the table's triggers (not internal ones and not londiste-rs's own capture
# triggers), its rules, whether row level security is on and whether it is forced on the
# owner too.
_QUERY = """
select pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
       pg_catalog.pg_get_userbyid(c.relowner), current_user,
       pg_catalog.pg_has_role(c.relowner, 'MEMBER'),
       (select count(*) from pg_catalog.pg_trigger g
          join pg_catalog.pg_proc p on p.oid = g.tgfoid
         where g.tgrelid = c.oid and not g.tgisinternal
           and not (g.tgname like '\\_londiste\\_rs\\_%%'
                    and pg_catalog.pg_has_role(p.proowner, 'MEMBER'))),
       (select count(*) from pg_catalog.pg_rewrite r
         where r.ev_class = c.oid and r.rulename <> '_RETURN'),
       c.relrowsecurity, c.relforcerowsecurity
  from unnest(%s::text[]) with ordinality t(name, ord)
  join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(t.name)
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 order by t.ord
"""


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def foreign_code(conn: psycopg.Connection[Any], tables: list[str], applied: bool) -> list[str]:
    """One warning line per table of `tables` whose code runs as the current role but is
    another role's to change. `applied`: the tables are written here (a subscriber's: their
    triggers, rules and policies count); else read by the initial copy (a provider's: only
    row level security counts)."""
    if not tables:
        return []
    out = []
    for name, owner, me, member, triggers, rules, rls, forced in conn.execute(
        _QUERY, [tables]
    ).fetchall():
        if applied:
            what = []
            if triggers:
                what.append(_count(triggers, "trigger"))
            if rules:
                what.append(_count(rules, "rule"))
            if rls:
                what.append("row level security policies")
            if member or not what:
                continue
            out.append(
                f"{name} is owned by role {owner} and has {', '.join(what)}: code that runs "
                f"as {me} when the worker applies rows, so {owner} can run code as {me}; make "
                f"{me} its owner, or trust {owner} as much (README: Who must be trusted)"
            )
        elif rls and (forced or not member):
            out.append(
                f"{name} has row level security (owner {owner}): the initial copy of each "
                f"subscriber sees only the rows its policies let the copying role see, and "
                f"their expressions run as that role; make the copying role its owner "
                "(without FORCE ROW LEVEL SECURITY) or grant it BYPASSRLS"
            )
    return out
