-- londiste_rs.ticker()
--   Runs ticker(queue) for every queue that is not paused and has no external ticker.
--   Returns: the number of queues that got a tick.
create or replace function londiste_rs.ticker()
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q text;
    ticked int4 := 0;
begin
    for q in select queue_name from londiste_rs.queue
              where not queue_ticker_paused and not queue_external_ticker
              order by queue_id
    loop
        if londiste_rs.ticker(q) is not null then
            ticked := ticked + 1;
        end if;
    end loop;
    return ticked;
end $$;
