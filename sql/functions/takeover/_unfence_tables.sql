-- londiste_rs._unfence_tables(i_queue text)
--   Removes the statement triggers _fence_tables put on the queue's tables (a node about to
--   become the root again, a takeover called off, the queue dropped).
--   Returns: the number of tables it was removed from.
create or replace function londiste_rs._unfence_tables(i_queue text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    trg text := '_londiste_rs_' || i_queue || '_fence';
    r record;
    n int4 := 0;
begin
    for r in
        select t.tgrelid as rel from pg_trigger t
         where t.tgname = trg and t.tgfoid = 'londiste_rs._refuse_writes()'::regprocedure
         order by 1
    loop
        execute format('drop trigger %I on %s', trg, r.rel::regclass);
        n := n + 1;
    end loop;
    return n;
end $$;
