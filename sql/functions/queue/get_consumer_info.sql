-- londiste_rs.get_consumer_info(i_queue text default null, i_consumer text default null)
--   Returns: one row per subscription (filtered by queue and consumer when given): lag (now -
--   the time of its last tick), last_seen (last batch opened or closed), last_tick,
--   current_batch, next_tick and pending_events (events in the queue after its last tick).
create or replace function londiste_rs.get_consumer_info(
    i_queue text default null, i_consumer text default null,
    out queue_name text, out consumer_name text, out lag interval, out last_seen interval,
    out last_tick int8, out current_batch int8, out next_tick int8, out pending_events int8)
returns setof record language sql stable
set search_path = pg_catalog, pg_temp as $$
    select q.queue_name, c.co_name, now() - t.tick_time, now() - s.sub_active,
           s.sub_last_tick, s.sub_batch, s.sub_next_tick,
           londiste_rs._event_seq(q.queue_id) - t.tick_event_seq
      from londiste_rs.subscription s
      join londiste_rs.queue q on q.queue_id = s.sub_queue
      join londiste_rs.consumer c on c.co_id = s.sub_consumer
      left join londiste_rs.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
     where (i_queue is null or q.queue_name = i_queue)
       and (i_consumer is null or c.co_name = i_consumer)
     order by q.queue_name, c.co_name
$$;
