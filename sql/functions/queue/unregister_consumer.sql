-- londiste_rs.unregister_consumer(i_queue text, i_consumer text)
--   Removes a consumer's subscription and its retry events (the consumer name itself stays).
--   Returns: 1 when it was registered, 0 otherwise.
create or replace function londiste_rs.unregister_consumer(i_queue text, i_consumer text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
begin
    delete from londiste_rs.subscription s using londiste_rs.consumer c
     where c.co_id = s.sub_consumer and s.sub_queue = q.queue_id and c.co_name = i_consumer;
    return case when found then 1 else 0 end;
end $$;
