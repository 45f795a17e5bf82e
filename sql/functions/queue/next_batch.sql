-- londiste_rs.next_batch(i_queue text, i_consumer text)
--   Returns: the id of the consumer's next batch (one tick), or NULL when there is none yet.
create or replace function londiste_rs.next_batch(i_queue text, i_consumer text)
returns int8 language sql
set search_path = pg_catalog, pg_temp as $$
    select batch_id from londiste_rs.next_batch_custom(i_queue, i_consumer, null, null, null)
$$;
