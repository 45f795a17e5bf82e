-- londiste_rs.force_tick(i_queue text)
--   Makes the next ticker(queue) call tick, by moving the event sequence past
--   ticker_max_count (PgQ's way). Call ticker or wait for the ticker daemon afterwards.
--   Returns: the id of the last tick made so far.
create or replace function londiste_rs.force_tick(i_queue text)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
begin
    perform setval(format('londiste_rs.%I', 'event_' || q.queue_id || '_id_seq')::regclass,
                   londiste_rs._event_seq(q.queue_id) + q.queue_ticker_max_count * 2 + 1000);
    return (select max(tick_id) from londiste_rs.tick where tick_queue = q.queue_id);
end $$;
