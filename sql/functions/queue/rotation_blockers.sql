-- londiste_rs.rotation_blockers(i_queue text default null)
--   The consumers that hold back the rotation of the event tables (maint_rotate_tables_step1):
--   rotation is due (rotation_period has passed since the last switch, which is complete,
--   and inserts are enabled)
--   and the consumer's position, its last tick, has a snapshot xmin before the last switch's
--   step2 txid, so the oldest event table may still hold events it has not read.
--   behind_switch is true when the consumer's last tick is older than the last switch: the
--   consumer itself has not moved past it (gone away, stopped, or too slow); false when it has,
--   and a transaction that was open at its last tick, older than the switch, holds rotation
--   back instead (it ends, or is ended, and rotation goes on).
--   Returns: one row per such consumer (of the queue named, or of every queue): its lag (now -
--   the time of its last tick), pending_events, behind_switch, and the queue's
--   max_consumer_lag (NULL: none).
create or replace function londiste_rs.rotation_blockers(
    i_queue text default null,
    out queue_name text, out consumer_name text, out lag interval, out pending_events int8,
    out last_tick int8, out behind_switch boolean, out max_consumer_lag interval)
returns setof record language sql stable
set search_path = pg_catalog, pg_temp as $$
    select q.queue_name, c.co_name, now() - t.tick_time,
           londiste_rs._event_seq(q.queue_id) - t.tick_event_seq, s.sub_last_tick,
           t.tick_time < q.queue_switch_time, q.queue_max_consumer_lag
      from londiste_rs.queue q
      join londiste_rs.subscription s on s.sub_queue = q.queue_id
      join londiste_rs.consumer c on c.co_id = s.sub_consumer
      join londiste_rs.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
     where (i_queue is null or q.queue_name = i_queue)
       and q.queue_switch_step2 is not null and londiste_rs._cur_table(q.queue_id) >= 0
       and now() >= q.queue_switch_time + q.queue_rotation_period
       and pg_snapshot_xmin(t.tick_snapshot) < q.queue_switch_step2
     order by q.queue_name, c.co_name
$$;
