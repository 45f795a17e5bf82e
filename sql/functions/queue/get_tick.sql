-- londiste_rs.get_tick(i_queue text, i_tick_id int8 default null)
--   One tick of the queue: i_tick_id's, or the last one when i_tick_id is NULL.
--   Returns: no row when the queue has no such tick (yet, or any more).
create or replace function londiste_rs.get_tick(i_queue text, i_tick_id int8 default null)
returns table (tick_id int8, tick_time timestamptz, tick_event_seq int8,
               tick_snapshot pg_catalog.pg_snapshot)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select t.tick_id, t.tick_time, t.tick_event_seq, t.tick_snapshot
      from londiste_rs.tick t
      join londiste_rs.queue q on q.queue_id = t.tick_queue
     where q.queue_name = i_queue
       and (i_tick_id is null or t.tick_id = i_tick_id)
     order by t.tick_id desc
     limit 1;
$$;
