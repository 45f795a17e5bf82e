-- londiste_rs.finish_batch(i_batch_id int8)
--   Closes a batch: the consumer's position moves to the batch's end tick.
--   Returns: 1, or 0 when no open batch has that id (already finished).
create or replace function londiste_rs.finish_batch(i_batch_id int8)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
    update londiste_rs.subscription
       set sub_last_tick = sub_next_tick, sub_next_tick = null, sub_batch = null, sub_active = now()
     where sub_batch = i_batch_id;
    return case when found then 1 else 0 end;
end $$;
