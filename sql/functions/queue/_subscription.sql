-- londiste_rs._subscription(i_queue text, i_consumer text, i_lock boolean default false)
--   Returns: the consumer's subscription row on the queue (locked FOR UPDATE with i_lock).
--   Raises undefined_object naming both when the consumer is not registered.
create or replace function londiste_rs._subscription(
    i_queue text, i_consumer text, i_lock boolean default false)
returns londiste_rs.subscription language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    s londiste_rs.subscription;
begin
    if i_lock then
        select s1.* into s from londiste_rs.subscription s1
          join londiste_rs.consumer c on c.co_id = s1.sub_consumer
         where s1.sub_queue = q.queue_id and c.co_name = i_consumer for update of s1;
    else
        select s1.* into s from londiste_rs.subscription s1
          join londiste_rs.consumer c on c.co_id = s1.sub_consumer
         where s1.sub_queue = q.queue_id and c.co_name = i_consumer;
    end if;
    if not found then
        raise exception 'consumer % is not registered on queue %; register it first',
            quote_literal(coalesce(i_consumer, '')), i_queue using errcode = 'undefined_object';
    end if;
    return s;
end $$;
