-- londiste_rs.drop_queue(i_queue text, i_force boolean default false)
--   Drops a queue: its capture triggers (and a takeover's refusing ones) and their functions, event tables, sequences, ticks,
--   subscriptions and retry events. Refuses while consumers are registered unless i_force.
--   Returns: 1 when dropped, 0 when there was no such queue.
create or replace function londiste_rs.drop_queue(i_queue text, i_force boolean default false)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue;
    consumers text;
    r record;
    base text;
begin
    select * into q from londiste_rs.queue where queue_name = i_queue for update;
    if not found then
        return 0;
    end if;
    select string_agg(c.co_name, ', ' order by c.co_name) into consumers
      from londiste_rs.subscription s join londiste_rs.consumer c on c.co_id = s.sub_consumer
     where s.sub_queue = q.queue_id;
    if consumers is not null and not i_force then
        raise exception 'queue % still has consumers (%); unregister them first or drop with force',
            i_queue, consumers using errcode = 'object_in_use';
    end if;
    perform londiste_rs._unfence_tables(i_queue);  -- a takeover's refusals, if any
    for r in
        select t.tgrelid::regclass as tbl, t.tgname
          from pg_trigger t join pg_proc p on p.oid = t.tgfoid
         where p.pronamespace = 'londiste_rs'::regnamespace
           and p.proname like '\_capture\_' || q.queue_id || '\_%'
    loop
        execute format('drop trigger %I on %s', r.tgname, r.tbl);
    end loop;
    for r in
        select p.oid::regprocedure as fn from pg_proc p
         where p.pronamespace = 'londiste_rs'::regnamespace
           and p.proname like '\_capture\_' || q.queue_id || '\_%'
    loop
        execute format('drop function %s', r.fn);
    end loop;
    base := 'event_' || q.queue_id;
    execute format('drop table londiste_rs.%I cascade', base);
    execute format('drop sequence londiste_rs.%I, londiste_rs.%I, londiste_rs.%I',
                   base || '_id_seq', base || '_tick_seq', base || '_cur');
    delete from londiste_rs.queue where queue_id = q.queue_id;
    return 1;
end $$;
