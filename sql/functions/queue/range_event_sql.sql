-- londiste_rs.range_event_sql(i_queue text, i_consumer text, i_prev_tick int8, i_cur_tick int8)
--   Returns: a SELECT of the consumer's events from tick i_prev_tick to the later tick
--   i_cur_tick of i_queue (_tick_range_sql): the events of the consecutive batches a lagging
--   worker took between them, read in one scan instead of one per batch. Raises
--   undefined_object when a tick is gone, invalid_parameter_value when they are out of order.
create or replace function londiste_rs.range_event_sql(
    i_queue text, i_consumer text, i_prev_tick int8, i_cur_tick int8)
returns text language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    s londiste_rs.subscription := londiste_rs._subscription(i_queue, i_consumer);
    prev londiste_rs.tick;
    cur londiste_rs.tick;
begin
    if i_prev_tick >= i_cur_tick then
        raise exception 'tick % does not come before tick %', i_prev_tick, i_cur_tick
            using errcode = 'invalid_parameter_value';
    end if;
    select * into prev from londiste_rs.tick where tick_queue = s.sub_queue and tick_id = i_prev_tick;
    select * into cur from londiste_rs.tick where tick_queue = s.sub_queue and tick_id = i_cur_tick;
    if prev.tick_id is null or cur.tick_id is null then
        raise exception 'tick % of queue % is gone',
            case when prev.tick_id is null then i_prev_tick else i_cur_tick end, i_queue
            using errcode = 'undefined_object';
    end if;
    return londiste_rs._tick_range_sql(s.sub_queue, s.sub_id, prev, cur);
end $$;
