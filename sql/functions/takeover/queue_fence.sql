-- londiste_rs.queue_fence(i_queue text)
--   Whether the queue's capture is fenced by a takeover now, and the note its refusals carry.
--   Returns: one row (fenced false and a NULL note for an open queue); none without the queue.
create or replace function londiste_rs.queue_fence(i_queue text, out fenced boolean, out note text)
returns setof record language sql stable
set search_path = pg_catalog, pg_temp as $$
    select londiste_rs._cur_table(q.queue_id) >= 100, q.queue_fence_note
      from londiste_rs.queue q where q.queue_name = i_queue;
$$;
