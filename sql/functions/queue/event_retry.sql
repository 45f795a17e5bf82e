-- londiste_rs.event_retry(i_batch_id int8, i_ev_id int8, i_retry_time timestamptz)
--   Postpones one event of an open batch: maint_retry_events() puts it back into the queue at
--   i_retry_time for this consumer only (ev_owner), with ev_retry counted up.
--   Returns: 1, or 0 when the event was already postponed in this batch.
create or replace function londiste_rs.event_retry(
    i_batch_id int8, i_ev_id int8, i_retry_time timestamptz)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    b record := londiste_rs._batch(i_batch_id);
    n int4;
begin
    execute format(
        'insert into londiste_rs.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid,'
        ' ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
        ' select $1, $2, ev_id, ev_time, ev_txid, $3, coalesce(ev_retry, 0) + 1, ev_type,'
        ' ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 from (%s) ev where ev_id = $4'
        ' on conflict do nothing', londiste_rs.batch_event_sql(i_batch_id))
        using i_retry_time, b.queue_id, b.sub_id, i_ev_id;
    get diagnostics n = row_count;
    if n = 0 and not exists (select 1 from londiste_rs.retry_queue
                              where ev_owner = b.sub_id and ev_id = i_ev_id) then
        raise exception 'event % is not in batch %', i_ev_id, i_batch_id
            using errcode = 'invalid_parameter_value';
    end if;
    return n;
end $$;
