-- londiste_rs._await_writers(i_queue_id int4)
--   After a queue's capture was fenced: waits until no transaction that may still add a
--   captured event to the queue is running, and keeps it so until the caller's transaction
--   ends. Each table with a capture trigger of the queue is locked IN SHARE MODE (a writer
--   holds its table from before its trigger read the current event table, so one that read it
--   before the fence is waited for; later writers wait for this lock, then are refused by the
--   fence), and the queue's event tables IN EXCLUSIVE MODE, as londiste3's demote_root step 2
--   does. Tables are locked in oid order; lock waits follow the caller's lock_timeout.
--   Returns: the number of tables locked.
create or replace function londiste_rs._await_writers(i_queue_id int4)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    n int4 := 0;
begin
    for r in
        select distinct t.tgrelid as rel
          from pg_trigger t join pg_proc p on p.oid = t.tgfoid
         where p.pronamespace = 'londiste_rs'::regnamespace
           and p.proname like '\_capture\_' || i_queue_id || '\_%'
         order by 1
    loop
        execute format('lock table only %s in share mode', r.rel::regclass);
        n := n + 1;
    end loop;
    execute format('lock table londiste_rs.%I in exclusive mode', 'event_' || i_queue_id);
    return n;
end $$;
