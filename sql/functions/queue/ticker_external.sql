-- londiste_rs.ticker(i_queue text, i_tick_id int8, i_tick_time timestamptz, i_event_seq int8)
--   External tick (branches): records a tick with the provider's tick id, time and event
--   sequence value, so a branch's ticks match its provider's.
--   Returns: the tick id, or NULL when the snapshot equals the last tick's.
create or replace function londiste_rs.ticker(
    i_queue text, i_tick_id int8, i_tick_time timestamptz, i_event_seq int8)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    tick_seq regclass := format('londiste_rs.%I', 'event_' || q.queue_id || '_tick_seq')::regclass;
    id_seq regclass := format('londiste_rs.%I', 'event_' || q.queue_id || '_id_seq')::regclass;
begin
    if i_event_seq > londiste_rs._event_seq(q.queue_id) then
        perform setval(id_seq, i_event_seq);
    end if;
    if i_tick_id > coalesce(pg_sequence_last_value(tick_seq), 0) then
        perform setval(tick_seq, i_tick_id);
    end if;
    return londiste_rs._tick(q.queue_id, i_tick_id, i_tick_time, i_event_seq);
end $$;
