-- londiste_rs.register_consumer(i_queue text, i_consumer text)
--   Registers a consumer at the queue's last tick: its first batch holds what comes after.
--   Returns: 1 when registered, 0 when it already was (its position is kept).
create or replace function londiste_rs.register_consumer(i_queue text, i_consumer text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
begin
    return londiste_rs._register(q, i_consumer,
        (select max(tick_id) from londiste_rs.tick where tick_queue = q.queue_id), false);
end $$;
