-- londiste_rs._fence_tables(i_queue text, i_note text)
--   Puts the statement trigger _londiste_rs_<queue>_fence (_refuse_writes, refusing with
--   i_note) on every table with a capture trigger of the queue, replacing one already there.
--   CREATE TRIGGER waits for the transactions writing each table and holds the new writers
--   until the end of the caller's transaction, which then refuses them; lock waits follow the
--   caller's lock_timeout.
--   Returns: the number of tables.
create or replace function londiste_rs._fence_tables(i_queue text, i_note text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    trg text := '_londiste_rs_' || i_queue || '_fence';
    r record;
    n int4 := 0;
begin
    for r in
        select distinct t.tgrelid as rel
          from pg_trigger t join pg_proc p on p.oid = t.tgfoid
         where p.pronamespace = 'londiste_rs'::regnamespace
           and p.proname like '\_capture\_' || q.queue_id || '\_%'
         order by 1
    loop
        execute format('drop trigger if exists %I on %s', trg, r.rel::regclass);
        execute format('create trigger %I before insert or update or delete or truncate on %s'
                       ' for each statement execute function londiste_rs._refuse_writes(%L)',
                       trg, r.rel::regclass, i_note);
        n := n + 1;
    end loop;
    return n;
end $$;
