-- londiste_rs.next_batch_custom(i_queue text, i_consumer text, i_min_lag interval,
--                               i_min_count int4, i_min_interval interval)
--   Opens the consumer's next batch: from its last tick to the next tick, or, when
--   i_min_count / i_min_interval are given, to the first later tick that has at least that many
--   events / that much time after the last one (merging ticks when lagging; no batch until one
--   qualifies). i_min_lag keeps the batch's end at least that old. A batch already open is
--   returned again.
--   Returns: batch_id (NULL when there is no batch yet), cur_tick_id, prev_tick_id,
--   cur_tick_time, prev_tick_time, cur_tick_event_seq, prev_tick_event_seq.
create or replace function londiste_rs.next_batch_custom(
    i_queue text, i_consumer text, i_min_lag interval, i_min_count int4, i_min_interval interval,
    out batch_id int8, out cur_tick_id int8, out prev_tick_id int8,
    out cur_tick_time timestamptz, out prev_tick_time timestamptz,
    out cur_tick_event_seq int8, out prev_tick_event_seq int8)
language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    s londiste_rs.subscription := londiste_rs._subscription(i_queue, i_consumer, true);
    prev londiste_rs.tick;
    cur londiste_rs.tick;
begin
    select * into prev from londiste_rs.tick
     where tick_queue = s.sub_queue and tick_id = s.sub_last_tick;
    if not found then
        raise exception 'consumer % of queue % lost its position: tick % is gone; register it again',
            i_consumer, i_queue, s.sub_last_tick using errcode = 'object_not_in_prerequisite_state';
    end if;
    if s.sub_batch is not null then
        select * into cur from londiste_rs.tick
         where tick_queue = s.sub_queue and tick_id = s.sub_next_tick;
    elsif i_min_count is null and i_min_interval is null then
        select * into cur from londiste_rs.tick
         where tick_queue = s.sub_queue and tick_id > prev.tick_id
           and (i_min_lag is null or tick_time <= now() - i_min_lag)
         order by tick_id limit 1;
    else
        select * into cur from londiste_rs.tick
         where tick_queue = s.sub_queue and tick_id > prev.tick_id
           and (i_min_lag is null or tick_time <= now() - i_min_lag)
           and (tick_event_seq - prev.tick_event_seq >= i_min_count
                or tick_time - prev.tick_time >= i_min_interval)
         order by tick_id limit 1;
    end if;
    if cur.tick_id is null then
        return;
    end if;
    if s.sub_batch is null then
        s.sub_batch := nextval('londiste_rs.batch_id_seq');
        update londiste_rs.subscription
           set sub_batch = s.sub_batch, sub_next_tick = cur.tick_id, sub_active = now()
         where sub_id = s.sub_id;
    end if;
    batch_id := s.sub_batch;
    cur_tick_id := cur.tick_id;
    prev_tick_id := prev.tick_id;
    cur_tick_time := cur.tick_time;
    prev_tick_time := prev.tick_time;
    cur_tick_event_seq := cur.tick_event_seq;
    prev_tick_event_seq := prev.tick_event_seq;
end $$;
