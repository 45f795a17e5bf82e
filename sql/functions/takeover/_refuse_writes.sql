-- londiste_rs._refuse_writes()
--   BEFORE INSERT/UPDATE/DELETE/TRUNCATE statement trigger on the tables of an old root a
--   takeover fenced (_fence_tables): the application's statement is refused before it touches
--   a row (so before any key or constraint check could fail first), with the note given as
--   the trigger's argument, which says where writes go now (SQLSTATE 25006, read-only, as a
--   standby says). A session of londiste-rs itself (londiste_rs.replica = on) applies the new
--   root's rows here and passes. It exists only on such a node, so the roots' writes never pay
--   for it; it needs no right on this schema (a trigger runs its function without them).
--   Returns: NULL (a statement trigger).
create or replace function londiste_rs._refuse_writes()
returns trigger language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
    if current_setting('londiste_rs.replica', true) = 'on' then
        return null;
    end if;
    raise exception 'cannot write to %.% here: %', quote_ident(TG_TABLE_SCHEMA),
        quote_ident(TG_TABLE_NAME), TG_ARGV[0]
        using errcode = 'read_only_sql_transaction';
end $$;
