-- londiste_rs.batch_event_sql(i_batch_id int8)
--   Returns: a SELECT of the open batch's events (_tick_range_sql between its two ticks).
create or replace function londiste_rs.batch_event_sql(i_batch_id int8)
returns text language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    b record := londiste_rs._batch(i_batch_id);
begin
    return londiste_rs._tick_range_sql(b.queue_id, b.sub_id, b.prev, b.cur);
end $$;
