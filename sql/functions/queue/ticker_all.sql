-- londiste_rs.ticker()
--   Runs ticker(queue) for every queue that is not paused, has no external ticker and needs a
--   tick. Which ones need a tick is read first without locking anything, so a call that finds
--   none writes nothing (no transaction id, no WAL): the ticker daemon calls it every
--   ticker_period (a fraction of a second) on every database.
--   Returns: the number of queues that got a tick.
create or replace function londiste_rs.ticker()
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    name text;
    ticked int4 := 0;
begin
    for name in select q.queue_name from londiste_rs.queue q
                  left join lateral (select t.tick_time, t.tick_event_seq from londiste_rs.tick t
                                      where t.tick_queue = q.queue_id
                                      order by t.tick_id desc limit 1) last on true
                 where not q.queue_ticker_paused and not q.queue_external_ticker
                   and londiste_rs._tick_due(q, last.tick_time, last.tick_event_seq)
                 order by q.queue_id
    loop
        if londiste_rs.ticker(name) is not null then
            ticked := ticked + 1;
        end if;
    end loop;
    return ticked;
end $$;
