-- londiste_rs.current_event_table(i_queue text)
--   The name (in schema londiste_rs) of the event table new events of the queue go into now,
--   for a branch that re-queues its provider's events with COPY. Take a transaction id before
--   calling it, as insert_event does, so a rotation cannot slip in between. A queue whose
--   capture a takeover fenced still takes re-queued events (_cur_index).
create or replace function londiste_rs.current_event_table(i_queue text)
returns text language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select 'event_' || q.queue_id
           || '_' || londiste_rs._cur_index(londiste_rs._cur_table(q.queue_id))
      from londiste_rs.queue q
     where q.queue_name = i_queue;
$$;
