-- londiste_rs.register_consumer_at(i_queue text, i_consumer text, i_tick_id int8)
--   Registers a consumer at a given tick, or moves an already registered one there (it must
--   not be inside a batch). The tick must still exist (rotation removes old ones).
--   Returns: 1 when registered, 0 when an existing registration was moved.
create or replace function londiste_rs.register_consumer_at(
    i_queue text, i_consumer text, i_tick_id int8)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
begin
    return londiste_rs._register(q, i_consumer, i_tick_id, true);
end $$;
